"""Each worker's view of what is happening now: a ContextIndex refreshed from the database.

Like the model registry, `current()` answers from memory without I/O while the view was checked
within CONTEXT_REFRESH_MS, and `refresh()` (which queries) runs in a thread, never on the event loop.
A refresh first reads the post revision (one indexed row): unchanged, nothing else is read; else it
reads only the rows of later revisions, applies them to its records, and swaps in a new index whole,
so a prediction always reads one consistent snapshot.

**The time horizon.** The state's clock is its newest fact (the latest departure, landing or finished
weather hour posted): live, that is about now; in a replay, the replay's time. It keeps the flights
whose scheduled departure or departure is at most CONTEXT_RETENTION_H older than that clock (the
timetable ahead included) and the weather hours as recent; a prediction whose context would read
older records (its as_of less than the lookback after the horizon, or its flight's day or previous
leg before it) gets no context, and says so. A worker starting up reads only those rows, through
the tables' time indexes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from flight_delay.context.definitions import (
    FlightFacts,
    FlightKey,
    Observation,
    flight_facts,
    instant_seconds,
    observation,
)
from flight_delay.context.index import ContextIndex, ObservationKey
from flight_delay.context.ingestion import moment
from flight_delay.context.tables import REVISION_ROW, ContextRevision, PostedFlight, WeatherObservation
from flight_delay.history.database import Database

DEFAULT_REFRESH_MS = 250
DEFAULT_RETENTION_H = 48
NOTHING_READ = -1
EMPTY = ContextIndex({}, {})


class ContextState:
    """The posted flights and weather this worker knows, as an index no prediction waits on."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.refresh_s = DEFAULT_REFRESH_MS / 1000
        self.retention_s = DEFAULT_RETENTION_H * 3600
        self._lock = threading.Lock()  # one refresh at a time; readers never take it
        self._reset()

    def configure(self, config: Mapping[str, Any]) -> ContextState:
        """Reads CONTEXT_REFRESH_MS and CONTEXT_RETENTION_H, and forgets what was read."""
        self.refresh_s = config["CONTEXT_REFRESH_MS"] / 1000
        self.retention_s = config["CONTEXT_RETENTION_H"] * 3600
        self._reset()
        return self

    def _reset(self) -> None:
        """Forgets every record: the next refresh reads the database from scratch."""
        self._flights: dict[FlightKey, FlightFacts] = {}
        self._weather: dict[ObservationKey, Observation] = {}
        self._revision = NOTHING_READ
        self._clock: int | None = None  # the newest fact known
        # (monotonic time until which it needs no check, the index): one tuple, replaced whole.
        self._view: tuple[float, ContextIndex] = (-math.inf, EMPTY)

    def current(self) -> ContextIndex | None:
        """The index when checked within CONTEXT_REFRESH_MS (no I/O); else None: refresh() first."""
        deadline, index = self._view
        return index if time.monotonic() < deadline else None

    def snapshot(self) -> ContextIndex:
        """The last index read, however old (no I/O)."""
        return self._view[1]

    def expire(self) -> None:
        """Makes the next prediction refresh first (this worker just posted)."""
        self._view = (-math.inf, self._view[1])

    def refresh(self) -> ContextIndex:
        """Reads what changed since the last refresh and swaps in a new index (in a thread, not the loop)."""
        with self._lock:
            fresh = self.current()
            if fresh is not None:  # another thread refreshed while this one waited
                return fresh
            checked_at = time.monotonic()
            with self.db.transaction() as session:
                index = self._read(session)
            self._view = (checked_at + self.refresh_s, index)
            return index

    def _read(self, session: Session) -> ContextIndex:
        """Applies the rows of revisions after the last one read; the same index when none changed."""
        revision = session.execute(
            select(ContextRevision.revision).where(ContextRevision.id == REVISION_ROW)
        ).scalar_one()
        if revision == self._revision:
            return self._view[1]
        if self._revision == NOTHING_READ:
            self._clock = newest_fact(session)
            flights, weather = recent_rows(session, self.horizon())
        else:
            flights, weather = changed_rows(session, self._revision)
        self._apply(flights, weather)
        self._revision = revision
        return ContextIndex(dict(self._flights), dict(self._weather), self.horizon())

    def horizon(self) -> int | None:
        """The oldest time the records are complete from (None: no fact yet, every record is kept)."""
        return None if self._clock is None else self._clock - self.retention_s

    def _apply(self, flights: list[FlightFacts], weather: list[Observation]) -> None:
        """Replaces records by key, moves the clock to the newest fact, drops what fell behind the horizon."""
        for facts in flights:
            self._flights[facts.key] = facts
        for observed in weather:
            self._weather[(observed.origin, observed.hour)] = observed
        newest = [t for f in flights for t in (f.departed, f.landed) if t is not None]
        newest += [o.known for o in weather]
        if newest:
            self._clock = max(self._clock or newest[0], *newest)
        horizon = self.horizon()
        if horizon is not None:
            self._flights = {
                k: f for k, f in self._flights.items() if max(f.scheduled, f.departed or 0) >= horizon
            }
            self._weather = {k: o for k, o in self._weather.items() if o.hour >= horizon}


