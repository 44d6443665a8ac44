"""Joins origin and destination wind onto flights in Spark, and answers the final question."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from flight_delay.enrichment.sources import WindObservation, WindSource

WIND_SCHEMA = "airport string, date date, wind_spd double, source string"
FINAL_FIELDS = (
    "id", "year", "month", "day", "carrier", "flight", "origin", "dest", "arr_delay",
    "origin_wind_spd", "dest_wind_spd", "wind_source",
)  # fmt: skip


def wind_table(spark: SparkSession, observations: Iterable[WindObservation]) -> DataFrame:
    """Turns wind observations into a small Spark table (airport, date, wind_spd, source)."""
    rows = [(o.airport, o.date, o.wind_spd, o.source) for o in observations]
    return spark.createDataFrame(rows, schema=WIND_SCHEMA)


def with_flight_date(flights: DataFrame) -> DataFrame:
    """Adds the scheduled date of each flight (local date, from year/month/day)."""
    return flights.withColumn("flight_date", F.make_date("year", "month", "day"))


def with_wind(wind: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Returns a transformation adding origin_wind_spd, dest_wind_spd and wind_source."""

    def side(role: str) -> DataFrame:
        """Renames the wind table's columns for the origin or the destination join."""
        return F.broadcast(
            wind.select(
                F.col("airport").alias(f"{role}_airport"),
                F.col("date").alias(f"{role}_date"),
                F.col("wind_spd").alias(f"{role}_wind_spd"),
                F.col("source").alias(f"{role}_wind_from"),
            )
        )

    def transform(flights: DataFrame) -> DataFrame:
        """Left-joins the (small, broadcast) wind table twice: once per end of the flight."""
        dated = flights.transform(with_flight_date)
        joined = dated.join(
            side("origin"),
            (F.col("origin") == F.col("origin_airport")) & (F.col("flight_date") == F.col("origin_date")),
            "left",
        ).join(
            side("dest"),
            (F.col("dest") == F.col("dest_airport")) & (F.col("flight_date") == F.col("dest_date")),
            "left",
        )
        wind_source = F.concat(
            F.lit("origin: "),
            F.coalesce(F.col("origin_wind_from"), F.lit("not looked up")),
            F.lit("; dest: "),
            F.coalesce(F.col("dest_wind_from"), F.lit("not looked up")),
        )
        return joined.select(
            *flights.columns, "origin_wind_spd", "dest_wind_spd", wind_source.alias("wind_source")
        )

    return transform


def airport_days(flights: DataFrame) -> list[tuple[str, Any]]:
    """Lists the distinct (airport, date) pairs at both ends of the flights."""
    dated = flights.transform(with_flight_date)
    ends = dated.select(F.col("origin").alias("airport"), "flight_date").unionByName(
        dated.select(F.col("dest").alias("airport"), "flight_date")
    )
    return [(row["airport"], row["flight_date"]) for row in ends.distinct().collect()]


def enrich_flights(flights: DataFrame, source: WindSource) -> DataFrame:
    """Adds origin and destination wind to every flight (asks the source for every airport-day)."""
    wind = wind_table(flights.sparkSession, source.winds(airport_days(flights)))
    return flights.transform(with_wind(wind))


def most_delayed(flights: DataFrame, n: int) -> DataFrame:
    """Keeps the n flights with the largest arrival delay (ties by id)."""
    return flights.where(F.col("arr_delay").isNotNull()).orderBy(F.desc("arr_delay"), "id").limit(n)


def top_delayed_with_wind(flights: DataFrame, source: WindSource, n: int = 5) -> list[dict[str, Any]]:
    """The final question: the n most delayed flights with the wind at both ends, as records."""
    top = most_delayed(flights, n).cache()
    try:
        enriched = enrich_flights(top, source).orderBy(F.desc("arr_delay"), "id")
        return [row.asDict() for row in enriched.select(*FINAL_FIELDS).collect()]
    finally:
        top.unpersist()
