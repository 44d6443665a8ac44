"""The context features in Spark: `context/definitions.py`'s definitions, with window functions.

Each training flight is asked for its context twice: before departure (as of the lead before its
scheduled departure) and at departure (as of its departure). A question is a row at its as_of time
among the origin's events (schedules, departures, finished weather hours), so one ordering per
origin answers all of them with range frames that end one second before as_of (a fact is seen when
known strictly before):

- recent departures and their mean dep_delay: departure events in [as_of - window, as_of);
- scheduled in the window: schedule events in [as_of - window, as_of);
- not left: a running sum of +1 at each scheduled departure and -1 when the flight stops waiting
  (it departs, or the window has passed its schedule), before as_of;
- the weather: the last finished hour before as_of, if not older than its maximum age.

The scheduled load is a count over (origin, day, hour) and (origin, day); the previous leg a maximum
over the aircraft's legs scheduled in the day before, then masked by what was known at as_of.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from flight_delay.context.definitions import (
    NEW_YORK_ZONE,
    ORIGIN_WINDOW_S,
    PREVIOUS_LEG_MAX_S,
    TAXI_MINUTES,
    WEATHER_BOUNDS,
    WEATHER_FEATURES,
    WEATHER_FIELDS,
    WEATHER_KNOWN_AFTER_S,
    WEATHER_MAX_AGE_S,
)

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()  # local_day is the date's ordinal, as definitions.local_day
BASIS = "basis"
AS_OF = "as_of_s"
QUERY, SCHEDULE, END, DEPARTURE, WEATHER = "query", "schedule", "end", "departure", "weather"
LEG_FIELDS = ("scheduled", "carrier", "flight", "origin", "departed", "dep_delay", "landed", "arr_delay")


def seconds(minutes: Column) -> Column:
    """A delay in minutes as whole seconds (floor), as definitions.seconds counts it."""
    return F.floor(minutes * 60).cast("long")


def scheduled_seconds() -> Column:
    """The New York local scheduled departure (date and hhmm) as epoch seconds."""
    minutes = F.floor(F.col("sched_dep_time") / 100) * 60 + F.col("sched_dep_time") % 100
    wall = F.unix_date(F.make_date("year", "month", "day")).cast("long") * 86400 + minutes.cast("long") * 60
    # timestamp_seconds(wall) reads the wall clock as UTC; to_utc_timestamp reads it as New York's.
    return F.unix_seconds(F.to_utc_timestamp(F.timestamp_seconds(wall), NEW_YORK_ZONE))


def with_facts(flights: DataFrame) -> DataFrame:
    """Adds each flight's day, hour, scheduled departure, departure and landing (when known), in seconds."""
    departed = F.col("scheduled") + seconds(F.col("dep_delay"))
    landing = F.col("departed") + seconds(F.col("air_time")) + seconds(F.lit(float(TAXI_MINUTES)))
    landed = F.when(F.col("arr_delay").isNotNull(), landing)
    return (
        flights.withColumn("tailnum", F.when(F.col("tailnum") != "", F.col("tailnum")))
        .withColumn("local_day", F.unix_date(F.make_date("year", "month", "day")) + EPOCH_ORDINAL)
        .withColumn("local_hour", F.floor(F.col("sched_dep_time") / 100).cast("int"))
        .withColumn("scheduled", scheduled_seconds())
        .withColumn("departed", departed)
        .withColumn("landed", landed)
    )


def with_load_and_previous_leg(flights: DataFrame) -> DataFrame:
    """Adds the scheduled load at the origin (that hour, that day) and the aircraft's previous leg."""
    by_hour = Window.partitionBy("origin", "local_day", "local_hour")
    by_day = Window.partitionBy("origin", "local_day")
    legs = Window.partitionBy("tailnum").orderBy("scheduled").rangeBetween(-PREVIOUS_LEG_MAX_S, -1)
    previous = F.max(F.struct(*LEG_FIELDS)).over(legs)
    return (
        flights.withColumn("scheduled_hour", F.count(F.lit(1)).over(by_hour).cast("double"))
        .withColumn("scheduled_day", F.count(F.lit(1)).over(by_day).cast("double"))
        .withColumn("previous", F.when(F.col("tailnum").isNotNull(), previous))
    )


def questions(flights: DataFrame, lead_s: int) -> DataFrame:
    """One row per flight and basis, at its as_of: before departure (lead before), at departure (departed)."""
    before = flights.withColumn(BASIS, F.lit("before_departure")).withColumn(
        AS_OF, F.col("scheduled") - lead_s
    )
    at = (
        flights.where(F.col("departed").isNotNull())
        .withColumn(BASIS, F.lit("at_departure"))
        .withColumn(AS_OF, F.col("departed"))
    )
    return before.unionByName(at).withColumn("kind", F.lit(QUERY)).withColumn("t", F.col(AS_OF))