def newest_fact(session: Session) -> int | None:
    """The newest fact posted: the latest departure, landing or finished weather hour (epoch seconds)."""
    found = [
        session.execute(select(func.max(PostedFlight.known_until))).scalar(),
        session.execute(select(func.max(WeatherObservation.known_at))).scalar(),
    ]
    known = [instant_seconds(t) for t in found if t is not None]
    return max(known) if known else None


def recent_rows(session: Session, horizon: int | None) -> tuple[list[FlightFacts], list[Observation]]:
    """The rows a starting worker keeps: those from the horizon on (all when there is none)."""
    flights = select(*PostedFlight.__table__.columns)
    weather = select(*WeatherObservation.__table__.columns)
    if horizon is not None:
        flights = flights.where(PostedFlight.relevant_until >= moment(horizon))
        weather = weather.where(WeatherObservation.time_hour >= moment(horizon))
    return _facts(session, flights, weather)


def context_between(session: Session, start: int, end: int) -> ContextIndex:
    """An index of the records a context between two instants reads (a replay's page): complete from start.

    The flights whose times reach `start` and that were scheduled by `end`, and the weather hours in
    between; a flight posted long after the fact is read too, `as_of` decides what a prediction sees.
    """
    flights = select(*PostedFlight.__table__.columns).where(
        PostedFlight.relevant_until >= moment(start), PostedFlight.scheduled_at <= moment(end)
    )
    weather = select(*WeatherObservation.__table__.columns).where(
        WeatherObservation.time_hour >= moment(start), WeatherObservation.time_hour <= moment(end)
    )
    found, observed = _facts(session, flights, weather)
    return ContextIndex({f.key: f for f in found}, {(o.origin, o.hour): o for o in observed}, start)


def changed_rows(session: Session, revision: int) -> tuple[list[FlightFacts], list[Observation]]:
    """The rows posted after a revision."""
    flights = select(*PostedFlight.__table__.columns).where(PostedFlight.revision > revision)
    weather = select(*WeatherObservation.__table__.columns).where(WeatherObservation.revision > revision)
    return _facts(session, flights, weather)


def _facts(session: Session, flights: Any, weather: Any) -> tuple[list[FlightFacts], list[Observation]]:
    """Reads flight and weather rows as facts, oldest revision first (a later post of a key wins)."""
    flight_rows = session.execute(flights.order_by(PostedFlight.revision)).mappings()
    weather_rows = session.execute(weather.order_by(WeatherObservation.revision)).mappings()
    return [flight_facts(row) for row in flight_rows], [observation(row) for row in weather_rows]
