"""Joins origin and destination wind onto flights in Spark, and answers the final question."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from flight_delay.enrichment.sources import WindObservation, WindSource

WIND_SCHEMA = "airport string, date date, wind_spd double, source string"
FINAL_FIELDS = (
    "id", "year", "month", "day", "sched_dep_time", "dep_delay", "flight_date", "carrier", "flight",
    "origin", "dest", "arr_delay", "origin_wind_spd", "dest_wind_spd", "wind_source", "note",
)  # fmt: skip
MINUTES_A_DAY = 24 * 60


def wind_table(spark: SparkSession, observations: Iterable[WindObservation]) -> DataFrame:
    """Turns wind observations into a small Spark table (airport, date, wind_spd, source)."""
    rows = [(o.airport, o.date, o.wind_spd, o.source) for o in observations]
    return spark.createDataFrame(rows, schema=WIND_SCHEMA)


def scheduled_date() -> Column:
    """The scheduled local date of a flight, from year/month/day."""
    return F.make_date("year", "month", "day")


def departure_date() -> Column:
    """The local date the flight left: the scheduled date, moved on when dep_delay crosses midnight."""
    # sched_dep_time is local hhmm: 1,301 minutes late on a 09:00 departure left at 06:41 the next
    # day (on the full data this agrees with dep_time for every flight that departed). A flight that
    # never left keeps its scheduled date.
    scheduled_minute = F.floor(F.col("sched_dep_time") / 100) * 60 + F.col("sched_dep_time") % 100
    days_on = F.floor((scheduled_minute + F.col("dep_delay")) / MINUTES_A_DAY).cast("int")
    return F.date_add(scheduled_date(), F.coalesce(days_on, F.lit(0)))


def with_flight_date(flights: DataFrame) -> DataFrame:
    """Adds flight_date, the local date each flight actually left, which its wind is looked up for."""
    return flights.withColumn("flight_date", departure_date())


def date_note() -> Column:
    """Says, per flight, whether the wind is that of another day than the scheduled one, and why."""
    moved = F.concat(
        F.lit("dep_delay of "),
        F.col("dep_delay").cast("int").cast("string"),
        F.lit(" min: left on "),
        F.col("flight_date").cast("string"),
        F.lit(", so the wind is that day's, not the scheduled "),
        scheduled_date().cast("string"),
        F.lit("'s"),
    )
    return F.when(F.col("flight_date") != scheduled_date(), moved).otherwise(
        F.lit("left on its scheduled date")
    )


def wind_side(wind: DataFrame, role: str) -> DataFrame:
    """The wind table with its columns renamed for the origin or the destination join, broadcast."""
    return F.broadcast(
        wind.select(
            F.col("airport").alias(f"{role}_airport"),
            F.col("date").alias(f"{role}_date"),
            F.col("wind_spd").alias(f"{role}_wind_spd"),
            F.col("source").alias(f"{role}_wind_from"),
        )
    )


def wind_source_note() -> Column:
    """Says where each end's wind came from, or that it was not looked up."""
    return F.concat(
        F.lit("origin: "),
        F.coalesce(F.col("origin_wind_from"), F.lit("not looked up")),
        F.lit("; dest: "),
        F.coalesce(F.col("dest_wind_from"), F.lit("not looked up")),
    )


def with_wind(wind: DataFrame) -> Callable[[DataFrame], DataFrame]:
    """Returns a transformation adding flight_date, origin_wind_spd, dest_wind_spd and wind_source."""

    def transform(flights: DataFrame) -> DataFrame:
        """Left-joins the (small, broadcast) wind table twice: once per end of the flight."""
        joined = (
            flights.transform(with_flight_date)
            .join(
                wind_side(wind, "origin"),
                (F.col("origin") == F.col("origin_airport")) & (F.col("flight_date") == F.col("origin_date")),
                "left",
            )
            .join(
                wind_side(wind, "dest"),
                (F.col("dest") == F.col("dest_airport")) & (F.col("flight_date") == F.col("dest_date")),
                "left",
            )
        )
        return joined.select(
            *flights.columns,
            "flight_date",
            "origin_wind_spd",
            "dest_wind_spd",
            wind_source_note().alias("wind_source"),
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
    """Adds the wind at both ends to every flight, asking the source for each airport-day they need.

    The paid source refuses more than its limit of uncached airport-days (WIND_MAX_NEW_DAYS):
    enrich the whole year with the offline source, and the few flights a question asks about
    with the APIs.
    """
    wind = wind_table(flights.sparkSession, source.winds(airport_days(flights)))
    return flights.transform(with_wind(wind))


def most_delayed(flights: DataFrame, n: int) -> DataFrame:
    """Keeps the n flights with the largest arrival delay (ties by id)."""
    return flights.where(F.col("arr_delay").isNotNull()).orderBy(F.desc("arr_delay"), "id").limit(n)


def top_delayed_with_wind(flights: DataFrame, source: WindSource, n: int = 5) -> list[dict[str, Any]]:
    """The final question: the n most delayed flights with the wind at both ends, as records."""
    top = most_delayed(flights, n).cache()
    try:
        enriched = enrich_flights(top, source).withColumn("note", date_note())
        ordered = enriched.orderBy(F.desc("arr_delay"), "id").select(*FINAL_FIELDS)
        return [row.asDict() for row in ordered.collect()]
    finally:
        top.unpersist()


def wind_coverage(enriched: DataFrame) -> DataFrame:
    """Counts the enriched flights, those with wind at each end, and those that left a day late."""
    return enriched.agg(
        F.count(F.lit(1)).alias("flights"),
        F.count("origin_wind_spd").alias("with_origin_wind"),
        F.count("dest_wind_spd").alias("with_dest_wind"),
        F.count_if(F.col("flight_date") != scheduled_date()).alias("left_after_scheduled_date"),
    )
