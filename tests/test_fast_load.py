"""msgspec's checks of a predict request (api/fast_load.py) against marshmallow's schema itself.

Differential: for any body parsed from JSON, the fast load either returns what marshmallow returns
(same keys, types and float bits; the very payload objects) or declines, and then marshmallow's answer,
errors included, is what `load` gives. It may decline only what marshmallow refuses or what JSON cannot
carry (numpy numbers, bytes). The response is dumped by scored_body: marshmallow's dump, tested likewise.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any

import marshmallow as ma
import numpy as np
import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flight_delay.api import fast_load as fast_load_module
from flight_delay.api import schemas
from flight_delay.api.fast_load import load_predict_request
from flight_delay.api.schemas import (
    MAX_BATCH_SIZE,
    PredictRequestSchema,
    PredictResponseSchema,
)
from flight_delay.features import FIELDS_BY_NAME, REFERENCE_FLIGHT
from flight_delay.serving.predictions import ScoredFlights

# Repeatable in CI (derandomized, no example database) and bounded; each example runs in process.
DIFFERENTIAL = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REQUEST = PredictRequestSchema()
RESPONSE = PredictResponseSchema()
COLUMNS = list(FIELDS_BY_NAME)


class Text(str):
    """A str subclass: not what JSON gives, so the fast path leaves it to marshmallow."""


class Level(enum.IntEnum):
    """An int subclass, likewise."""

    LOW = 5


def exact(value: Any) -> Any:
    """Spells a value out with every type and float bit pattern, for strict equality.

    A dict's keys are sorted: the order of a flight's loaded values means nothing (the payload, kept
    as the very object sent, holds the client's order).
    """
    if isinstance(value, dict):
        return (type(value), sorted((exact(k), exact(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value), [exact(v) for v in value])
    if isinstance(value, float):
        return (type(value), value.hex())  # -0.0 is not 0.0; NaN equals itself
    return (type(value), value)


def outcome(run: Callable[[], Any]) -> tuple[Any, ...]:
    """Returns what a call gives: its exact result, or the error it raises and its messages."""
    try:
        return ("ok", exact(run()))
    except ma.ValidationError as error:
        return ("invalid", error.messages, exact(error.valid_data))
    except Exception as error:  # marshmallow's own failures (e.g. dumping "x" as an integer)
        return ("raised", type(error), str(error))


def is_json(value: Any) -> bool:
    """Tells whether a value holds only what json.loads gives (dict, list, str, int, float, bool, None)."""
    if type(value) is dict:
        return all(type(k) is str and is_json(v) for k, v in value.items())
    if type(value) is list:
        return all(is_json(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


def fast_load(body: Any) -> Any:
    """The fast load of a body, with the service's batch size."""
    return load_predict_request(body, MAX_BATCH_SIZE)


def numbers(low: int, high: int) -> st.SearchStrategy[Any]:
    """Draws numbers from low to high as ints and floats, the bounds and signed zeros included."""
    return st.one_of(
        st.integers(low, high),
        st.floats(low, high),
        st.sampled_from([low, high, float(low), float(high), 0, 0.0, -0.0]),
    )


hhmm = st.builds(lambda hour, minute: hour * 100 + minute, st.integers(0, 24), st.integers(0, 60))
# Mostly valid values, their edges included; a few fall just outside (minute 60, 2460, day 31 in June).
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "id": st.integers(0, 2**63 - 1) | st.sampled_from([0, 2**63 - 1]),
    "year": st.integers(1900, 2100) | st.sampled_from([1900, 2000, 2012, 2013, 2100]),
    "month": st.integers(1, 12),
    "day": st.integers(1, 31) | st.sampled_from([28, 29, 30, 31]),
    "dep_time": st.none() | hhmm,
    "sched_dep_time": hhmm | st.sampled_from([0, 2359, 2400]),
    "dep_delay": st.none() | numbers(-1440, 10080),
    "arr_time": st.none() | hhmm,
    "sched_arr_time": hhmm,
    "arr_delay": st.none() | numbers(-1440, 10080),
    "carrier": st.from_regex(r"[A-Z0-9]{2}", fullmatch=True),
    "flight": st.integers(0, 99_999),
    "tailnum": st.none() | st.from_regex(r"[A-Z0-9]{1,10}", fullmatch=True),
    "origin": st.from_regex(r"[A-Z0-9]{3}", fullmatch=True),
    "dest": st.from_regex(r"[A-Z0-9]{3}", fullmatch=True),
    "air_time": st.none() | numbers(0, 1440),
    "distance": st.integers(1, 20_000)
    | st.floats(0, 20_000, exclude_min=True)
    | st.sampled_from([20_000, 5e-324, 0, -0.0]),
    "hour": st.integers(0, 23),
    "minute": st.integers(0, 59),
    "time_hour": st.datetimes().map(lambda moment: moment.isoformat())
    | st.sampled_from(["2013-01-01T10:00:00Z", "2013-01-01", "2013-01-01T10:00:00.000000+00:00"]),
    "name": st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=128),
}
# Values that break a field: wrong types, bounds, special numbers, control characters, bad dates.
# fmt: off
NASTY_VALUES = [
    None, True, False, 0, -1, 5.0, -0.0, 0.0, 2**63, 2**63 - 1, -(2**63) - 1, 10**400, 1e308, -1e308,
    5e-324, math.nan, math.inf, -math.inf, 2360, 2400, 2400.0, 2401, 60, "", "5", "UA", "ua", "UA\n",
    "\x00", "\x1f", "\x7f", "\ud800", "N1\udfff", "x" * 41, "x" * 129, "2013-02-29T00:00:00",
    "2013-13-01", "yesterday", [], {}, [1], {"a": 1},
]
# fmt: on
NASTY = st.one_of(
    st.sampled_from(NASTY_VALUES),
    st.integers(),
    st.floats(),
    st.text(st.characters(exclude_categories=()), max_size=12),
)
# What json.loads never gives but a Python caller might: marshmallow decides, the fast path declines.
NOT_JSON = st.sampled_from([np.int64(5), np.float64(2.0), b"UA", Text("UA"), Level.LOW, (1,), 5 + 0j, {1: 2}])
unknown_names = st.text(max_size=8).filter(lambda name: name not in FIELDS_BY_NAME and name != "flights")


