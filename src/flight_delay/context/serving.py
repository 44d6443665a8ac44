"""A prediction's context: the features added to each flight, and what the answer says of them.

Each flight is looked up as of its own `as_of` (or the request's time), in the worker's index: from
memory, no query. A flight without context gets none of the features (NaN to the model, which routes
it to the boosters trained without context) and an answer saying why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from flight_delay.context.definitions import CONTEXT_FEATURES, Context, FlightFacts, instant_seconds
from flight_delay.context.index import ContextIndex
from flight_delay.context.ingestion import moment

NOTHING_POSTED = "nothing posted: no flight is known to this service"


class FlightsInContext:
    """The flights' values with their context features, and each prediction's `context` answer."""

    __slots__ = ("answers", "values")

    def __init__(self, values: list[Mapping[str, Any]], answers: list[dict[str, Any]]) -> None:
        self.values = values
        self.answers = answers


def in_context(flights: Sequence[Mapping[str, Any]], index: ContextIndex, now: datetime) -> FlightsInContext:
    """Looks each flight's context up as of its as_of (else `now`, the request's time)."""
    now_s = instant_seconds(now)
    if index.is_empty():
        answer = {"used": False, "as_of": iso(now_s), "reason": NOTHING_POSTED}
        return FlightsInContext(list(flights), [_nothing(flight, answer) for flight in flights])
    values, answers = [], []
    for flight in flights:
        sent = flight.get("as_of")
        as_of = now_s if sent is None else instant_seconds(datetime.fromisoformat(sent))
        context = index.context(flight, as_of)
        found = dict(zip(CONTEXT_FEATURES, context.features, strict=True)) if context.found else None
        values.append(flight if found is None else {**flight, **found})
        answers.append(described(context, as_of))
    return FlightsInContext(values, answers)


@lru_cache(maxsize=65536)
def iso(seconds: int) -> str:
    """Epoch seconds as ISO 8601 in UTC (cached: weather hours, schedules and as_of times repeat)."""
    return moment(seconds).isoformat()


def _nothing(flight: Mapping[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
    """The answer for a flight when nothing was posted: the request's one, or the flight's own as_of."""
    sent = flight.get("as_of")
    if sent is None:
        return answer
    return {**answer, "as_of": iso(instant_seconds(datetime.fromisoformat(sent)))}


def described(context: Context, as_of: int) -> dict[str, Any]:
    """What a prediction says of its context: the time it was read as of, where it came from, the features."""
    if not context.found:
        return {"used": False, "as_of": iso(as_of), "reason": context.reason}
    weather = context.weather
    return {
        "used": True,
        "as_of": iso(as_of),
        "weather": None if weather is None else {"time_hour": iso(weather.hour)},
        "previous_leg": previous_leg_answer(context.previous, as_of),
        "features": {
            name: _number(value) for name, value in zip(CONTEXT_FEATURES, context.features, strict=True)
        },
    }


def previous_leg_answer(previous: FlightFacts | None, as_of: int) -> dict[str, Any] | None:
    """The aircraft's previous leg: which flight, when scheduled, and its state at as_of."""
    if previous is None:
        return None
    if previous.landed is not None and previous.landed < as_of:
        state = "landed"
    elif previous.departed is not None and previous.departed < as_of:
        state = "departed"
    else:
        state = "not departed"
    return {
        "carrier": previous.carrier,
        "flight": previous.flight,
        "scheduled": iso(previous.scheduled),
        "state": state,
    }


def _number(value: float) -> float | None:
    """A feature value for JSON: NaN (missing) as null."""
    return None if value != value else value
