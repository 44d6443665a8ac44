"""The feature contract: the encodings training and serving share."""

from __future__ import annotations

import calendar
import datetime as dt
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight_delay.context.definitions import CONTEXT_FEATURES
from flight_delay.features import (
    DATASET_COLUMNS,
    REFERENCE_FLIGHT,
    ROW_BY_ROW_LIMIT,
    FeatureContract,
    day_of_week,
    flights_to_columns,
    hhmm_to_minutes,
)
from tests.factories import minimal_flight, synthetic_flights


def test_dataset_columns_are_the_case_columns_in_order() -> None:
    assert [c.name for c in DATASET_COLUMNS] == [
        "id", "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time",
        "sched_arr_time", "arr_delay", "carrier", "flight", "tailnum", "origin", "dest",
        "air_time", "distance", "hour", "minute", "time_hour", "name",
    ]  # fmt: skip


def test_hhmm_becomes_minutes_after_midnight() -> None:
    assert hhmm_to_minutes(np.array([0, 59, 100, 1345, 2359, 2400])).tolist() == [
        0, 59, 60, 825, 1439, 1440,
    ]  # fmt: skip


def test_day_of_week_matches_the_calendar_for_every_day_of_2013_and_a_leap_day() -> None:
    dates = [dt.date(2013, 1, 1) + dt.timedelta(days=i) for i in range(365)] + [dt.date(2024, 2, 29)]
    years, months, days = (np.array([getattr(d, a) for d in dates]) for a in ("year", "month", "day"))

    assert day_of_week(years, months, days).tolist() == [d.weekday() for d in dates]
    assert calendar.day_name[int(day_of_week(np.array([2013]), np.array([1]), np.array([1]))[0])] == "Tuesday"


def test_fit_learns_sorted_vocabularies_without_nulls() -> None:
    contract = FeatureContract.fit(
        {"carrier": ["UA", "AA", None, "UA"], "origin": ["JFK"], "dest": ["SEA", np.nan]}
    )

    assert contract.categories == {"carrier": ("AA", "UA"), "origin": ("JFK",), "dest": ("SEA",)}
    assert contract.ranges == {}


def test_fit_learns_the_training_range_of_the_numbers_read_as_they_are() -> None:
    contract = FeatureContract.fit(
        {
            "carrier": ["UA"],
            "origin": ["JFK"],
            "dest": ["SEA"],
            "dep_delay": [5, None, -3],
            "distance": [200.0],
        }
    )

    assert contract.ranges == {"dep_delay": (-3.0, 5.0), "distance": (200.0, 200.0)}
    assert FeatureContract.from_dict(contract.to_dict()) == contract
    assert contract.unseen({"dep_delay": 6, "distance": 200, "carrier": "UA"}) == [
        {"field": "dep_delay", "value": 6, "reason": "outside the training range -3 to 5"}
    ]


def test_encode_reference_flight() -> None:
    contract = FeatureContract.fit(synthetic_flights(50))
    [row] = contract.encode_flights([REFERENCE_FLIGHT])
    features = dict(zip(contract.feature_names, row.tolist(), strict=True))
    context = {name: features.pop(name) for name in CONTEXT_FEATURES}

    assert all(math.isnan(value) for value in context.values())  # none added: no context
    assert features == {
        "day_of_week": 1.0,  # 2013-01-01 was a Tuesday
        "sched_dep_minute": 315.0,
        "sched_arr_minute": 499.0,
        "dep_delay": 2.0,
        "distance": 1400.0,
        "carrier": float(contract.categories["carrier"].index("UA")),
        "origin": float(contract.categories["origin"].index("EWR")),
        "dest": float(contract.categories["dest"].index("IAH")),
    }


def test_unknown_category_and_null_delay_become_missing() -> None:
    contract = FeatureContract.fit(synthetic_flights(50))
    [row] = contract.encode_flights([minimal_flight(carrier="ZZ", dep_delay=None)])
    features = dict(zip(contract.feature_names, row.tolist(), strict=True))

    assert np.isnan(features["carrier"])
    assert np.isnan(features["dep_delay"])


def test_batch_encoding_equals_row_by_row_encoding() -> None:
    frame = synthetic_flights(64, seed=3)
    contract = FeatureContract.fit(frame)
    flights = frame.to_dict("records")

    batch = contract.encode(frame)
    one_by_one = np.vstack([contract.encode_flights([flight]) for flight in flights])

    np.testing.assert_array_equal(batch, one_by_one)


