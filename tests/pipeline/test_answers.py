"""The 17 answers on 20 hand-made flights whose answers were worked out by hand.

The flights (weekdays of 2013: Jan 1 Tue, 2 Wed, 3 Thu, 4 Fri, 5 Sat, 6 Sun, 7 Mon; Feb 1 Fri,
2 Sat, 3 Sun, 4 Mon, 5 Tue). Status: L landed, C cancelled (no times), D diverted (arr_time but
no arr_delay or air_time), N departed with no arrival recorded (not cancelled, not landed).

    id date route    carrier dep  arr  air  status
     1 1/1 EWR-SEA   UA       15    5  330  L
     2 1/2 EWR-SEA   UA        -    -    -  C
     3 1/3 EWR-SEA   AS        0    -    -  D
     4 1/1 EWR-ORD   UA       40   35  120  L
     5 2/4 EWR-ORD   UA       -5  -10  130  L
     6 1/1 JFK-SEA   DL        0   35  340  L
     7 1/7 JFK-SEA   DL       70   60  350  L
     8 1/1 JFK-LAX   AA       90   80  300  L
     9 1/2 JFK-LAX   AA       30   10  310  L
    10 2/1 JFK-LAX   B6        5    0  320  L
    11 2/5 JFK-LAX   B6        -    -    -  C
    12 1/5 JFK-BOS   B6      120  100   40  L
    13 2/1 JFK-BOS   B6       15    -    -  N
    14 1/1 LGA-ORD   AA       35   40  110  L
    15 1/4 LGA-ORD   AA       -2  -10  116  L
    16 1/6 LGA-ORD   WN       60   30  113  L
    17 2/2 LGA-ORD   WN        -    -    -  C
    18 1/1 LGA-ATL   9E        0    0  100  L
    19 2/4 LGA-ATL   DL       61    -    -  D
    20 2/3 LGA-MIA   B6       44   50  150  L
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from flight_delay.pipeline import answers
from flight_delay.pipeline.dataset import FLIGHTS_SCHEMA

NAMES = {
    "9E": "Endeavor Air Inc.",
    "AA": "American Airlines Inc.",
    "AS": "Alaska Airlines Inc.",
    "B6": "JetBlue Airways",
    "DL": "Delta Air Lines Inc.",
    "UA": "United Air Lines Inc.",
    "WN": "Southwest Airlines Co.",
}

# id, month, day, origin, dest, carrier, dep_delay, arr_delay, air_time, status
TABLE = [
    (1, 1, 1, "EWR", "SEA", "UA", 15, 5, 330, "L"),
    (2, 1, 2, "EWR", "SEA", "UA", None, None, None, "C"),
    (3, 1, 3, "EWR", "SEA", "AS", 0, None, None, "D"),
    (4, 1, 1, "EWR", "ORD", "UA", 40, 35, 120, "L"),
    (5, 2, 4, "EWR", "ORD", "UA", -5, -10, 130, "L"),
    (6, 1, 1, "JFK", "SEA", "DL", 0, 35, 340, "L"),
    (7, 1, 7, "JFK", "SEA", "DL", 70, 60, 350, "L"),
    (8, 1, 1, "JFK", "LAX", "AA", 90, 80, 300, "L"),
    (9, 1, 2, "JFK", "LAX", "AA", 30, 10, 310, "L"),
    (10, 2, 1, "JFK", "LAX", "B6", 5, 0, 320, "L"),
    (11, 2, 5, "JFK", "LAX", "B6", None, None, None, "C"),
    (12, 1, 5, "JFK", "BOS", "B6", 120, 100, 40, "L"),
    (13, 2, 1, "JFK", "BOS", "B6", 15, None, None, "N"),
    (14, 1, 1, "LGA", "ORD", "AA", 35, 40, 110, "L"),
    (15, 1, 4, "LGA", "ORD", "AA", -2, -10, 116, "L"),
    (16, 1, 6, "LGA", "ORD", "WN", 60, 30, 113, "L"),
    (17, 2, 2, "LGA", "ORD", "WN", None, None, None, "C"),
    (18, 1, 1, "LGA", "ATL", "9E", 0, 0, 100, "L"),
    (19, 2, 4, "LGA", "ATL", "DL", 61, None, None, "D"),
    (20, 2, 3, "LGA", "MIA", "B6", 44, 50, 150, "L"),
]


def flight_row(
    id_: int,
    month: int,
    day: int,
    origin: str,
    dest: str,
    carrier: str,
    dep_delay: int | None,
    arr_delay: int | None,
    air_time: int | None,
    status: str,
) -> tuple[Any, ...]:
    """One row in FLIGHTS_SCHEMA order; the status decides which times are missing."""
    dep_time = None if status == "C" else 900
    arr_time = 1200 if status in {"L", "D"} else None
    return (
        id_,
        2013,
        month,
        day,
        dep_time,
        900,
        None if dep_delay is None else float(dep_delay),
        arr_time,
        1200,
        None if arr_delay is None else float(arr_delay),
        carrier,
        id_,
        f"N{id_}",
        origin,
        dest,
        None if air_time is None else float(air_time),
        500.0,
        9,
        0,
        datetime(2013, month, day, 14),
        NAMES[carrier],
    )


@pytest.fixture(scope="module")
def flights(spark: SparkSession) -> DataFrame:
    """The 20 hand-made flights."""
    return spark.createDataFrame([flight_row(*row) for row in TABLE], FLIGHTS_SCHEMA)


def frame(spark: SparkSession, rows: list[tuple[Any, ...]], schema: str) -> DataFrame:
    """An expected answer as a DataFrame."""
    return spark.createDataFrame(rows, schema)


def test_q1_counts_every_row(spark: SparkSession, flights: DataFrame) -> None:
    assertDataFrameEqual(answers.total_flights(flights), frame(spark, [(20,)], "flights long"))


def test_q2_counts_flights_with_neither_time(spark: SparkSession, flights: DataFrame) -> None:
    # Rows 2, 11, 17; row 13 departed without an arrival time and is not cancelled.
    assertDataFrameEqual(answers.cancelled_flights(flights), frame(spark, [(3,)], "cancelled long"))


def test_q3_averages_the_flights_with_a_dep_delay(spark: SparkSession, flights: DataFrame) -> None:
    # 17 departed flights, delays summing to 578.
    assertDataFrameEqual(answers.mean_dep_delay(flights), frame(spark, [(34.0,)], "mean_dep_delay double"))


def test_q4_counts_landings_not_diversions_beside_all_flights(
    spark: SparkSession, flights: DataFrame
) -> None:
    # SEA has 5 flights but 3 landings, so it is second by flights and third by landings, after
    # LAX (4 flights, 3 landings); ATL, BOS, MIA tie at 1 landing and MIA is cut by the code order.
    expected = frame(
        spark,
        [
            ("ORD", 5, 1, 6, 1),
            ("LAX", 3, 2, 4, 3),
            ("SEA", 3, 3, 5, 2),
            ("ATL", 1, 4, 2, 4),
            ("BOS", 1, 5, 2, 5),
        ],
        "airport string, landings long, landings_rank int, flights long, flights_rank int",
    )
    assertDataFrameEqual(answers.top_landing_airports(flights), expected, checkRowOrder=True)


def test_q5_breaks_a_route_tie_by_origin(spark: SparkSession, flights: DataFrame) -> None:
    # JFK-LAX and LGA-ORD both have 4 scheduled flights.
    expected = frame(spark, [("JFK", "LAX", 4)], "origin string, dest string, flights long")
    assertDataFrameEqual(answers.most_frequent_route(flights), expected)


def test_q6_ranks_airlines_by_mean_arrival_delay(spark: SparkSession, flights: DataFrame) -> None:
    # AA and WN tie at 30; 9E (0) is sixth; AS has only a diverted flight, so no mean at all.
    expected = frame(
        spark,
        [
            ("B6", "JetBlue Airways", 50.0),
            ("DL", "Delta Air Lines Inc.", 47.5),
            ("AA", "American Airlines Inc.", 30.0),
            ("WN", "Southwest Airlines Co.", 30.0),
            ("UA", "United Air Lines Inc.", 10.0),
        ],
        "carrier string, name string, mean_arr_delay double",
    )
    assertDataFrameEqual(answers.top_carriers_by_arr_delay(flights), expected, checkRowOrder=True)


def test_q7_names_the_busiest_weekday(spark: SparkSession, flights: DataFrame) -> None:
    expected = frame(spark, [("Tuesday", 7)], "day_of_week string, flights long")
    assertDataFrameEqual(answers.busiest_day_of_week(flights), expected)


def test_q8_divides_by_the_departed_flights(spark: SparkSession, flights: DataFrame) -> None:
    # January: 6 of 12 departed (a delay of exactly 30 does not count); February: 2 of 5.
    expected = frame(spark, [(1, 50.0), (2, 40.0)], "month int, pct_dep_delay_over_30 double")
    assertDataFrameEqual(answers.pct_dep_delay_over_30_by_month(flights), expected, checkRowOrder=True)


def test_q9_counts_only_flights_that_landed_at_sea(spark: SparkSession, flights: DataFrame) -> None:
    # EWR scheduled 3 SEA flights but only 1 landed; JFK landed 2.
    expected = frame(spark, [("JFK", 2)], "origin string, flights long")
    assertDataFrameEqual(answers.top_origin_to(flights), expected)


def test_q10_lists_weekdays_monday_first(spark: SparkSession, flights: DataFrame) -> None:
    expected = frame(
        spark,
        [
            ("Monday", 42.0),
            ("Tuesday", 30.0),
            ("Wednesday", 30.0),
            ("Thursday", 0.0),
            ("Friday", 6.0),
            ("Saturday", 120.0),
            ("Sunday", 52.0),
        ],
        "day_of_week string, mean_dep_delay double",
    )
    assertDataFrameEqual(answers.mean_dep_delay_by_day_of_week(flights), expected, checkRowOrder=True)


def test_q11_finds_the_longest_route(spark: SparkSession, flights: DataFrame) -> None:
    expected = frame(spark, [("JFK", "SEA", 345.0)], "origin string, dest string, mean_air_time double")
    assertDataFrameEqual(answers.longest_route_by_air_time(flights), expected)


def test_q12_counts_the_schedule_per_origin(spark: SparkSession, flights: DataFrame) -> None:
    expected = frame(
        spark,
        [("EWR", "SEA", 3), ("JFK", "LAX", 4), ("LGA", "ORD", 4)],
        "origin string, dest string, flights long",
    )
    assertDataFrameEqual(answers.top_dest_per_origin(flights), expected, checkRowOrder=True)


Q13_SCHEMA = "min_flights int, origin string, dest string, air_time_stddev double, timed_flights long"


def test_q13_ranks_routes_by_air_time_stddev(spark: SparkSession, flights: DataFrame) -> None:
    # No route has 30 timed flights. With 2: JFK-LAX 300/310/320 -> 10; EWR-ORD and JFK-SEA differ
    # by 10 -> 10/sqrt(2), tie by origin; LGA-ORD 110/116/113 -> 3 is fourth.
    expected = frame(
        spark,
        [
            (2, "JFK", "LAX", 10.0, 3),
            (2, "EWR", "ORD", 7.0710678118654755, 2),
            (2, "JFK", "SEA", 7.0710678118654755, 2),
        ],
        Q13_SCHEMA,
    )
    assertDataFrameEqual(answers.most_variable_routes(flights), expected, checkRowOrder=True, rtol=1e-9)


def test_q13_shows_each_minimum_in_the_order_given(spark: SparkSession, flights: DataFrame) -> None:
    # Only JFK-LAX and LGA-ORD have 3 timed flights; single-flight routes never have a spread.
    expected = frame(
        spark,
        [
            (3, "JFK", "LAX", 10.0, 3),
            (3, "LGA", "ORD", 3.0, 3),
            (2, "JFK", "LAX", 10.0, 3),
            (2, "EWR", "ORD", 7.0710678118654755, 2),
            (2, "JFK", "SEA", 7.0710678118654755, 2),
        ],
        Q13_SCHEMA,
    )
    actual = answers.most_variable_routes(flights, min_flights=(3, 2))
    assertDataFrameEqual(actual, expected, checkRowOrder=True, rtol=1e-9)


def test_q14_averages_arrivals_after_an_hour_late(spark: SparkSession, flights: DataFrame) -> None:
    # Departures over 60: rows 7, 8, 12 (arr 60, 80, 100) and 19 (diverted); row 16 left at 60 exactly.
    expected = frame(spark, [(80.0,)], "mean_arr_delay double")
    assertDataFrameEqual(answers.mean_arr_delay_after_late_departure(flights), expected)


def test_q15_averages_flights_per_day(spark: SparkSession, flights: DataFrame) -> None:
    # January: 13 flights on 7 days; February: 7 flights on 5 days.
    expected = frame(spark, [(1, 13 / 7), (2, 1.4)], "month int, mean_daily_flights double")
    assertDataFrameEqual(
        answers.mean_daily_flights_by_month(flights), expected, checkRowOrder=True, rtol=1e-9
    )


def test_q16_ranks_routes_of_late_arrivals(spark: SparkSession, flights: DataFrame) -> None:
    # Over 30 late: JFK-SEA twice; EWR-ORD, JFK-BOS, JFK-LAX, LGA-MIA, LGA-ORD once (row 16 is 30).
    expected = frame(
        spark,
        [("JFK", "SEA", 2), ("EWR", "ORD", 1), ("JFK", "BOS", 1)],
        "origin string, dest string, flights long",
    )
    assertDataFrameEqual(answers.top_late_routes(flights), expected, checkRowOrder=True)


def test_q17_leaves_cancelled_flights_out(spark: SparkSession, flights: DataFrame) -> None:
    # EWR: SEA drops to 2 operated and ties ORD, which wins by code; unlike q12.
    expected = frame(
        spark,
        [("EWR", "ORD", 2), ("JFK", "LAX", 3), ("LGA", "ORD", 3)],
        "origin string, dest string, flights long",
    )
    assertDataFrameEqual(answers.main_dest_per_origin(flights), expected, checkRowOrder=True)


EXPECTED_JSON: dict[str, Any] = {
    "q1": 20,
    "q2": 3,
    "q3": 34.0,
    "q4": [
        {"airport": "ORD", "landings": 5, "landings_rank": 1, "flights": 6, "flights_rank": 1},
        {"airport": "LAX", "landings": 3, "landings_rank": 2, "flights": 4, "flights_rank": 3},
        {"airport": "SEA", "landings": 3, "landings_rank": 3, "flights": 5, "flights_rank": 2},
        {"airport": "ATL", "landings": 1, "landings_rank": 4, "flights": 2, "flights_rank": 4},
        {"airport": "BOS", "landings": 1, "landings_rank": 5, "flights": 2, "flights_rank": 5},
    ],
    "q5": {"origin": "JFK", "dest": "LAX", "flights": 4},
    "q6": [
        {"carrier": "B6", "name": "JetBlue Airways", "mean_arr_delay": 50.0},
        {"carrier": "DL", "name": "Delta Air Lines Inc.", "mean_arr_delay": 47.5},
        {"carrier": "AA", "name": "American Airlines Inc.", "mean_arr_delay": 30.0},
        {"carrier": "WN", "name": "Southwest Airlines Co.", "mean_arr_delay": 30.0},
        {"carrier": "UA", "name": "United Air Lines Inc.", "mean_arr_delay": 10.0},
    ],
    "q7": {"day_of_week": "Tuesday", "flights": 7},
    "q8": [{"month": 1, "pct_dep_delay_over_30": 50.0}, {"month": 2, "pct_dep_delay_over_30": 40.0}],
    "q9": {"origin": "JFK", "flights": 2},
    "q10": [
        {"day_of_week": "Monday", "mean_dep_delay": 42.0},
        {"day_of_week": "Tuesday", "mean_dep_delay": 30.0},
        {"day_of_week": "Wednesday", "mean_dep_delay": 30.0},
        {"day_of_week": "Thursday", "mean_dep_delay": 0.0},
        {"day_of_week": "Friday", "mean_dep_delay": 6.0},
        {"day_of_week": "Saturday", "mean_dep_delay": 120.0},
        {"day_of_week": "Sunday", "mean_dep_delay": 52.0},
    ],
    "q11": {"origin": "JFK", "dest": "SEA", "mean_air_time": 345.0},
    "q12": [
        {"origin": "EWR", "dest": "SEA", "flights": 3},
        {"origin": "JFK", "dest": "LAX", "flights": 4},
        {"origin": "LGA", "dest": "ORD", "flights": 4},
    ],
    "q13": [
        {"min_flights": 2, "origin": "JFK", "dest": "LAX", "air_time_stddev": 10.0, "timed_flights": 3},
        {
            "min_flights": 2,
            "origin": "EWR",
            "dest": "ORD",
            "air_time_stddev": 7.0710678118654755,
            "timed_flights": 2,
        },
        {
            "min_flights": 2,
            "origin": "JFK",
            "dest": "SEA",
            "air_time_stddev": 7.0710678118654755,
            "timed_flights": 2,
        },
    ],
    "q14": 80.0,
    "q15": [{"month": 1, "mean_daily_flights": 13 / 7}, {"month": 2, "mean_daily_flights": 1.4}],
    "q16": [
        {"origin": "JFK", "dest": "SEA", "flights": 2},
        {"origin": "EWR", "dest": "ORD", "flights": 1},
        {"origin": "JFK", "dest": "BOS", "flights": 1},
    ],
    "q17": [
        {"origin": "EWR", "dest": "ORD", "flights": 2},
        {"origin": "JFK", "dest": "LAX", "flights": 3},
        {"origin": "LGA", "dest": "ORD", "flights": 3},
    ],
}


def assert_same_json(actual: Any, expected: Any, where: str = "") -> None:
    """Checks types, keys, order and values exactly, floats to a relative 1e-9."""
    assert type(actual) is type(expected), f"{where}: {type(actual).__name__}, not {type(expected).__name__}"
    if isinstance(expected, dict):
        assert list(actual) == list(expected), f"{where}: keys {list(actual)}"
        for key in expected:
            assert_same_json(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), f"{where}: {len(actual)} items"
        for i, (got, want) in enumerate(zip(actual, expected, strict=True)):
            assert_same_json(got, want, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-9), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def test_answers_to_json_has_every_answer_in_its_shape(flights: DataFrame) -> None:
    result = answers.answers_to_json(flights)

    assert list(result) == [f"q{i}" for i in range(1, 18)]
    assert_same_json(result, EXPECTED_JSON)
    # Everything it cached, the flights and the shared intermediates, is released.
    for cached in [flights, *[flights.transform(build) for build in answers.SHARED]]:
        assert cached.storageLevel == StorageLevel.NONE


def test_answers_to_json_leaves_a_callers_cache_alone(
    flights: DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One question is enough to exercise the caching; all 17 were run above.
    monkeypatch.setattr(answers, "QUESTION_FUNCTIONS", {"q1": answers.QUESTION_FUNCTIONS["q1"]})
    mine = flights.cache()
    try:
        assert answers.answers_to_json(mine) == {"q1": 20}
        assert mine.storageLevel != StorageLevel.NONE
    finally:
        mine.unpersist()


def test_readings_cover_every_question() -> None:
    assert list(answers.READINGS) == [*(f"q{i}" for i in range(1, 18)), "final"]
    assert all(reading.strip() for reading in answers.READINGS.values())