def one_in(times: int) -> st.SearchStrategy[bool]:
    """Draws True about once in `times` (False is the simplest draw, which hypothesis favours)."""
    return st.sampled_from([False] * (times - 1) + [True])


@st.composite
def flights(draw: st.DrawFn) -> dict[str, Any]:
    """Draws a flight of some columns in any order, mostly valid, a few fields broken or unknown."""
    names = draw(st.permutations(COLUMNS))[: draw(st.integers(0, len(COLUMNS)))]
    flight = {name: draw(PLAUSIBLE[name]) for name in names}
    if draw(one_in(4)):
        for name in draw(st.sets(st.sampled_from(COLUMNS), min_size=1, max_size=2)):
            flight[name] = draw(NASTY | NOT_JSON) if draw(one_in(5)) else draw(NASTY)
    if draw(one_in(10)):
        flight.update(draw(st.dictionaries(unknown_names, NASTY, min_size=1, max_size=2)))
    return flight


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    """Draws a request body: mostly a flight or a batch, sometimes another shape."""
    shape = draw(
        st.sampled_from(["flight", "batch"] * 4 + ["flights not a list", "extra key", "list", "nasty"])
    )
    if shape == "flight":
        return draw(flights())
    if shape == "batch":
        return {
            "flights": draw(
                st.lists(st.one_of(flights(), NASTY) if draw(one_in(8)) else flights(), max_size=4)
            )
        }
    if shape == "flights not a list":
        return {"flights": draw(NASTY | NOT_JSON)}
    if shape == "extra key":
        extra = draw(st.dictionaries(unknown_names, NASTY, min_size=1, max_size=1))
        return {"flights": draw(st.lists(flights(), max_size=2)), **extra}
    return draw(st.lists(flights(), max_size=2)) if shape == "list" else draw(NASTY | NOT_JSON)