@pytest.mark.parametrize("missing", ["carrier", "sched_dep_time"])
def test_contract_lists_what_it_reads(missing: str) -> None:
    contract = FeatureContract.fit(synthetic_flights(20))

    assert missing in contract.input_fields
    assert contract.nullable_fields == ("dep_delay",)


ANY_NUMBER = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-3000, 3000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)
PLAUSIBLE_FLIGHTS = st.fixed_dictionaries(
    {
        "year": st.integers(1900, 2100),
        "month": st.integers(1, 12),
        "day": st.integers(-3, 34),
        "sched_dep_time": st.integers(-100, 2500),
        "sched_arr_time": st.integers(-100, 2500),
        "dep_delay": st.one_of(st.none(), st.integers(-2000, 11000), st.floats(allow_nan=False)),
        "distance": st.one_of(st.integers(0, 20000), st.floats(0, 20000)),
        "carrier": st.sampled_from(["UA", "AA", "ZZ", ""]),
        "origin": st.sampled_from(["EWR", "JFK", "LGA", "XXX"]),
        "dest": st.sampled_from(["IAH", "SEA", "ZZZ"]),
    }
)


def odd_flights(base: dict) -> st.SearchStrategy[dict]:
    """A flight with one of its fields replaced by any number-like value, or removed."""
    names = st.sampled_from(sorted(base))
    replaced = st.tuples(names, ANY_NUMBER).map(lambda kv: {**base, kv[0]: kv[1]})
    removed = names.map(lambda name: {k: v for k, v in base.items() if k != name})
    return st.one_of(replaced, removed)


def column_encoding(contract: FeatureContract, flights: list[dict]) -> np.ndarray | type[BaseException]:
    """The numpy, column by column encoding of the flights, or the type of what it raised."""
    try:
        return contract.encode(flights_to_columns(flights, contract.input_fields))
    except Exception as exc:
        return type(exc)


@settings(max_examples=400, derandomize=True, database=None, deadline=None)
@given(st.lists(st.one_of(PLAUSIBLE_FLIGHTS, PLAUSIBLE_FLIGHTS.flatmap(odd_flights)), min_size=1, max_size=3))
def test_row_by_row_encoding_equals_the_column_encoding(flights: list[dict]) -> None:
    """Online requests are encoded row by row in plain Python: same numbers as numpy, or the same refusal."""
    contract = FeatureContract(
        categories={"carrier": ("AA", "UA"), "origin": ("EWR", "JFK", "LGA"), "dest": ("IAH", "SEA")}
    )
    expected = column_encoding(contract, flights)
    if not isinstance(expected, np.ndarray):
        with pytest.raises(expected):
            contract.encode_flights(flights)
        return
    encoded = contract.encode_flights(flights)
    np.testing.assert_array_equal(encoded, expected)  # NaN equals NaN here
    assert encoded.dtype == expected.dtype == np.float64


def test_a_large_batch_is_encoded_by_columns_with_the_same_numbers() -> None:
    """Past ROW_BY_ROW_LIMIT flights the numpy path runs; both paths agree on real flights."""
    frame = synthetic_flights(ROW_BY_ROW_LIMIT * 3, seed=5)
    contract = FeatureContract.fit(frame)
    flights = frame.to_dict("records")

    rows = np.vstack([contract.encode_flights(flights[i : i + 4]) for i in range(0, len(flights), 4)])

    np.testing.assert_array_equal(contract.encode_flights(flights), rows)


def test_the_context_features_are_read_from_the_flight_when_the_service_adds_them() -> None:
    contract = FeatureContract.fit(synthetic_flights(50))
    context = {name: float(i) for i, name in enumerate(CONTEXT_FEATURES)}

    one = contract.encode_flights([{**REFERENCE_FLIGHT, **context}])[0]
    many = contract.encode_flights([{**REFERENCE_FLIGHT, **context}] * (ROW_BY_ROW_LIMIT + 1))[-1]

    columns = [contract.feature_names.index(name) for name in CONTEXT_FEATURES]
    assert one[columns].tolist() == list(context.values())
    np.testing.assert_array_equal(one, many)  # row by row as in columns
