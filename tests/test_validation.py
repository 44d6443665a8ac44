"""The one check of a prediction's flights (flight_delay.validation) against the documented schema.

Differential: for any body parsed from JSON, the compiled check (msgspec and the rules' value tests)
accepts exactly what the OpenAPI document's marshmallow schema accepts, with the same values (types
and float bits; the very payload objects), and a refusal is worded per field as marshmallow words it.
What costs nothing is checked first: a batch's shape and count before any flight.
"""

from __future__ import annotations

import enum
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import marshmallow as ma
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flight_delay.errors import InvalidInput
from flight_delay.features import FIELDS_BY_NAME, REFERENCE_FLIGHT
from flight_delay.validation import MAX_BATCH_SIZE, WORDED_MAX, batch_items, checked_flights, compiled
from flight_delay.validation.wording import FlightSchema

# Repeatable in CI (derandomized, no example database) and bounded; each example runs in process.
DIFFERENTIAL = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FLIGHT = FlightSchema()
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


def checked(body: Any) -> tuple[Any, ...]:
    """The one check's verdict on a body: ("ok", values per flight, single) or ("invalid", errors)."""
    try:
        items, single = batch_items(body)
        flights = checked_flights(items, single)
    except InvalidInput as refused:
        return ("invalid", refused.errors)
    assert all(flight.payload is item for flight, item in zip(flights, items, strict=True))
    return ("ok", exact([flight.values for flight in flights]), single)


def documented(body: Any) -> tuple[Any, ...]:
    """What the documented schema says of a body: values per flight, or its errors as the API words them."""
    single = type(body) is dict and "flights" not in body
    items = [body] if single else body["flights"]
    values, errors = [], {}
    for index, item in enumerate(items):
        try:
            values.append(FLIGHT.load(item))
        except ma.ValidationError as error:
            errors[index] = error.messages
    if errors:
        return ("invalid", errors[0] if single else {"flights": errors})
    return ("ok", exact(values), single)


def well_shaped(body: Any) -> bool:
    """Whether a body is a flight or a batch of 1 to MAX_BATCH_SIZE objects (what reaches the flights)."""
    if type(body) is not dict:
        return False
    if "flights" not in body:
        return True
    items = body["flights"]
    return set(body) == {"flights"} and type(items) is list and 1 <= len(items) <= MAX_BATCH_SIZE


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
    "as_of": st.none()
    | st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])).map(datetime.isoformat)
    | st.sampled_from(["2013-01-01T10:00:00Z", "2013-01-01T10:00:00", "0001-01-01T00:00:00+01:00"]),
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
def test_the_check_accepts_and_words_what_the_documented_schema_does(body: Any) -> None:
    before = repr(body)
    verdict = checked(body)
    assert repr(body) == before, "the check must not change its input"
    if not is_json(body):  # only a Python caller sends these (numpy numbers, bytes): never a crash
        event(f"not JSON: {verdict[0]}")
        return
    if not well_shaped(body):
        event("refused for its shape, before any flight is looked at")
        assert verdict[0] == "invalid"
        return
    event(f"documented: {documented(body)[0]}")
    assert verdict == documented(body)


@DIFFERENTIAL
@given(flight=st.fixed_dictionaries({}, optional=PLAUSIBLE))
def test_plausible_flights_are_loaded_exactly(flight: dict[str, Any]) -> None:
    expected = documented(flight)

    event(f"documented: {expected[0]}")
    assert checked(flight) == expected
    batch = checked({"flights": [flight, flight]})
    if expected[0] == "ok":
        assert batch == ("ok", exact([FLIGHT.load(flight)] * 2), False)
    else:
        assert batch == ("invalid", {"flights": {0: expected[1], 1: expected[1]}})