@DIFFERENTIAL
@given(body=bodies())
def test_fast_load_is_marshmallow_or_declines(body: Any) -> None:
    before = repr(body)
    fast = fast_load(body)
    assert repr(body) == before, "the fast path must not change its input"
    expected = outcome(lambda: ma.Schema.load(REQUEST, body))

    assert outcome(lambda: REQUEST.load(body)) == expected
    if fast is None:
        event(f"fast path declined; marshmallow: {expected[0]}")
        # Declining is for what marshmallow refuses, or what JSON cannot carry.
        assert expected[0] != "ok" or not is_json(body), body
        return
    event("fast path answered")
    if is_json(body):
        assert exact(fast) == expected[1]
    else:  # a str subclass is kept as it came, where marshmallow gives str(value): equal, not the type
        assert expected[0] == "ok"
        assert fast == ma.Schema.load(REQUEST, body)
    originals = body.get("flights", [body])
    assert all(f["payload"] is o for f, o in zip(fast["flights"], originals, strict=True))


@DIFFERENTIAL
@given(flight=st.fixed_dictionaries({}, optional=PLAUSIBLE))
def test_plausible_flights_are_loaded_exactly(flight: dict[str, Any]) -> None:
    expected = outcome(lambda: ma.Schema.load(REQUEST, flight))
    fast = fast_load(flight)
    batch = fast_load({"flights": [flight, flight]})

    event(f"marshmallow: {expected[0]}")
    if expected[0] == "ok":
        assert ("ok", exact(fast)) == expected
        assert batch["flights"] == [fast["flights"][0]] * 2
        assert batch["single"] is False
    else:
        assert fast is None
        assert batch is None


# What the service returns, and numbers marshmallow dumps as int() or float() of themselves.
ODD_NUMBERS = st.sampled_from([True, False, 1, 1.5, np.int64(1), np.float64(1.5), Level.LOW])
served_predictions = st.builds(
    lambda history_id, arr_delay, basis: {"history_id": history_id, "arr_delay": arr_delay, "basis": basis},
    st.integers(0, 2**63 - 1) | ODD_NUMBERS,
    st.floats() | st.integers() | ODD_NUMBERS,
    st.sampled_from(["at_departure", "before_departure"]),
)
served = st.builds(
    ScoredFlights,
    model_version=st.text(max_size=70),
    request_id=st.text(max_size=40),
    predictions=st.lists(served_predictions, max_size=6),
)


@DIFFERENTIAL
@given(result=served)
def test_the_answer_is_dumped_as_marshmallow_dumps_it(result: ScoredFlights) -> None:
    expected = outcome(lambda: ma.Schema.dump(RESPONSE, result))

    assert outcome(lambda: schemas.scored_body(result)) == expected
    assert outcome(lambda: RESPONSE.dump(result)) == expected


def test_the_reference_flight_takes_the_fast_path() -> None:
    flight = dict(REFERENCE_FLIGHT)

    single = fast_load(flight)
    batch = fast_load({"flights": [flight, flight]})

    assert exact(single) == exact(ma.Schema.load(REQUEST, flight))
    assert single["single"] is True
    assert single["flights"][0]["payload"] is flight
    assert exact(batch) == exact(ma.Schema.load(REQUEST, {"flights": [flight, flight]}))


def test_values_are_loaded_while_the_payload_stays_as_sent() -> None:
    flight = dict(reversed(REFERENCE_FLIGHT.items()), dep_delay=2, distance=1400)

    [loaded] = fast_load(flight)["flights"]

    assert sorted(loaded["values"]) == sorted(COLUMNS)
    assert type(loaded["values"]["dep_delay"]) is float
    assert type(loaded["values"]["distance"]) is float
    assert loaded["payload"] is flight
    assert exact(loaded) == exact(ma.Schema.load(REQUEST, flight)["flights"][0])


