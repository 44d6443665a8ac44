"""Property tests of POST /model/predict/: whatever the body, finite predictions or a 4xx that says why.

Flights start as a real one and have fields replaced by any JSON value (NaN, infinities, huge and
tiny numbers, long and unicode strings, nulls, nested values), removed, or joined by unknown fields.
For each answer: a 200 has one finite prediction per flight, recorded in the history; anything else is
a 4xx in the one error shape that names only fields that were changed, and records nothing.
"""

from __future__ import annotations

import json
import math
from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from flight_delay.features import FIELDS_BY_NAME, INPUT_FIELDS
from tests.contracts import assert_error_shape
from tests.factories import minimal_flight

# Repeatable in CI (derandomized, no example database) and bounded; the client is shared by the
# examples of one test on purpose: every check below compares the history before and after.
PROPERTIES = settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

OTHER_COLUMNS = sorted(set(FIELDS_BY_NAME) - set(INPUT_FIELDS))

huge_numbers = st.sampled_from(
    [2**63, -(2**63) - 1, 10**19, 10**400, -(10**400), 1e308, -1e308, 5e-324, 1e-300, 0.1 + 0.2]
)
# Characters of every kind, lone surrogates and NUL included (json.dumps escapes them).
unicode_text = st.text(st.characters(exclude_categories=()), max_size=30)
long_text = st.builds(lambda char, times: char * times, st.characters(), st.integers(1_000, 50_000))
plausible = st.one_of(
    st.integers(-3_000, 3_000),
    st.floats(-20_000, 20_000),
    st.from_regex(r"[A-Z0-9]{2,3}", fullmatch=True),
    st.sampled_from(["UA", "AA", "EWR", "JFK", "LGA", "IAH", "ZZZ", "2013-01-01T10:00:00Z"]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_numbers,
    st.floats(),  # NaN and infinities too: json.dumps writes the NaN and Infinity literals
    unicode_text,
    long_text,
    plausible,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(unicode_text, inner, max_size=3),
    max_leaves=6,
)
unknown_names = unicode_text.filter(lambda name: name not in FIELDS_BY_NAME and name != "flights")
hhmm = st.builds(lambda hour, minute: hour * 100 + minute, st.integers(0, 23), st.integers(0, 59)) | st.just(
    2400
)
# Valid values over each input's whole range, edges included, so many flights reach the model.
VALID_INPUTS = {
    "year": st.integers(1900, 2100),
    "month": st.integers(1, 12),
    "day": st.integers(1, 31),
    "sched_dep_time": hhmm,
    "sched_arr_time": hhmm,
    "dep_delay": st.none() | st.integers(-1440, 10080) | st.floats(-1440, 10080),
    "distance": st.integers(1, 20_000) | st.floats(0, 20_000, exclude_min=True),
    "carrier": st.from_regex(r"[A-Z0-9]{2}", fullmatch=True),
    "origin": st.from_regex(r"[A-Z0-9]{3}", fullmatch=True),
    "dest": st.from_regex(r"[A-Z0-9]{3}", fullmatch=True),
}


def one_in(times: int) -> st.SearchStrategy[bool]:
    """True about once in `times` draws."""
    return st.integers(1, times).map(lambda drawn: drawn == 1)


def valid_mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value three times in four, any JSON value otherwise."""
    return st.one_of(valid, valid, valid, json_values)


@st.composite
def broken_flights(draw: st.DrawFn) -> tuple[dict[str, Any], set[str]]:
    """A real flight with some fields replaced, removed or added; returns it and the changed names."""
    flight: dict[str, Any] = minimal_flight()
    names = draw(st.sets(st.sampled_from(INPUT_FIELDS), max_size=4))
    if draw(one_in(3)):
        names |= draw(st.sets(st.sampled_from(OTHER_COLUMNS), min_size=1, max_size=2))
    changed = {name: draw(valid_mostly(VALID_INPUTS.get(name, json_values))) for name in sorted(names)}
    removed = draw(st.sets(st.sampled_from(INPUT_FIELDS), max_size=2)) if draw(one_in(4)) else set()
    extra = draw(st.dictionaries(unknown_names, json_values, max_size=2)) if draw(one_in(4)) else {}
    flight.update(changed)
    flight.update(extra)
    for name in removed:
        flight.pop(name, None)
    return flight, {*changed, *removed, *extra}


def post_raw(client: FlaskClient, body: bytes | str, content_type: str | None = "application/json") -> Any:
    """Posts a body exactly as given to /model/predict/."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    return client.post("/model/predict/", data=body, headers=headers)


def history_total(client: FlaskClient) -> int:
    """Counts the predictions recorded so far."""
    return client.get("/model/history/?page_size=1").get_json()["total"]


def assert_refused(response: TestResponse, recorded_before: int, client: FlaskClient) -> dict[str, Any]:
    """Checks a refusal: a 4xx in the error shape, and nothing recorded; returns the error body."""
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data(as_text=True)[:500])
    body = response.get_json()
    assert_error_shape(response.status_code, body)
    assert history_total(client) == recorded_before
    return body


