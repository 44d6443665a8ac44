"""The roll-ups monitoring reports read: per hour, each model's predictions counted per bin and its live sums.

A pass moves each model's mark (monitoring_rollups) from where it is to ROLLUP_GRACE before now, a chunk
at a time: it counts the chunk's predictions per hour and bin and recomputes the live sums of every hour
whose actuals were recorded within it, reading outside any write transaction (SQLite keeps taking
predictions meanwhile); then a short transaction stores them only if the mark is still where it read it
(a compare-and-set: two jobs, replicas or a cron, never store a chunk twice), adding to the counts of an
hour the previous chunk began. A lock (PostgreSQL's advisory lock; a file lock beside a SQLite file)
keeps the other jobs from counting the same chunk for nothing while one does.

`flight-delay serve` runs it every MONITORING_ROLLUP_INTERVAL_S in a process of its own
(monitoring/rollup_job.py); `flight-delay rollup` runs one pass (an operator's cron) or keeps running.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text

from flight_delay.history.database import Database
from flight_delay.history.models import utcnow
from flight_delay.monitoring import queries
from flight_delay.monitoring.measures import ModelMeasures, model_measures
from flight_delay.monitoring.report import HOUR, ROLLUP_ORIGIN, floor_hour, hour_runs

log = logging.getLogger(__name__)

# The mark stays this far behind now, so that every prediction stamped before it is committed when it is
# counted: a prediction is stamped just before its history write, whose statement the database cancels
# well before this (POSTGRES_STATEMENT_TIMEOUT_MS, 30 s; SQLite's SQLITE_BUSY_TIMEOUT_MS, 5 s).
ROLLUP_GRACE = timedelta(seconds=60)
CHUNK = timedelta(hours=6)  # the most a job counts before storing it and checking whether to stop
# pg_try_advisory_lock's key: a constant the service's other locks do not use ("rollupfd" in ASCII).
ROLLUP_LOCK_KEY = 0x726F6C6C_75706664
LOCK_SUFFIX = ".rollup-lock"


@dataclass
class PassSummary:
    """What one pass did: chunks stored per model, and chunks another job stored first."""

    chunks: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    skipped: bool = False  # another job held the lock


class Rollup:
    """Rolls up every model's predictions and actuals up to ROLLUP_GRACE before now."""

    def __init__(
        self,
        db: Database,
        clock: Callable[[], datetime] = utcnow,
        grace: timedelta = ROLLUP_GRACE,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.db = db
        self.clock = clock
        self.grace = grace
        self.should_stop = should_stop

    def run_once(self) -> PassSummary:
        """One pass over every model version, unless another job is rolling up right now."""
        summary = PassSummary()
        with rollup_lock(self.db) as held:
            if not held:
                summary.skipped = True
                return summary
            with self.db.transaction() as session:
                versions = queries.model_versions(session)
            target = self.clock() - self.grace
            for version in versions:
                if self.should_stop():
                    break
                self.roll_version(version, target, summary)
        return summary

    def roll_version(self, version: str, target: datetime, summary: PassSummary) -> None:
        """Moves one model's mark to `target`, a chunk at a time, until done, lost or asked to stop."""
        with self.db.transaction() as session:
            model = model_measures(queries.version_details(session, version) or {})
        while not self.should_stop():
            with self.db.transaction() as session:
                seen = queries.rollup_mark(session, version)
                start = seen or first_hour(session, version, target)
            if start >= target:
                if seen is None:  # no prediction yet: later ones are counted from here
                    self._store(version, seen, target, [], [])
                return
            stop = min(floor_hour(start) + CHUNK, target)
            if not self.roll_chunk(version, model, seen, (start, stop)):
                summary.lost += 1
                return
            summary.chunks[version] = summary.chunks.get(version, 0) + 1

    def roll_chunk(
        self, version: str, model: ModelMeasures, seen: datetime | None, chunk: tuple[datetime, datetime]
    ) -> bool:
        """Counts one chunk and stores it if the mark is still `seen`; False when another job moved it."""
        stop = chunk[1]
        with self.db.transaction() as session:
            counted = queries.counted_bins(session, version, model, chunk, hourly=True)
            touched = queries.touched_hours(session, version, (seen or ROLLUP_ORIGIN, stop))
            live = [
                hourly for run in hour_runs(touched) for hourly in queries.hourly_live(session, version, run)
            ]
        rows = [count_row(version, key, rows) for key, rows in counted.items()]
        return self._store(version, seen, stop, rows, live)

    def _store(self, version: str, seen: datetime | None, stop: datetime, rows: list, live: list) -> bool:
        """Moves the mark from `seen` to `stop` and stores what was counted, or nothing if it moved."""
        with self.db.transaction() as session:
            if not queries.advance_mark(session, version, seen, stop):
                return False
            queries.add_counts(session, rows)
            queries.replace_live(session, version, live)
        return True


def first_hour(session: Any, version: str, target: datetime) -> datetime:
    """Where a model never rolled up starts: the hour before its first prediction (target if none yet).

    An hour early: on PostgreSQL the first id is not always the earliest time, by the commit's length.
    """
    first = queries.first_prediction_at(session, version)
    return target if first is None else min(floor_hour(first) - HOUR, target)


def count_row(version: str, key: tuple[str | None, str, int], rows: int) -> dict[str, Any]:
    """One monitoring_counts row from a counted (hour, field, bin) and its rows."""
    hour, name, bin_index = key
    return {
        "model_version": version,
        "hour": queries.parse_hour(hour),
        "field": name,
        "bin": bin_index,
        "rows": rows,
    }


@contextmanager
def rollup_lock(db: Database) -> Iterator[bool]:
    """Tries the roll-up lock once; yields whether this job holds it (no lock to take: it does)."""
    engine = db.bound_engine()
    path = db.sqlite_path()
    if path is not None:
        with _file_lock(path.with_name(path.name + LOCK_SUFFIX)) as held:
            yield held
    elif engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            held = bool(
                connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ROLLUP_LOCK_KEY}).scalar()
            )
            connection.commit()
            try:
                yield held
            finally:
                if held:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ROLLUP_LOCK_KEY})
                    connection.commit()
    else:
        yield True


@contextmanager
def _file_lock(path: Any) -> Iterator[bool]:
    """An exclusive flock taken without waiting; a folder that refuses the file: no lock, the marks decide."""
    try:
        handle = path.open("a")
    except OSError as exc:
        log.warning("no roll-up lock file %s (%s): jobs may count a chunk twice, storing it once", path, exc)
        yield True
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
