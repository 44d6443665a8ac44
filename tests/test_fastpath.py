"""The compiled fast paths of the predict schemas against marshmallow itself, run explicitly.

Differential: for any body, the fast load either returns exactly what marshmallow returns (same types,
same float bits, same key order, the very payload objects) or declines, and then marshmallow's answer,
errors included, is what `load` gives. The fast path may decline only what marshmallow refuses or what
JSON cannot carry (numpy numbers, bytes, subclasses). Likewise for the response dump.
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

from flight_delay.api import schemas
from flight_delay.api.fastpath import Unsupported, compile_dumper, compile_request_loader
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
    """Spells a value out with every type, float bit pattern and dict key order, for strict equality."""
    if isinstance(value, dict):
        return (type(value), [(exact(k), exact(v)) for k, v in value.items()])
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
    fast = schemas.PREDICT_REQUEST_FAST_LOAD(body)
    assert repr(body) == before, "the fast path must not change its input"
    expected = outcome(lambda: ma.Schema.load(REQUEST, body))

    assert outcome(lambda: REQUEST.load(body)) == expected
    if fast is None:
        event(f"fast path declined; marshmallow: {expected[0]}")
        # Declining is for what marshmallow refuses, or what JSON cannot carry.
        assert expected[0] != "ok" or not is_json(body), body
        return
    event("fast path answered")
    assert exact(fast) == expected[1]
    originals = body.get("flights", [body])
    assert all(f["payload"] is o for f, o in zip(fast["flights"], originals, strict=True))


@DIFFERENTIAL
@given(flight=st.fixed_dictionaries({}, optional=PLAUSIBLE))
def test_plausible_flights_are_loaded_exactly(flight: dict[str, Any]) -> None:
    expected = outcome(lambda: ma.Schema.load(REQUEST, flight))
    fast = schemas.PREDICT_REQUEST_FAST_LOAD(flight)
    batch = schemas.PREDICT_REQUEST_FAST_LOAD({"flights": [flight, flight]})

    event(f"marshmallow: {expected[0]}")
    if expected[0] == "ok":
        assert ("ok", exact(fast)) == expected
        assert batch["flights"] == [fast["flights"][0]] * 2
        assert batch["single"] is False
    else:
        assert fast is None
        assert batch is None


# What the service returns, and variations: keys swapped, missing or extra, values of other types.
# Numbers marshmallow dumps as int() or float() of themselves: not the same value, or not the same type.
ODD_NUMBERS = st.sampled_from([True, False, 1, 1.5, np.int64(1), np.float64(1.5), Level.LOW, None, "1"])
served_predictions = st.builds(
    lambda history_id, arr_delay: {"history_id": history_id, "arr_delay": arr_delay},
    st.integers(0, 2**63 - 1),
    st.floats(),
)
other_predictions = st.one_of(
    st.builds(lambda prediction: dict(reversed(prediction.items())), served_predictions),
    st.builds(
        lambda history_id, arr_delay: {"history_id": history_id, "arr_delay": arr_delay},
        st.integers() | NASTY | NOT_JSON,
        st.floats() | NASTY | NOT_JSON,
    ),
    st.fixed_dictionaries(
        {},
        optional={"history_id": NASTY | NOT_JSON, "arr_delay": NASTY | NOT_JSON, "other": st.integers()},
    ),
    NASTY,
)
texts = st.text(max_size=70) | NASTY | NOT_JSON
served = st.builds(
    ScoredFlights,
    model_version=st.text(max_size=70),
    request_id=st.text(max_size=40),
    predictions=st.lists(served_predictions, max_size=6),
)
odd_predictions = st.one_of(
    st.builds(lambda odd, delay: {"history_id": odd, "arr_delay": delay}, ODD_NUMBERS, st.floats()),
    st.builds(lambda odd, hid: {"history_id": hid, "arr_delay": odd}, ODD_NUMBERS, st.integers()),
)
odd_served = st.builds(
    ScoredFlights,
    model_version=st.text(max_size=70),
    request_id=st.text(max_size=40),
    predictions=st.lists(served_predictions | odd_predictions, min_size=1, max_size=3),
)
other_scored = st.builds(
    ScoredFlights,
    model_version=texts,
    request_id=texts,
    predictions=st.lists(served_predictions | other_predictions, max_size=6) | NASTY | NOT_JSON,
)
as_dict = st.fixed_dictionaries(
    {"model_version": st.text(max_size=70) | NASTY, "predictions": st.lists(served_predictions)},
    optional={"request_id": st.text(max_size=40)},
)
scored = st.sampled_from([served] * 3 + [odd_served] * 2 + [other_scored] * 2 + [as_dict] * 2).flatmap(
    lambda strategy: strategy
)


def is_served_shape(result: Any) -> bool:
    """Tells whether a result is shaped as the service returns it: the fast dump must take those."""
    return (
        type(result) is ScoredFlights
        and type(result.model_version) is str
        and type(result.request_id) is str
        and type(result.predictions) is list
        and all(
            type(p) is dict
            and list(p) == ["history_id", "arr_delay"]
            and type(p["history_id"]) is int
            and type(p["arr_delay"]) is float
            for p in result.predictions
        )
    )


@DIFFERENTIAL
@given(result=scored)
def test_fast_dump_is_marshmallow_or_declines(result: Any) -> None:
    fast = schemas.PREDICT_RESPONSE_FAST_DUMP(result)
    expected = outcome(lambda: ma.Schema.dump(RESPONSE, result))

    assert outcome(lambda: RESPONSE.dump(result)) == expected
    if fast is None:
        event(f"fast dump declined; marshmallow: {expected[0]}")
        assert not is_served_shape(result), result
        return
    event("fast dump answered")
    assert ("ok", exact(fast)) == expected


def test_the_service_result_takes_the_fast_dump() -> None:
    result = ScoredFlights("a" * 64, "req-1", [{"history_id": i, "arr_delay": i / 3} for i in range(3)])

    dumped = schemas.PREDICT_RESPONSE_FAST_DUMP(result)

    assert exact(dumped) == exact(ma.Schema.dump(RESPONSE, result))
    assert all(d is not p for d, p in zip(dumped["predictions"], result.predictions, strict=True))
    assert schemas.PREDICT_RESPONSE_FAST_DUMP(ScoredFlights("v", "r", [])) == {
        "model_version": "v",
        "request_id": "r",
        "predictions": [],
    }
    as_dict = {"predictions": result.predictions, "request_id": "req-1", "model_version": "a" * 64}
    assert exact(schemas.PREDICT_RESPONSE_FAST_DUMP(as_dict)) == exact(dumped)


def test_the_reference_flight_takes_the_fast_path() -> None:
    flight = dict(REFERENCE_FLIGHT)

    single = schemas.PREDICT_REQUEST_FAST_LOAD(flight)
    batch = schemas.PREDICT_REQUEST_FAST_LOAD({"flights": [flight, flight]})

    assert exact(single) == exact(ma.Schema.load(REQUEST, flight))
    assert single["single"] is True
    assert single["flights"][0]["payload"] is flight
    assert exact(batch) == exact(ma.Schema.load(REQUEST, {"flights": [flight, flight]}))


def test_values_follow_the_schema_while_the_payload_stays_as_sent() -> None:
    flight = dict(reversed(REFERENCE_FLIGHT.items()), dep_delay=2, distance=1400)

    [loaded] = schemas.PREDICT_REQUEST_FAST_LOAD(flight)["flights"]

    assert list(loaded["values"]) == COLUMNS
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
    ],
)
def test_edges_marshmallow_accepts_are_fast_and_exact(changes: dict[str, Any]) -> None:
    flight = {**REFERENCE_FLIGHT, **changes}

    fast = schemas.PREDICT_REQUEST_FAST_LOAD(flight)

    assert fast is not None
    assert exact(fast) == exact(ma.Schema.load(REQUEST, flight))


@pytest.mark.parametrize(
    "changes",
    [
        {"distance": 0},
        {"distance": -0.0},
        {"id": 2**63},
        {"id": True},
        {"year": 2013.0},
        {"month": 5.0},
        {"dep_delay": math.nan},
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
    ],
)
def test_what_the_fast_path_declines_gets_marshmallows_answer(changes: dict[str, Any]) -> None:
    flight = {**REFERENCE_FLIGHT, **changes}

    assert schemas.PREDICT_REQUEST_FAST_LOAD(flight) is None
    assert schemas.PREDICT_REQUEST_FAST_LOAD({"flights": [REFERENCE_FLIGHT, flight]}) is None
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

    assert exact(schemas.PREDICT_REQUEST_FAST_LOAD(largest)) == exact(ma.Schema.load(REQUEST, largest))
    assert schemas.PREDICT_REQUEST_FAST_LOAD(too_many) is None
    error = outcome(lambda: REQUEST.load(too_many))
    assert error[:2] == ("invalid", {"flights": ["Length must be between 1 and 10000."]})


def refuse_fast_path(*_: Any) -> None:
    """Stands in for a fast path that must not run."""
    raise AssertionError("the fast path ran")


def test_options_and_arguments_go_to_marshmallow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schemas, "PREDICT_REQUEST_FAST_LOAD", refuse_fast_path)
    monkeypatch.setattr(schemas, "PREDICT_RESPONSE_FAST_DUMP", refuse_fast_path)

    class Subclass(PredictRequestSchema):
        """A subclass: not what was compiled."""

    loaded = REQUEST.load({"flights": [REFERENCE_FLIGHT], "extra": 1}, unknown=ma.EXCLUDE)
    assert loaded["flights"][0]["values"] == REFERENCE_FLIGHT
    assert PredictRequestSchema(partial=True).load(REFERENCE_FLIGHT)["single"] is True
    assert REQUEST.load(REFERENCE_FLIGHT, many=False)["single"] is True
    assert Subclass().load(REFERENCE_FLIGHT)["single"] is True
    result = ScoredFlights("v", "r", [])
    assert RESPONSE.dump(result, many=False) == {"model_version": "v", "request_id": "r", "predictions": []}
    assert PredictResponseSchema(only=("request_id",)).dump(result) == {"request_id": "r"}


def test_the_api_loads_and_dumps_through_the_fast_paths(
    loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = []

    def spy(fast: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """Records whether the fast path answered."""

        def run(value: Any) -> Any:
            answered.append(fast(value) is not None)
            return fast(value)

        return run

    monkeypatch.setattr(schemas, "PREDICT_REQUEST_FAST_LOAD", spy(schemas.PREDICT_REQUEST_FAST_LOAD))
    monkeypatch.setattr(schemas, "PREDICT_RESPONSE_FAST_DUMP", spy(schemas.PREDICT_RESPONSE_FAST_DUMP))

    response = loaded_client.post("/model/predict/", json={"flights": [REFERENCE_FLIGHT, REFERENCE_FLIGHT]})

    assert response.status_code == 200
    assert answered == [True, True]  # webargs called load, flask-smorest dump, with no options


def test_the_api_errors_are_marshmallows(loaded_client: FlaskClient) -> None:
    flight = {**REFERENCE_FLIGHT, "day": 29, "month": 2, "dep_delay": True}

    response = loaded_client.post("/model/predict/", json=flight)

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"dep_delay": ["Not a valid number."]}


def schema_with(**fields: Any) -> ma.Schema:
    """Builds a request schema whose items have the given fields."""
    item = ma.Schema.from_dict(fields)
    return ma.Schema.from_dict({"flights": ma.fields.List(ma.fields.Nested(item))})()


Plain = ma.Schema.from_dict({"year": ma.fields.Integer()})


class WithPreLoad(ma.Schema):
    """Items with a pre_load hook."""

    year = ma.fields.Integer()

    @ma.pre_load
    def change(self, data: Any, **_: Any) -> Any:
        """Rewrites the input."""
        return data


class WithManyHook(ma.Schema):
    """Items with a pass_many post_load hook."""

    year = ma.fields.Integer()

    @ma.post_load(pass_collection=True)
    def change(self, data: Any, **_: Any) -> Any:
        """Rewrites the output."""
        return data


@pytest.mark.parametrize(
    "build",
    [
        lambda: schema_with(on_time=ma.fields.Boolean()),
        lambda: schema_with(year=ma.fields.Integer(data_key="Year")),
        lambda: schema_with(year=ma.fields.Integer(dump_default=2013)),
        lambda: schema_with(year=ma.fields.Decimal()),
        lambda: ma.Schema.from_dict({"flights": ma.fields.List(ma.fields.Nested(WithPreLoad))})(),
        lambda: ma.Schema.from_dict({"flights": ma.fields.List(ma.fields.Nested(WithManyHook))})(),
        lambda: ma.Schema.from_dict(
            {"flights": ma.fields.List(ma.fields.Nested(Plain), validate=lambda _: True)}
        )(),
        lambda: ma.Schema.from_dict({"flights": ma.fields.List(ma.fields.Nested(Plain, many=True))})(),
        lambda: ma.Schema.from_dict({"flights": ma.fields.List(ma.fields.Integer())})(),
        lambda: ma.Schema.from_dict({"a": ma.fields.List(ma.fields.Nested(Plain)), "b": ma.fields.Raw()})(),
    ],
)
def test_the_compiler_refuses_what_it_does_not_reproduce(build: Callable[[], ma.Schema]) -> None:
    with pytest.raises(Unsupported):
        compile_request_loader(build())


DEFAULTED = schema_with(
    year=ma.fields.Integer(required=True),
    gate=ma.fields.String(load_default="A1", validate=ma.validate.Length(max=3)),
    terminal=ma.fields.Integer(load_default=None),
    tags=ma.fields.String(load_default=lambda: "none"),
)


@pytest.mark.parametrize(
    "item",
    [
        {"year": 2013},
        {"year": 2013, "gate": "B22"},
        {"year": 2013, "gate": "TOO LONG"},
        {"year": 2013, "terminal": None, "tags": "x"},
        {"year": 2013, "gate": "B2", "terminal": 4, "tags": "x"},
        {"year": 2013, "unknown": 1},
        {"year": 2013, "gate": "B2", "terminal": 4, "tags": "x", "unknown": 1},
        {"gate": "B2"},
    ],
)
def test_fields_with_a_load_default_compile_and_load_as_marshmallow(item: dict[str, Any]) -> None:
    fast = compile_request_loader(DEFAULTED)
    body = {"flights": [item, item]}
    expected = outcome(lambda: DEFAULTED.load(body))
    answer = fast(body)
    assert answer is None or ("ok", exact(answer)) == expected
    if expected[0] == "ok":
        assert answer is not None  # what marshmallow accepts, the fast path answers itself
        assert list(answer["flights"][0]) == list(DEFAULTED.load(body)["flights"][0])  # same key order


@pytest.mark.parametrize(
    "fields",
    [
        {"at": ma.fields.DateTime()},
        {"n": ma.fields.Integer(as_string=True)},
        {"items": ma.fields.List(ma.fields.Nested(ma.Schema.from_dict({"d": ma.fields.Dict()})))},
        {"items": ma.fields.List(ma.fields.Integer())},
    ],
)
def test_the_dump_compiler_refuses_what_it_does_not_reproduce(fields: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        compile_dumper(ma.Schema.from_dict(fields)())


def test_a_compiled_loader_checks_required_fields_lengths_and_special_numbers() -> None:
    schema = schema_with(
        code=ma.fields.String(required=True, validate=ma.validate.Length(equal=2)),
        score=ma.fields.Float(validate=ma.validate.Range(max=1, max_inclusive=False)),
        anything=ma.fields.Float(allow_nan=True),
    )
    load = compile_request_loader(schema)

    for flight in ({"code": "AB"}, {"code": "AB", "score": 0, "anything": -1e308}):
        assert exact(load({"flights": [flight]})) == exact(schema.load({"flights": [flight]}))
    for flight in ({}, {"code": "ABC"}, {"code": "AB", "score": 1}, {"code": "AB", "score": math.nan}):
        assert load({"flights": [flight]}) is None
        with pytest.raises(ma.ValidationError):
            schema.load({"flights": [flight]})
    # NaN and the infinities are left to marshmallow, even where the field allows them.
    for value in (math.nan, math.inf, -math.inf):
        assert load({"flights": [{"code": "AB", "anything": value}]}) is None


def test_a_validator_not_declared_deterministic_runs_for_every_item() -> None:
    seen: list[str] = []

    def once_each(code: str) -> None:
        """Refuses a code met before: a verdict that depends on more than the value."""
        if code in seen:
            raise ma.ValidationError("Seen before.")
        seen.append(code)

    schema = schema_with(code=ma.fields.String(validate=once_each))
    body = {"flights": [{"code": "AB"}, {"code": "AB"}]}

    assert compile_request_loader(schema)(body) is None
    seen.clear()
    assert compile_request_loader(schema, deterministic=[once_each])(body) is not None  # as promised


def test_a_batch_checks_each_distinct_value_of_a_deterministic_field_once() -> None:
    calls: list[str] = []

    def record(code: str) -> None:
        """Accepts any code, noting each call."""
        calls.append(code)

    schema = schema_with(code=ma.fields.String(validate=record), n=ma.fields.Integer(validate=record))
    load = compile_request_loader(schema, deterministic=[record])
    body = {"flights": [{"code": "AB", "n": 1}, {"code": "AB", "n": 1}, {"code": "CD", "n": True}]}

    assert load(body) is None  # True is no integer, whatever was accepted before
    assert calls == ["AB", 1, "CD"]
    calls.clear()
    assert load({"flights": [{"code": "AB"}]}) is not None
    assert calls == ["AB"]  # nothing is remembered from one call to the next