def assert_answered(response: TestResponse, flights: int, recorded_before: int, client: FlaskClient) -> None:
    """Checks a 200: one finite prediction per flight, each recorded in the history."""
    predictions = response.get_json()["predictions"]
    assert len(predictions) == flights
    assert all(math.isfinite(p["arr_delay"]) for p in predictions), predictions
    assert history_total(client) == recorded_before + flights


def blamed_fields(errors: dict[str, Any]) -> set[str]:
    """The field names an invalid_input error blames (webargs' "_schema" names none)."""
    return set(errors) - {"_schema"}


@PROPERTIES
@given(case=broken_flights())
def test_a_broken_flight_is_predicted_or_refused_naming_what_was_changed(
    loaded_client: FlaskClient, case: tuple[dict[str, Any], set[str]]
) -> None:
    flight, changed = case
    before = history_total(loaded_client)
    response = post_raw(loaded_client, json.dumps(flight))
    event(f"HTTP {response.status_code}")

    if response.status_code == 200:
        assert_answered(response, 1, before, loaded_client)
        return
    error = assert_refused(response, before, loaded_client)
    if error["code"] == "invalid_input":
        assert blamed_fields(error["errors"]), error
        assert blamed_fields(error["errors"]) <= changed, (error, changed)


@PROPERTIES
@given(cases=st.lists(broken_flights(), min_size=1, max_size=4))
def test_a_batch_is_predicted_or_refused_naming_each_broken_flight(
    loaded_client: FlaskClient, cases: list[tuple[dict[str, Any], set[str]]]
) -> None:
    before = history_total(loaded_client)
    response = post_raw(loaded_client, json.dumps({"flights": [flight for flight, _ in cases]}))
    event(f"HTTP {response.status_code}")

    if response.status_code == 200:
        assert_answered(response, len(cases), before, loaded_client)
        return
    error = assert_refused(response, before, loaded_client)
    if error["code"] == "invalid_input":
        per_flight = error["errors"]["flights"]
        assert per_flight, error
        for index, problems in per_flight.items():
            assert blamed_fields(problems) <= cases[int(index)][1], (index, problems, cases[int(index)][1])


@PROPERTIES
@given(
    field=st.sampled_from(["name", "tailnum", "carrier", "time_hour"]),
    text=st.text(
        st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\x7f", "\ud800"]), max_size=40
    ),
)
def test_any_text_is_predicted_or_refused_at_its_field(
    loaded_client: FlaskClient, field: str, text: str
) -> None:
    before = history_total(loaded_client)
    response = post_raw(loaded_client, json.dumps(minimal_flight(**{field: text})))

    if response.status_code == 200:
        assert_answered(response, 1, before, loaded_client)
        return
    error = assert_refused(response, before, loaded_client)
    assert set(error["errors"]) == {field}, error