@pytest.mark.parametrize(
    "changes",
    [
        {"dep_delay": -0.0},
        {"dep_delay": -1440},
        {"dep_delay": 10080.0},
        {"id": 2**63 - 1},
        {"sched_dep_time": 2400},
        {"sched_dep_time": 0, "dep_time": None},
        {"year": 2012, "month": 2, "day": 29},
        {"year": 2000, "month": 2, "day": 29},
        {"distance": 5e-324},
        {"name": "x" * 128},
        {"name": "Société Aérienne ✈ 航空"},
        {"tailnum": None},
        {"time_hour": "2013-01-01T10:00:00.000000+00:00"},
        # As a pandas DataFrame's records spell them: NaN for a missing value, integers as floats.
        {"year": 2013.0, "month": 1.0, "dep_time": 517.0, "sched_dep_time": -0.0},
        {"dep_delay": math.nan, "dep_time": math.nan, "tailnum": math.nan},
    ],
)
def test_edges_marshmallow_accepts_are_fast_and_exact(changes: dict[str, Any]) -> None:
    flight = {**REFERENCE_FLIGHT, **changes}

    fast = fast_load(flight)

    assert fast is not None
    assert exact(fast) == exact(ma.Schema.load(REQUEST, flight))


@pytest.mark.parametrize(
    "changes",
    [
        {"distance": 0},
        {"distance": -0.0},
        {"id": 2**63},
        {"id": True},
        {"dep_time": 517.5},
        {"sched_dep_time": math.nan},
        {"carrier": math.nan},
        {"dep_delay": math.inf},
        {"dep_delay": 10**400},
        {"dep_delay": "2"},
        {"dep_delay": False},
        {"sched_dep_time": 2360},
        {"sched_dep_time": 2401},
        {"sched_dep_time": None},
        {"carrier": "UA\n"},
        {"carrier": "ua"},
        {"name": ""},
        {"name": "x" * 129},
        {"name": "Air\x00line"},
        {"name": "Air\ud800line"},
        {"time_hour": "2013-02-30T00:00:00"},
        {"time_hour": "2013-01-01T10:00:00.000000000000+00:00:00"},
        {"year": 2013, "month": 2, "day": 29},
        {"year": 2100, "month": 2, "day": 29},
        {"month": 6, "day": 31},
        {"departure": "now"},
        {"flight": np.int64(5)},
        {"carrier": b"UA"},
        {"id": "\ud800"},  # msgspec fails to word this refusal (UnicodeEncodeError): declined all the same
    ],
)
def test_what_the_fast_path_declines_gets_marshmallows_answer(changes: dict[str, Any]) -> None:
    flight = {**REFERENCE_FLIGHT, **changes}

    assert fast_load(flight) is None
    assert fast_load({"flights": [REFERENCE_FLIGHT, flight]}) is None
    assert outcome(lambda: REQUEST.load(flight)) == outcome(lambda: ma.Schema.load(REQUEST, flight))


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"flights": []},
        {"flights": None},
        {"flights": {"0": REFERENCE_FLIGHT}},
        {"flights": (REFERENCE_FLIGHT,)},
        {"flights": [REFERENCE_FLIGHT], "single": True},
        {"flights": [None]},
        [REFERENCE_FLIGHT],
        "a flight",
        None,
    ],
)
def test_body_shapes_match_marshmallow(body: Any) -> None:
    assert outcome(lambda: REQUEST.load(body)) == outcome(lambda: ma.Schema.load(REQUEST, body))


def test_the_largest_batch_is_fast_and_one_more_is_marshmallows() -> None:
    largest = {"flights": [dict(REFERENCE_FLIGHT, id=i) for i in range(MAX_BATCH_SIZE)]}
    too_many = {"flights": [*largest["flights"], REFERENCE_FLIGHT]}

    assert exact(fast_load(largest)) == exact(ma.Schema.load(REQUEST, largest))
    assert fast_load(too_many) is None
    error = outcome(lambda: REQUEST.load(too_many))
    assert error[:2] == ("invalid", {"flights": ["Length must be between 1 and 10000."]})


def refuse_fast_path(*_: Any) -> None:
    """Stands in for a fast path that must not run."""
    raise AssertionError("the fast path ran")


