"""The context's definitions: when facts are known, each feature, and the index that serves them fast."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from flight_delay.context import index as index_module
from flight_delay.context.definitions import (
    CONTEXT_FEATURES,
    LOOKBACK_S,
    TAXI_MINUTES,
    WEATHER_KNOWN_AFTER_S,
    Context,
    FlightFacts,
    Observation,
    flight_facts,
    latest_weather,
    local_day,
    observation,
    previous_features,
    previous_leg,
    recent_departures,
    scheduled_departure,
    scheduled_load,
    waiting_share,
    weather_features,
)
from flight_delay.context.index import ContextIndex
from flight_delay.feed import known_by
from tests.context_data import synthetic_context


def utc(text: str) -> int:
    """An ISO 8601 instant as epoch seconds."""
    return int(datetime.fromisoformat(text).timestamp())


@pytest.mark.parametrize(
    ("local", "instant"),
    [
        ((2013, 1, 1, 515), "2013-01-01T10:15:00+00:00"),  # EST, UTC-5
        ((2013, 7, 1, 515), "2013-07-01T09:15:00+00:00"),  # EDT, UTC-4
        ((2013, 3, 10, 230), "2013-03-10T07:30:00+00:00"),  # skipped by spring forward: as 3:30 EDT
        ((2013, 11, 3, 130), "2013-11-03T05:30:00+00:00"),  # repeated by fall back: the first (EDT)
        ((2013, 12, 31, 2400), "2014-01-01T05:00:00+00:00"),  # 2400 is the next midnight
    ],
)
def test_the_schedule_is_new_york_local_time(local: tuple[int, int, int, int], instant: str) -> None:
    assert scheduled_departure(*local) == utc(instant)


def test_a_departure_is_known_when_it_happens_and_a_landing_after_air_time_and_taxi() -> None:
    flight = {
        "year": 2013, "month": 1, "day": 1, "sched_dep_time": 515, "carrier": "UA", "flight": 1545,
        "origin": "EWR", "tailnum": "N14228", "dep_delay": 2.5, "air_time": 227.0, "arr_delay": 11.0,
    }  # fmt: skip

    facts = flight_facts(flight)

    assert facts.scheduled == utc("2013-01-01T10:15:00+00:00")
    assert facts.departed == facts.scheduled + 150
    assert facts.landed == facts.departed + 227 * 60 + TAXI_MINUTES * 60
    assert flight_facts({**flight, "air_time": None}).landed is None  # no air_time: never known
    assert flight_facts({**flight, "air_time": None}).arr_delay is None
    early = flight_facts({**flight, "dep_delay": -0.5})
    assert early.departed == facts.scheduled - 30
    assert flight_facts({**flight, "dep_delay": None}).departed is None  # not left, or never will


def test_a_weather_hour_is_known_at_its_end_and_out_of_bounds_values_are_missing() -> None:
    observed = observation({"origin": "EWR", "time_hour": "2013-02-12T03:00:00Z", "wind_speed": 1048.36})

    assert observed.known == utc("2013-02-12T03:00:00+00:00") + WEATHER_KNOWN_AFTER_S
    assert all(math.isnan(v) for v in observed.values)  # 1,048 mph is no wind speed
    assert latest_weather([observed], "EWR", observed.known) is None  # strictly before as_of
    assert latest_weather([observed], "EWR", observed.known + 1) == observed


def naive_context(
    flights: list[FlightFacts], weather: list[Observation], flight: dict[str, Any], as_of: int
) -> tuple:
    """The features straight from the definitions over every record (no index)."""
    scheduled = scheduled_departure(flight["year"], flight["month"], flight["day"], flight["sched_dep_time"])
    day = local_day(flight["year"], flight["month"], flight["day"])
    previous = previous_leg(flights, flight.get("tailnum"), scheduled)
    return (
        *weather_features(latest_weather(weather, flight["origin"], as_of)),
        *scheduled_load(flights, flight["origin"], day, flight["sched_dep_time"] // 100),
        *previous_features(previous, scheduled, as_of),
        *recent_departures(flights, flight["origin"], as_of),
        waiting_share(flights, flight["origin"], as_of),
    )


def same(left: tuple, right: tuple) -> bool:
    """Equal feature tuples, NaN equal to NaN."""
    return np.array_equal(np.array(left, dtype=float), np.array(right, dtype=float), equal_nan=True)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_index_answers_what_the_definitions_say(seed: int) -> None:
    records, observations, questions = synthetic_context(seed)
    flights = [flight_facts(r) for r in records]
    weather = [observation(o) for o in observations]
    index = ContextIndex.of(flights, weather)

    for flight, as_of in questions * 2:  # the second time, each origin's state from the memo
        found = index.context(flight, as_of)
        assert found.found
        assert same(found.features, naive_context(flights, weather, flight, as_of)), (flight, as_of)


def test_the_origin_states_remembered_are_bounded_and_forgotten_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(index_module, "ORIGIN_STATES_KEPT", 3)
    records, observations, questions = synthetic_context(0)
    flights = [flight_facts(r) for r in records]
    weather = [observation(o) for o in observations]
    index = ContextIndex.of(flights, weather)

    for flight, as_of in questions:
        assert same(index.context(flight, as_of).features, naive_context(flights, weather, flight, as_of))
        assert len(index._origin_states) <= 3
    assert len({(flight["origin"], as_of) for flight, as_of in questions}) > 3  # so it forgot some


@pytest.mark.parametrize("seed", [0, 3])
def test_a_context_is_the_same_from_what_was_known_at_as_of_or_from_everything(seed: int) -> None:
    records, observations, questions = synthetic_context(seed)
    everything = ContextIndex.of(map(flight_facts, records), map(observation, observations))

    for flight, as_of in questions:
        known_then = ContextIndex.of(
            (flight_facts(known_by(r, flight_facts(r), as_of)) for r in records),
            (o for o in map(observation, observations) if o.known < as_of),
        )
        assert same(known_then.context(flight, as_of).features, everything.context(flight, as_of).features)


def test_the_previous_leg_is_found_by_the_posted_flight_number_when_no_tail_is_sent() -> None:
    records, observations, questions = synthetic_context(4)
    index = ContextIndex.of(map(flight_facts, records), map(observation, observations))
    with_legs = [(r, a) for (r, a) in questions if not math.isnan(index.context(r, a).features[-4])]

    flight, as_of = with_legs[0]
    anonymous = {**flight, "tailnum": None}

    assert same(index.context(anonymous, as_of).features, index.context(flight, as_of).features)
    assert math.isnan(index.context({**anonymous, "flight": None}, as_of).features[-4])


def test_without_the_origins_timetable_or_before_the_horizon_there_is_no_context() -> None:
    records, observations, questions = synthetic_context(0)
    facts = {f.key: f for f in map(flight_facts, records)}
    flight, as_of = questions[-1]
    horizon = as_of - LOOKBACK_S + 1
    kept = ContextIndex(facts, {(o.origin, o.hour): o for o in map(observation, observations)}, horizon)

    elsewhere = kept.context({**flight, "origin": "ZZZ"}, as_of)
    too_old = kept.context(flight, as_of)

    assert elsewhere == Context(False, elsewhere.features, reason=elsewhere.reason)
    assert "no flight from ZZZ" in elsewhere.reason
    assert not too_old.found
    assert datetime.fromtimestamp(horizon, UTC).isoformat() in too_old.reason
    assert all(math.isnan(v) for v in too_old.features)
    assert len(too_old.features) == len(CONTEXT_FEATURES)