def origin_events(flights: DataFrame, weather: DataFrame) -> DataFrame:
    """The origin's events in time: schedules, ends of waiting, departures, finished weather hours."""
    scheduled, departed = F.col("scheduled"), F.col("departed")
    # A flight waits from its schedule until it departs, counted only while the window covers its
    # schedule: it stops at min(max(scheduled, departed), scheduled + window), never departed: the latter.
    window_passed = scheduled + ORIGIN_WINDOW_S
    stop_waiting = F.when(departed.isNull(), window_passed).otherwise(
        F.least(F.greatest(scheduled, departed), window_passed)
    )
    events = [
        flights.select("origin", F.col("scheduled").alias("t"), F.lit(SCHEDULE).alias("kind")),
        flights.select("origin", stop_waiting.alias("t"), F.lit(END).alias("kind")),
        flights.where(F.col("departed").isNotNull()).select(
            "origin",
            F.col("departed").alias("t"),
            F.lit(DEPARTURE).alias("kind"),
            F.col("dep_delay").alias("event_delay"),
        ),
        weather_events(weather),
    ]
    union = events[0]
    for more in events[1:]:
        union = union.unionByName(more, allowMissingColumns=True)
    return union


def weather_events(weather: DataFrame) -> DataFrame:
    """Each observation at the end of its hour, its values in their physical bounds (else null)."""
    hour = F.unix_seconds(F.col("time_hour"))
    values = [
        F.when(F.col(name).between(low, high), F.col(name).cast("double")).alias(name)
        for name, (low, high) in WEATHER_BOUNDS.items()
    ]
    known = (hour + WEATHER_KNOWN_AFTER_S).alias("known")
    return weather.select(
        "origin", known.alias("t"), F.lit(WEATHER).alias("kind"), F.struct(known, *values).alias("observed")
    )


def answered(asked: DataFrame, events: DataFrame) -> DataFrame:
    """Each question with the origin's state and weather as of its as_of, from the events before it."""
    ordered = Window.partitionBy("origin").orderBy("t")
    before = ordered.rangeBetween(Window.unboundedPreceding, -1)
    recent = ordered.rangeBetween(-ORIGIN_WINDOW_S, -1)
    kind = F.col("kind")
    waiting_step = F.when(kind == SCHEDULE, 1).when(kind == END, -1).otherwise(0)
    scheduled_recently = F.sum(F.when(kind == SCHEDULE, 1).otherwise(0)).over(recent)
    waiting = F.sum(waiting_step).over(before)
    latest = F.last(F.col("observed"), ignorenulls=True).over(before)
    return (
        asked.unionByName(events, allowMissingColumns=True)
        .withColumn("origin_departures", F.count(F.when(kind == DEPARTURE, 1)).over(recent).cast("double"))
        .withColumn("origin_mean_dep_delay", F.avg(F.col("event_delay")).over(recent))
        .withColumn("origin_not_left_share", F.when(scheduled_recently > 0, waiting / scheduled_recently))
        .withColumn("latest_weather", latest)
        .where(kind == QUERY)
    )


def with_known_features(flights: DataFrame) -> DataFrame:
    """The weather and previous-leg features as known at each question's as_of."""
    as_of = F.col(AS_OF)
    observed = F.when(as_of - F.col("latest_weather.known") <= WEATHER_MAX_AGE_S, F.col("latest_weather"))
    previous = F.col("previous")
    columns = {
        **{feature: observed[name] for feature, name in zip(WEATHER_FEATURES, WEATHER_FIELDS, strict=True)},
        "previous_dep_delay": F.when(previous["departed"] < as_of, previous["dep_delay"]),
        "previous_arr_delay": F.when(previous["landed"] < as_of, previous["arr_delay"]),
        "previous_gap_min": (F.col("scheduled") - previous["scheduled"]) / 60,
    }
    return flights.withColumns({name: column.cast("double") for name, column in columns.items()})


def with_context(
    weather: DataFrame, asked: Callable[[DataFrame], DataFrame], lead_s: int
) -> Callable[[DataFrame], DataFrame]:
    """A transformation of every flight (cancelled too: they were scheduled) into the questions' rows.

    `asked` picks the flights questions are asked about (training's: those that arrived). Each row
    is one flight and basis (`basis`, `as_of_s`) with the contract's context features; before
    departure its dep_delay is null, as the model reads it then.
    """

    def transform(flights: DataFrame) -> DataFrame:
        """Builds the questions' rows with their context."""
        facts = flights.transform(with_facts).transform(with_load_and_previous_leg)
        rows = answered(questions(asked(facts), lead_s), origin_events(facts, weather))
        rows = rows.transform(with_known_features)
        not_yet = F.when(F.col(BASIS) == "at_departure", F.col("dep_delay"))
        helpers = ("kind", "t", "event_delay", "observed", "latest_weather", "previous", "departed", "landed")
        return rows.withColumn("dep_delay", not_yet).drop(*helpers)

    return transform
