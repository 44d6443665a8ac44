"""Replay: a version scores the window's recorded flights that have an actual delay, beside what was served.

`POST /model/versions/{version}/replay` starts a job (a row of replay_jobs, so that any replica can
answer its status) in a thread of its own: never a thread serving requests, never the event loop. The
job reads the window's recorded predictions that have an actual in pages (keyset on the history id,
PAGE_ROWS at a time, each page its own short transaction), turns each into the flight the version
scores (`replayed_flight`: the seam where context is looked up as of the prediction's time), scores a
page in one call of the model, and adds the errors of the replayed and of the served predictions over
the same flights. A window of at most REPLAY_WAIT_FLIGHTS flights is waited for (200 with the
comparison); a larger one answers 202 at once, and its status URL answers the same once done.

Shadow rows are not replayed: they were never served.
"""

from __future__ import annotations

import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Text, cast, func, select, type_coerce, update
from sqlalchemy.orm import Session

from flight_delay.context.definitions import (
    LOOKBACK_S,
    PREVIOUS_LEG_MAX_S,
    instant_seconds,
    scheduled_departure,
)
from flight_delay.context.serving import in_context
from flight_delay.context.state import context_between
from flight_delay.errors import UnknownModelVersion, UnknownReplay
from flight_delay.history.database import Database
from flight_delay.history.models import Actual, ModelVersion, Prediction, ReplayJob, utcnow
from flight_delay.replies import reply_for
from flight_delay.serving.adapters import ServingModel

log = logging.getLogger(__name__)

PAGE_ROWS = 50_000
RUNNING, DONE, FAILED = "running", "done", "failed"
# A running job's row moves with every page; one that has not moved for this long lost its worker.
STALE_AFTER = timedelta(minutes=2)
DAY_S = 86_400  # a page's flights' context reads their days' whole timetables
Window = tuple[datetime | None, datetime | None]


def replayed_flight(row: Any) -> dict[str, Any]:
    """The flight a replayed version scores for one recorded prediction: the input as sent, and when.

    Context (the aircraft's last leg, the weather: issue 23) is looked up as of each prediction's own
    time: the flight's `as_of` when its client sent one, else the time the prediction was recorded,
    which is set here. A model that reads no context ignores it.
    """
    flight = orjson.loads(row.input)
    if flight.get("as_of") is None:
        flight["as_of"] = row.created_at.isoformat()
    return flight


@dataclass
class Errors:
    """Sums of absolute and squared errors over the flights replayed, for the replayed and served figures."""

    flights: int = 0
    skipped: int = 0  # recorded flights the version could not score (fields it reads, not recorded)
    replayed: list[float] = field(default_factory=lambda: [0.0, 0.0])
    served: list[float] = field(default_factory=lambda: [0.0, 0.0])

    def add(self, predicted: np.ndarray, served: np.ndarray, actual: np.ndarray) -> None:
        """Adds one page's errors."""
        self.flights += len(actual)
        for sums, values in ((self.replayed, predicted), (self.served, served)):
            error = values - actual
            sums[0] += float(np.abs(error).sum())
            sums[1] += float((error * error).sum())

    def figures(self, sums: list[float]) -> dict[str, float | None]:
        """MAE and RMSE from sums (null when no flight was replayed)."""
        if not self.flights:
            return {"mae": None, "rmse": None}
        return {"mae": sums[0] / self.flights, "rmse": math.sqrt(sums[1] / self.flights)}


def in_window(column: Any, window: Window) -> list[Any]:
    """The conditions of [since, until) on a time column."""
    since, until = window
    return [
        c
        for c in (since is not None and column >= since, until is not None and column < until)
        if c is not False
    ]


def id_bounds(session: Session, window: Window) -> tuple[int, int] | None:
    """The smallest and largest history id recorded in the window (through the time index); None if none."""
    low, high = session.execute(
        select(func.min(Prediction.id), func.max(Prediction.id)).where(
            *in_window(Prediction.created_at, window)
        )
    ).one()
    return None if low is None else (low, high)


def count_recorded(session: Session, window: Window, bounds: tuple[int, int] | None) -> int:
    """How many predictions of the window have an actual (read from the actuals' primary key range)."""
    if bounds is None:
        return 0
    return session.scalar(
        select(func.count())
        .select_from(Actual)
        .where(Actual.history_id.between(*bounds), *in_window(Actual.predicted_at, window))
    )