def test_options_and_arguments_go_to_marshmallow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "load_predict_request", refuse_fast_path)
    monkeypatch.setattr(schemas, "scored_body", refuse_fast_path)

    class Subclass(PredictRequestSchema):
        """A subclass: not the class the fast path checks for."""

    loaded = REQUEST.load({"flights": [REFERENCE_FLIGHT], "extra": 1}, unknown=ma.EXCLUDE)
    assert loaded["flights"][0]["values"] == REFERENCE_FLIGHT
    assert PredictRequestSchema(partial=True).load(REFERENCE_FLIGHT)["single"] is True
    assert REQUEST.load(REFERENCE_FLIGHT, many=False)["single"] is True
    assert Subclass().load(REFERENCE_FLIGHT)["single"] is True
    result = ScoredFlights("v", "r", [])
    assert RESPONSE.dump(result, many=False) == {"model_version": "v", "request_id": "r", "predictions": []}
    assert PredictResponseSchema(only=("request_id",)).dump(result) == {"request_id": "r"}
    assert RESPONSE.dump({"model_version": "v", "request_id": "r", "predictions": []})["request_id"] == "r"


def test_the_api_loads_and_dumps_through_the_fast_paths(
    loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = []

    def spy(fast: Callable[..., Any]) -> Callable[..., Any]:
        """Records whether the fast path answered."""

        def run(*args: Any) -> Any:
            answered.append(fast(*args) is not None)
            return fast(*args)

        return run

    monkeypatch.setattr(schemas, "load_predict_request", spy(schemas.load_predict_request))
    monkeypatch.setattr(schemas, "scored_body", spy(schemas.scored_body))

    response = loaded_client.post("/model/predict/", json={"flights": [REFERENCE_FLIGHT, REFERENCE_FLIGHT]})

    assert response.status_code == 200
    assert answered == [True, True]  # webargs called load, flask-smorest dump, with no options


def test_the_api_errors_are_marshmallows(loaded_client: FlaskClient) -> None:
    flight = {**REFERENCE_FLIGHT, "day": 29, "month": 2, "dep_delay": True}

    response = loaded_client.post("/model/predict/", json=flight)

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"dep_delay": ["Not a valid number."]}


def test_each_distinct_value_is_tested_once_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def record(value: Any) -> bool:
        """Accepts any value but 999, noting each call."""
        calls.append(value)
        return value != 999

    monkeypatch.setattr(fast_load_module, "TESTS", [("dep_time", record, {None})])
    flights = [dict(REFERENCE_FLIGHT, dep_time=t) for t in (517, 517, None, 600, 517)]

    assert fast_load({"flights": flights}) is not None
    assert sorted(calls) == [517, 600]
    assert fast_load(dict(REFERENCE_FLIGHT, dep_time=600)) is not None
    assert sorted(calls) == [517, 600]  # passed before: not tested again
    assert fast_load({"flights": [*flights, dict(REFERENCE_FLIGHT, dep_time=999)]}) is None
    assert fast_load(dict(REFERENCE_FLIGHT, dep_time=999)) is None  # a refusal is not remembered
    assert calls.count(999) == 2


def test_the_values_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_load_module, "REMEMBERED", 3)
    [(_, _, passed)] = [entry for entry in fast_load_module.TESTS if entry[0] == "name"]

    for index in range(10):
        assert fast_load(dict(REFERENCE_FLIGHT, name=f"Airline {index}")) is not None
        assert len(passed) <= 3
        assert None in passed
    assert fast_load(dict(REFERENCE_FLIGHT, name="Air\x00line")) is None


def test_a_field_default_is_given_to_flights_that_omit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_load_module, "DEFAULTS", {"tailnum": None, "name": lambda: "unnamed"})
    without = {k: v for k, v in REFERENCE_FLIGHT.items() if k not in ("tailnum", "name")}

    [loaded] = fast_load(without)["flights"]

    assert loaded["values"]["tailnum"] is None
    assert loaded["values"]["name"] == "unnamed"
    assert loaded["payload"] is without
    assert "tailnum" not in without