def test_values_are_loaded_while_the_payload_stays_as_sent() -> None:
    flight = dict(reversed(REFERENCE_FLIGHT.items()), dep_delay=2, distance=1400)

    [loaded] = checked_flights([flight], single=True)

    assert sorted(loaded.values) == sorted(COLUMNS)
    assert type(loaded.values["dep_delay"]) is float
    assert type(loaded.values["distance"]) is float
    assert loaded.payload is flight
    assert exact(loaded.values) == exact(FLIGHT.load(flight))


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
def test_edges_the_schema_accepts_are_accepted_exactly(changes: dict[str, Any]) -> None:
    flight = {**REFERENCE_FLIGHT, **changes}

    assert checked(flight) == documented(flight)
    assert checked(flight)[0] == "ok"


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
        {"id": "\ud800"},  # msgspec fails to word this refusal (UnicodeEncodeError): refused all the same
    ],
)
def test_what_the_check_refuses_is_worded_as_the_schema_words_it(changes: dict[str, Any]) -> None:
    flight = {**REFERENCE_FLIGHT, **changes}

    assert checked(flight) == documented(flight)
    assert checked(flight)[0] == "invalid"
    assert checked({"flights": [REFERENCE_FLIGHT, flight]}) == (
        "invalid",
        {"flights": {1: documented(flight)[1]}},
    )


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"flights": []}, {"flights": [f"Length must be between 1 and {MAX_BATCH_SIZE}."]}),
        ({"flights": None}, {"flights": ["Not a valid list."]}),
        ({"flights": {"0": REFERENCE_FLIGHT}}, {"flights": ["Not a valid list."]}),
        ({"flights": [REFERENCE_FLIGHT], "single": True}, {"single": ["Unknown field."]}),
        ({"flights": [None]}, {"flights": {0: {"_schema": ["Invalid input type."]}}}),
        ([REFERENCE_FLIGHT], {"_schema": ["Invalid input type."]}),
        ("a flight", {"_schema": ["Invalid input type."]}),
        (None, {"_schema": ["Invalid input type."]}),
    ],
)
def test_body_shapes_are_refused_in_the_schemas_words(body: Any, errors: dict[str, Any]) -> None:
    assert checked(body) == ("invalid", errors)


def test_a_batch_is_counted_before_any_flight_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: Any) -> None:
        raise AssertionError("a flight was checked")

    monkeypatch.setattr("flight_delay.validation.accepted_values", never)
    too_many = {"flights": [{}] * (MAX_BATCH_SIZE + 1)}

    assert checked(too_many) == ("invalid", {"flights": [f"Length must be between 1 and {MAX_BATCH_SIZE}."]})


def test_the_largest_batch_is_accepted() -> None:
    largest = {"flights": [dict(REFERENCE_FLIGHT, id=i) for i in range(MAX_BATCH_SIZE)]}

    verdict = checked(largest)

    assert verdict[0] == "ok"
    assert len(verdict[1][1]) == MAX_BATCH_SIZE


def test_a_refusal_words_the_first_flights_at_fault_and_counts_them_all() -> None:
    bad = dict(REFERENCE_FLIGHT, month=13)
    batch = [REFERENCE_FLIGHT, *[bad] * (WORDED_MAX + 50)]

    with pytest.raises(InvalidInput) as refused:
        checked_flights(batch, single=False)

    worded = refused.value.errors["flights"]
    assert sorted(worded) == list(range(1, WORDED_MAX + 1))
    assert (
        refused.value.message
        == f"{WORDED_MAX + 50} of {len(batch)} flights are invalid; errors lists the first {WORDED_MAX}."
    )


def test_each_distinct_value_is_tested_once_and_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def record(value: Any) -> bool:
        """Accepts any value but 999, noting each call."""
        calls.append(value)
        return value != 999

    monkeypatch.setattr(compiled, "TESTS", [("dep_time", record, {None})])
    flights = [dict(REFERENCE_FLIGHT, dep_time=t) for t in (517, 517, None, 600, 517)]

    assert compiled.accepted_values(flights) is not None
    assert sorted(calls) == [517, 600]
    assert compiled.accepted_values([dict(REFERENCE_FLIGHT, dep_time=600)]) is not None
    assert sorted(calls) == [517, 600]  # passed before: not tested again
    assert compiled.accepted_values([*flights, dict(REFERENCE_FLIGHT, dep_time=999)]) is None
    assert compiled.accepted_values([dict(REFERENCE_FLIGHT, dep_time=999)]) is None  # not remembered
    assert calls.count(999) == 2


def test_the_values_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "REMEMBERED", 3)
    [(_, _, passed)] = [entry for entry in compiled.TESTS if entry[0] == "name"]

    for index in range(10):
        assert compiled.accepted_values([dict(REFERENCE_FLIGHT, name=f"Airline {index}")]) is not None
        assert len(passed) <= 3
        assert None in passed
    assert compiled.accepted_values([dict(REFERENCE_FLIGHT, name="Air\x00line")]) is None


def test_a_field_default_is_given_to_flights_that_omit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "DEFAULTS", {"tailnum": None, "name": lambda: "unnamed"})
    without = {k: v for k, v in REFERENCE_FLIGHT.items() if k not in ("tailnum", "name")}

    [loaded] = checked_flights([without], single=True)

    assert loaded.values["tailnum"] is None
    assert loaded.values["name"] == "unnamed"
    assert loaded.payload is without
    assert "tailnum" not in without