def recorded_page(
    session: Session, window: Window, after: int, last: int, limit: int = PAGE_ROWS
) -> list[Any]:
    """The next page of served predictions with an actual: id, time, input (JSON text), served, actual."""
    statement = (
        select(
            Actual.history_id,
            Prediction.created_at,
            type_coerce(cast(Prediction.input, Text), Text).label("input"),
            Actual.predicted.label("served"),
            Actual.arr_delay.label("actual"),
        )
        .join(Prediction, Prediction.id == Actual.history_id)
        .where(Actual.history_id > after, Actual.history_id <= last, Prediction.shadow_of.is_(None))
        .where(*in_window(Actual.predicted_at, window))
        .order_by(Actual.history_id)
        .limit(limit)
    )
    return list(session.execute(statement))


def recorded_pages(db: Database, window: Window, page_rows: int = PAGE_ROWS) -> Iterator[list[Any]]:
    """Every page of the window's served predictions with an actual, each read in its own transaction."""
    with db.transaction() as session:
        bounds = id_bounds(session, window)
    if bounds is None:
        return
    after = bounds[0] - 1
    while True:
        with db.transaction() as session:
            page = recorded_page(session, window, after, bounds[1], page_rows)
        if not page:
            return
        yield page
        after = page[-1].history_id


def scorable(model: ServingModel, flights: Sequence[dict[str, Any]]) -> list[int]:
    """The flights carrying every field the model reads (non-null where it must be)."""
    required = frozenset(model.input_fields)
    not_null = [name for name in model.input_fields if name not in set(model.nullable_fields)]
    return [
        index
        for index, flight in enumerate(flights)
        if flight.keys() >= required and None not in [flight[name] for name in not_null]
    ]


def page_span(flights: Sequence[dict[str, Any]]) -> tuple[int, int]:
    """The instants the context of a page's flights reads between (epoch seconds), as_of set on each."""
    days = [scheduled_departure(f["year"], f["month"], f["day"], 0) for f in flights]
    as_of = [instant_seconds(datetime.fromisoformat(f["as_of"])) for f in flights]
    start = min(min(as_of) - LOOKBACK_S, min(days) - PREVIOUS_LEG_MAX_S)
    return start, max(max(as_of), max(days) + DAY_S)


def flights_as_scored(db: Database, model: ServingModel, flights: list[dict[str, Any]]) -> list[Any]:
    """The flights as the model scores them: with their context as of each one's time, if it reads any."""
    if not model.context_features or not flights:
        return flights
    with db.transaction() as session:
        index = context_between(session, *page_span(flights))
    return in_context(flights, index, utcnow()).values


def score_page(db: Database, model: ServingModel, page: Sequence[Any], errors: Errors) -> None:
    """Scores a page's flights in one call and adds their errors (the flights it cannot score skipped)."""
    flights = [replayed_flight(row) for row in page]
    kept = scorable(model, flights)
    if not kept:
        errors.skipped += len(page)
        return
    scored = flights_as_scored(db, model, [flights[i] for i in kept])
    predicted = np.asarray(model.predict(scored), dtype=np.float64)
    served = np.fromiter((page[i].served for i in kept), np.float64, len(kept))
    actual = np.fromiter((page[i].actual for i in kept), np.float64, len(kept))
    finite = np.isfinite(predicted)
    errors.skipped += len(page) - int(finite.sum())
    errors.add(predicted[finite], served[finite], actual[finite])


def replay(
    db: Database, model: ServingModel, window: Window, progress: Callable[[int], None] | None = None
) -> Errors:
    """Replays the window's recorded flights with a model; `progress` is told the flights read so far."""
    errors = Errors()
    for page in recorded_pages(db, window):
        score_page(db, model, page, errors)
        if progress is not None:
            progress(errors.flights + errors.skipped)
    return errors


def comparison(version: str, window: Window, errors: Errors) -> dict[str, Any]:
    """The replay's answer: the flights, the version's MAE and RMSE, and those of what was served."""
    return {
        "version": version,
        "window": {"since": window[0], "until": window[1]},
        "flights": errors.flights,
        "skipped": errors.skipped,
        "candidate": {"version": version, **errors.figures(errors.replayed)},
        "served": errors.figures(errors.served),
    }


