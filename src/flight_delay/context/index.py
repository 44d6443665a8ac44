"""Posted flights and weather held in memory, indexed so that a flight's context costs a few bisections.

A `ContextIndex` is immutable: the per-worker state (`state.py`) builds a new one when records change
and swaps it in whole, so a prediction reads one consistent snapshot while a refresh runs in a thread.
The index only narrows the candidate records; each feature is computed by its definition
(`definitions.py`) over the candidates, which hold every record the definition would keep.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from flight_delay.context.definitions import (
    CONTEXT_FEATURES,
    LOOKBACK_S,
    ORIGIN_WINDOW_S,
    PREVIOUS_LEG_MAX_S,
    Context,
    FlightFacts,
    FlightKey,
    Observation,
    latest_weather,
    local_day,
    previous_features,
    previous_leg,
    recent_departures,
    scheduled_departure,
    scheduled_load,
    waiting_share,
    weather_features,
)

ObservationKey = tuple[str, int]  # (origin, time_hour in epoch seconds)
NO_FEATURES = (float("nan"),) * len(CONTEXT_FEATURES)
# Origin states remembered per index (origin, as_of): forgotten all at once past this many.
ORIGIN_STATES_KEPT = 4096


class Sorted:
    """Records sorted by one time, with the times apart for bisection."""

    __slots__ = ("records", "times")

    def __init__(self, pairs: list[tuple[Any, Any]]) -> None:
        pairs.sort(key=lambda pair: pair[0])
        self.times = [time for time, _ in pairs]
        self.records = [record for _, record in pairs]

    def between(self, start: int, end: int) -> list[Any]:
        """The records whose time is in [start, end)."""
        return self.records[bisect_left(self.times, start) : bisect_left(self.times, end)]


class ContextIndex:
    """The records a worker knows, and each flight's context from them at a prediction time."""

    def __init__(
        self,
        flights: Mapping[FlightKey, FlightFacts],
        observations: Mapping[ObservationKey, Observation],
        horizon: int | None = None,
    ) -> None:
        """Indexes the records; `horizon`: the oldest time they are complete from (None: complete)."""
        self.flights = flights
        self.observations = observations
        self.horizon = horizon
        by_day: defaultdict[tuple[str, int], list[FlightFacts]] = defaultdict(list)
        by_tail: defaultdict[str, list[tuple[tuple, FlightFacts]]] = defaultdict(list)
        scheduled: defaultdict[str, list[tuple[int, FlightFacts]]] = defaultdict(list)
        departed: defaultdict[str, list[tuple[int, FlightFacts]]] = defaultdict(list)
        for f in flights.values():
            by_day[(f.origin, f.day)].append(f)
            scheduled[f.origin].append((f.scheduled, f))
            if f.tailnum is not None:
                by_tail[f.tailnum].append(((f.scheduled, f.carrier, f.flight, f.origin), f))
            if f.departed is not None:
                departed[f.origin].append((f.departed, f))
        # The timetable's load of each origin, day and hour, counted once by its definition.
        self._load = {
            (origin, day, hour): scheduled_load(that_day, origin, day, hour)
            for (origin, day), that_day in by_day.items()
            for hour in {f.hour for f in that_day}
        }
        self._day_total = {key: len(that_day) for key, that_day in by_day.items()}
        self._by_tail = {tail: Sorted(legs) for tail, legs in by_tail.items()}
        self._scheduled = {origin: Sorted(pairs) for origin, pairs in scheduled.items()}
        self._departed = {origin: Sorted(pairs) for origin, pairs in departed.items()}
        weather: defaultdict[str, list[tuple[int, Observation]]] = defaultdict(list)
        for o in observations.values():
            weather[o.origin].append((o.known, o))
        self._weather = {origin: Sorted(pairs) for origin, pairs in weather.items()}
        self._origin_states: dict[tuple[str, int], tuple[float, float, float]] = {}

    @classmethod
    def of(cls, flights: Iterable[FlightFacts], observations: Iterable[Observation]) -> ContextIndex:
        """A complete index of these records (a later record of the same key replaces an earlier one)."""
        return cls({f.key: f for f in flights}, {(o.origin, o.hour): o for o in observations})

    def is_empty(self) -> bool:
        """Whether it holds no flight (then no flight has context)."""
        return not self.flights

    def covers(self, scheduled: int, day_start: int, as_of: int) -> bool:
        """Whether it holds every record the flight's context at as_of reads (its horizon is old enough)."""
        if self.horizon is None:
            return True
        oldest = min(as_of - LOOKBACK_S, scheduled - PREVIOUS_LEG_MAX_S, day_start)
        return oldest >= self.horizon

    def context(self, flight: Mapping[str, Any], as_of: int) -> Context:
        """The flight's context at as_of: found only when its origin's timetable of that day is here."""
        origin = flight["origin"]
        year, month, day, hhmm = flight["year"], flight["month"], flight["day"], flight["sched_dep_time"]
        that_day = (origin, local_day(year, month, day))
        scheduled = scheduled_departure(year, month, day, hhmm)
        total = self._day_total.get(that_day)
        if total is None:
            return Context(
                False, NO_FEATURES, reason=f"no flight from {origin} on {year}-{month:02}-{day:02} posted"
            )
        if not self.covers(scheduled, scheduled_departure(year, month, day, 0), as_of):
            kept = datetime.fromtimestamp(self.horizon or 0, UTC).isoformat()
            return Context(False, NO_FEATURES, reason=f"reads records older than those kept (from {kept})")
        weather = self._latest_weather(origin, as_of)
        previous = self._previous(self._tailnum(flight, that_day), scheduled)
        features = (
            *weather_features(weather),
            *self._load.get((*that_day, hhmm // 100), (0.0, float(total))),
            *previous_features(previous, scheduled, as_of),
            *self._origin_state(origin, as_of),
        )
        return Context(True, features, weather, previous)

    def _tailnum(self, flight: Mapping[str, Any], that_day: tuple[str, int]) -> str | None:
        """The aircraft: the tail number sent, else the posted flight's (when its flight number is sent)."""
        tailnum = flight.get("tailnum")
        if tailnum is None and flight.get("flight") is not None:
            posted = self.flights.get((that_day[1], flight["carrier"], flight["flight"], that_day[0]))
            tailnum = None if posted is None else posted.tailnum
        return tailnum

    def _latest_weather(self, origin: str, as_of: int) -> Observation | None:
        """The origin's newest observation known before as_of (within the definition's age)."""
        known = self._weather.get(origin)
        if known is None:
            return None
        position = bisect_left(known.times, as_of)
        return latest_weather(known.records[max(position - 1, 0) : position], origin, as_of)

    def _previous(self, tailnum: Any, scheduled: int) -> FlightFacts | None:
        """The aircraft's previous NYC departure (its latest leg scheduled before this one)."""
        legs = self._by_tail.get(tailnum) if isinstance(tailnum, str) else None
        if legs is None:
            return None
        position = bisect_left(legs.times, (scheduled,))
        return previous_leg(legs.records[max(position - 1, 0) : position], tailnum, scheduled)

    def _origin_state(self, origin: str, as_of: int) -> tuple[float, float, float]:
        """The origin's state at as_of, remembered: predictions made in the same second share it.

        A memo, not state: the records never change in an index, and whole seconds are its clock.
        """
        key = (origin, as_of)
        state = self._origin_states.get(key)
        if state is None:
            if len(self._origin_states) >= ORIGIN_STATES_KEPT:
                self._origin_states.clear()
            state = self._origin_states[key] = self._origin_state_at(origin, as_of)
        return state

    def _origin_state_at(self, origin: str, as_of: int) -> tuple[float, float, float]:
        """The origin's departures, mean dep_delay and share not left in the window before as_of."""
        start = as_of - ORIGIN_WINDOW_S
        departed = self._departed.get(origin)
        scheduled = self._scheduled.get(origin)
        departures, mean = recent_departures(
            departed.between(start, as_of) if departed else [], origin, as_of
        )
        waiting = waiting_share(scheduled.between(start, as_of) if scheduled else [], origin, as_of)
        return departures, mean, waiting