@PROPERTIES
@given(body=json_values.filter(lambda value: not isinstance(value, dict)))
def test_a_body_that_is_not_an_object_is_refused(loaded_client: FlaskClient, body: Any) -> None:
    before = history_total(loaded_client)
    response = post_raw(loaded_client, json.dumps(body))

    assert assert_refused(response, before, loaded_client)["status"] == 422


@PROPERTIES
@given(flights=json_values)
def test_any_other_flights_value_is_refused_under_flights(loaded_client: FlaskClient, flights: Any) -> None:
    before = history_total(loaded_client)
    response = post_raw(loaded_client, json.dumps({"flights": flights}))

    error = assert_refused(response, before, loaded_client)
    assert error["status"] == 422
    assert set(error["errors"]) == {"flights"}, error


@PROPERTIES
@given(
    content_type=st.one_of(
        st.none(),
        st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "application/xml"]),
        st.sampled_from(["multipart/form-data; boundary=x", "application/octet-stream", "text/json"]),
    )
)
def test_a_body_that_is_not_json_is_a_415(loaded_client: FlaskClient, content_type: str | None) -> None:
    before = history_total(loaded_client)
    response = post_raw(loaded_client, json.dumps(minimal_flight()), content_type)

    error = assert_refused(response, before, loaded_client)
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"]


@PROPERTIES
@given(
    bad_bytes=st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80"]),
    where=st.sampled_from(INPUT_FIELDS),
)
def test_invalid_utf8_is_a_400(loaded_client: FlaskClient, bad_bytes: bytes, where: str) -> None:
    body = json.dumps(minimal_flight(**{where: "@"})).encode().replace(b"@", bad_bytes)
    before = history_total(loaded_client)
    response = post_raw(loaded_client, body)

    error = assert_refused(response, before, loaded_client)
    assert (error["status"], error["code"]) == (400, "invalid_json")


@PROPERTIES
@given(cut=st.integers(1, len(json.dumps(minimal_flight())) - 1))
def test_truncated_json_is_a_400(loaded_client: FlaskClient, cut: int) -> None:
    before = history_total(loaded_client)
    response = post_raw(loaded_client, json.dumps(minimal_flight())[:cut])

    assert assert_refused(response, before, loaded_client)["code"] == "invalid_json"


@settings(PROPERTIES, max_examples=20)
@given(depth=st.integers(1, 200_000), opener=st.sampled_from(["[", '{"a":']))
def test_deeply_nested_json_is_refused_not_a_crash(
    loaded_client: FlaskClient, depth: int, opener: str
) -> None:
    closer = "]" if opener == "[" else "}"
    before = history_total(loaded_client)
    response = post_raw(loaded_client, '{"flights":' + opener * depth + "1" + closer * depth + "}")

    assert assert_refused(response, before, loaded_client)["status"] in (400, 422)


@PROPERTIES
@given(field=st.sampled_from(INPUT_FIELDS))
def test_a_nan_literal_is_read_as_null(loaded_client: FlaskClient, field: str) -> None:
    as_null = post_raw(loaded_client, json.dumps(minimal_flight(**{field: None})))
    as_nan = post_raw(loaded_client, json.dumps(minimal_flight(**{field: "@"})).replace('"@"', "NaN"))

    assert as_nan.status_code == as_null.status_code
    if as_null.status_code == 200:
        assert (
            as_nan.get_json()["predictions"][0]["arr_delay"]
            == as_null.get_json()["predictions"][0]["arr_delay"]
        )
    else:
        assert (
            as_nan.get_json()["errors"] == as_null.get_json()["errors"] == {field: ["Field may not be null."]}
        )


@PROPERTIES
@given(
    value=st.sampled_from(["Infinity", "-Infinity", "1e400", "-1e400"]),
    field=st.sampled_from(INPUT_FIELDS),
)
def test_infinite_number_literals_are_refused_at_their_field(
    loaded_client: FlaskClient, value: str, field: str
) -> None:
    body = json.dumps(minimal_flight(**{field: "@"})).replace('"@"', value)
    before = history_total(loaded_client)
    response = post_raw(loaded_client, body)

    error = assert_refused(response, before, loaded_client)
    assert set(error["errors"]) == {field}, error