class Replays:
    """Starts replay jobs in threads of their own, and answers their status from the database."""

    def __init__(self, registry: Any, wait_flights: int) -> None:
        self.registry = registry  # serving.registry.ModelRegistry: its database, and models by version
        self.wait_flights = wait_flights

    @property
    def db(self) -> Database:
        """The registry's database."""
        return self.registry.db

    def start(self, version: str, window: Window, by: str) -> tuple[bool, dict[str, Any]]:
        """Starts a replay: (True, its result) for a window small enough to wait for, else (False, status)."""
        window = (window[0], window[1] or utcnow())  # "until now" is fixed when asked
        job = self._new_job(version, window, by)
        done = threading.Event()
        thread = threading.Thread(target=self._run, args=(job.id, version, window, done), daemon=True)
        thread.name = f"replay-{job.id[:8]}"
        if job.flights > self.wait_flights:  # 202 at once: its status as started, however fast it runs
            body = self.status(job.id)
            thread.start()
            return False, body
        thread.start()
        done.wait()
        body = self.status(job.id)
        return body["status"] != RUNNING, body

    def _new_job(self, version: str, window: Window, by: str) -> ReplayJob:
        """Records a running job over the window (404 for a version never loaded)."""
        with self.db.transaction() as session:
            if session.get(ModelVersion, version) is None:
                raise UnknownModelVersion(f"No model of version {version} was ever loaded here.")
            flights = count_recorded(session, window, id_bounds(session, window))
            now = utcnow()
            job = ReplayJob(
                id=uuid.uuid4().hex,
                version=version,
                since=window[0],
                until=window[1],
                state=RUNNING,
                flights=flights,
                scored=0,
                by=by,
                created_at=now,
                updated_at=now,
            )
            session.add(job)
        return job

    def _run(self, job_id: str, version: str, window: Window, done: threading.Event) -> None:
        """The job's thread: loads the version, replays the window, records the result or the failure."""
        try:
            model = self.registry.model_of(version)
            errors = replay(self.db, model, window, lambda read: self._progress(job_id, read))
            self._finish(job_id, result=comparison(version, window, errors))
        except Exception as exc:  # recorded as the job's failure: a status answers it
            failure = reply_for(exc)
            self._finish(job_id, error={"code": failure.code, "message": failure.message})
        finally:
            done.set()

    def _progress(self, job_id: str, read: int) -> None:
        """Records how many flights the job has read (which also shows it is alive)."""
        with self.db.transaction() as session:
            session.execute(
                update(ReplayJob).where(ReplayJob.id == job_id).values(scored=read, updated_at=utcnow())
            )

    def _finish(
        self, job_id: str, result: dict[str, Any] | None = None, error: dict[str, Any] | None = None
    ) -> None:
        """Records the job's end: its result, or why it failed."""
        state = FAILED if error is not None else DONE
        stored = None if result is None else orjson.loads(orjson.dumps(result))  # times as ISO 8601 text
        with self.db.transaction() as session:
            session.execute(
                update(ReplayJob)
                .where(ReplayJob.id == job_id)
                .values(state=state, result=stored, error=error, updated_at=utcnow())
            )

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """The newest replays' statuses, newest first."""
        with self.db.transaction() as session:
            jobs = list(session.scalars(select(ReplayJob).order_by(ReplayJob.created_at.desc()).limit(limit)))
        now = utcnow()
        return [{**job_body(job, now), "started_at": job.created_at, "by": job.by} for job in jobs]

    def status(self, job_id: str) -> dict[str, Any]:
        """A job's status: its comparison once done, its progress while running, why if it failed."""
        with self.db.transaction() as session:
            job = session.get(ReplayJob, job_id)
            if job is None:
                raise UnknownReplay(f"No replay has the id {job_id}.")
        return job_body(job, utcnow())


def job_body(job: ReplayJob, now: datetime) -> dict[str, Any]:
    """What a job's status URL answers (a running job whose row stopped moving is reported failed)."""
    state, error = job.state, job.error
    if state == RUNNING and now - job.updated_at > STALE_AFTER:
        state = FAILED
        error = {
            "code": "replay_abandoned",
            "message": "The worker running this replay stopped; start it again.",
        }
    body: dict[str, Any] = {"id": job.id, "status": state, "status_url": status_path(job.id)}
    window = {"since": job.since, "until": job.until}  # as times (the stored result has them as text)
    if state == DONE:
        return {**body, **job.result, "window": window}
    body.update(version=job.version, window=window)
    if state == FAILED:
        return {**body, "error": error}
    return {**body, "flights": job.flights, "read": job.scored}


def status_path(job_id: str) -> str:
    """The path of a replay's status."""
    return f"/model/replays/{job_id}"
