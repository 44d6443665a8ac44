"""The case's 17 questions about NYC 2013 departures, answered in Spark.

Each question is one function from the flights (as `read_flights` returns them) to a small
DataFrame; the functions are built from the small transformations at the top of the module,
composed with `.transform`. `answers_to_json` computes all 17 at once and returns plain Python
values for the notebook. How each question was read is in its docstring and in `READINGS`.

Ties are broken deterministically, by the ranked name or code ascending (airport, carrier,
origin then destination, day name), so the same data always gives the same answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from flight_delay.progress import Progress

Transform = Callable[[DataFrame], DataFrame]

ROUTE = ("origin", "dest")
# Q13's minimum number of timed flights per route (why 30: READINGS["q13"]), then the loosest, 2.
Q13_MIN_FLIGHTS = (30, 2)

READINGS: dict[str, str] = {
    "q1": "Every row of the file is one scheduled flight, cancelled ones included.",
    "q2": "A flight is cancelled when it has neither a departure time nor an arrival time "
    "(dep_time and arr_time both null).",
    "q3": "Mean dep_delay in minutes over the flights that have one; cancelled flights have none.",
    "q4": "A landing is a flight that arrived at its scheduled destination (arr_time and arr_delay "
    "both present, so cancelled and diverted flights, which landed elsewhere, do not count); ties by "
    "airport code. Beside it, the plain ranking by all flights scheduled to the airport: the two "
    "readings swap the first two airports (ORD is scheduled more, ATL has more landings).",
    "q5": "Routes are (origin, dest) pairs counted over all scheduled flights; ties by origin, then dest.",
    "q6": "Mean arr_delay in minutes per airline over the flights that have one (cancelled and "
    "diverted flights have none); ties by carrier code.",
    "q7": "Weekday of the scheduled date (year, month, day), counting all scheduled flights; "
    "ties by day name.",
    "q8": "Share, in percent (0-100), of the flights that departed (have a dep_delay) whose "
    "dep_delay was more than 30 minutes.",
    "q9": "Origins of the flights that landed at SEA (arrived with an arr_delay, so not diverted); "
    "ties by origin code.",
    "q10": "Mean dep_delay in minutes per weekday of the scheduled date, over the flights that have "
    "one, listed Monday to Sunday.",
    "q11": "Mean air_time in minutes per (origin, dest) over the flights with an air_time; "
    "ties by origin, then dest.",
    "q12": "For each origin, the destination with the most scheduled flights (cancelled included); "
    "ties by destination code.",
    "q13": "Variation is the sample standard deviation of air_time in minutes per route, over the "
    "routes with at least 30 timed flights: a spread from a handful of flights is noise (with any 2 "
    "allowed, LGA-MYR leads on 3 flights of 74, 84 and 122 min). 30 is the usual rule of thumb for a "
    "stable sample estimate; any minimum from 4 to 342 gives the same top 3. Both readings are shown, "
    "with each route's timed_flights; ties by origin, then dest.",
    "q14": "Mean arr_delay in minutes of the flights whose dep_delay was more than 60 minutes, "
    "over those that have an arr_delay.",
    "q15": "Flights scheduled on each calendar day, averaged over the days of each month "
    "(every day of 2013 has flights).",
    "q16": "Routes of the flights that landed with an arr_delay of more than 30 minutes; "
    "ties by origin, then dest.",
    "q17": "For each origin, the destination with the most flights that operated (cancelled ones "
    "left out); it usually names the same airport as q12, which counts the schedule, and the two "
    "differ only where cancellations change the ranking; ties by destination code.",
    "final": "The 5 flights with the largest arr_delay (ties by id), with the daily mean wind (m/s) at "
    "both ends on flight_date, the local date the flight actually left: its scheduled date, moved on "
    "a day when dep_delay pushed the departure past midnight (note says so for each flight). "
    "wind_source says where each value came from or why it is missing.",
}


# Building blocks.


def is_cancelled() -> Column:
    """True for a cancelled flight: no departure time and no arrival time."""
    return F.col("dep_time").isNull() & F.col("arr_time").isNull()


def cancelled(flights: DataFrame) -> DataFrame:
    """Keeps the cancelled flights."""
    return flights.where(is_cancelled())


def operated(flights: DataFrame) -> DataFrame:
    """Keeps the flights that were not cancelled."""
    return flights.where(~is_cancelled())


def non_null(column: str) -> Transform:
    """Returns a transformation keeping the rows where `column` is present."""

    def transform(frame: DataFrame) -> DataFrame:
        """Drops the rows where the column is null."""
        return frame.where(F.col(column).isNotNull())

    return transform


def departed(flights: DataFrame) -> DataFrame:
    """Keeps the flights that departed, i.e. have a departure delay."""
    return flights.transform(non_null("dep_delay"))


def is_landed() -> Column:
    """True for a flight that arrived at its scheduled destination."""
    # A diverted flight has an arr_time (where it did land) but no arr_delay.
    return F.col("arr_time").isNotNull() & F.col("arr_delay").isNotNull()


def landed(flights: DataFrame) -> DataFrame:
    """Keeps the flights that arrived at their scheduled destination."""
    return flights.where(is_landed())


def with_day_of_week(flights: DataFrame) -> DataFrame:
    """Adds the English weekday name (day_of_week) and its number, Monday 0 (day_number)."""
    # The scheduled local date, not time_hour, which is in UTC and moves late flights a day on.
    date = F.make_date("year", "month", "day")
    return flights.withColumns({"day_of_week": F.date_format(date, "EEEE"), "day_number": F.weekday(date)})


def count_by(*keys: str, name: str = "flights") -> Transform:
    """Returns a transformation counting the rows per `keys` into a column `name`."""

    def transform(frame: DataFrame) -> DataFrame:
        """Counts the rows per key."""
        return frame.groupBy(*keys).agg(F.count(F.lit(1)).alias(name))

    return transform


def route_counts(flights: DataFrame) -> DataFrame:
    """Counts the flights per route: origin, dest, flights."""
    return flights.transform(count_by(*ROUTE))


def daily_flights(flights: DataFrame) -> DataFrame:
    """Counts the flights per calendar day: year, month, day, flights."""
    return flights.transform(count_by("year", "month", "day"))


def top_n(n: int, by: str, *tiebreak: str) -> Transform:
    """Returns a transformation keeping the n rows with the largest `by`, ties by `tiebreak` ascending."""

    def transform(frame: DataFrame) -> DataFrame:
        """Sorts by `by` descending, then the tiebreak, and keeps the first n rows."""
        return frame.orderBy(F.col(by).desc(), *[F.col(c).asc() for c in tiebreak]).limit(n)

    return transform


def with_rank(name: str, by: str, *tiebreak: str) -> Transform:
    """Returns a transformation numbering the rows 1.. by `by` descending (ties by `tiebreak`) into `name`."""

    def transform(frame: DataFrame) -> DataFrame:
        """Ranks every row of a small answer in one window."""
        # No partition: the frames ranked this way have a row per airport, about a hundred.
        ranking = Window.orderBy(F.col(by).desc(), *[F.col(c).asc() for c in tiebreak])
        return frame.withColumn(name, F.row_number().over(ranking))

    return transform


def top_per_group(group: str, by: str, tiebreak: str) -> Transform:
    """Returns a transformation keeping, per `group`, the row with the largest `by` (ties by `tiebreak`)."""

    def transform(frame: DataFrame) -> DataFrame:
        """Ranks the rows within each group and keeps the first, ordered by group."""
        ranking = Window.partitionBy(group).orderBy(F.col(by).desc(), F.col(tiebreak).asc())
        return (
            frame.withColumn("rank", F.row_number().over(ranking))
            .where(F.col("rank") == 1)
            .drop("rank")
            .orderBy(group)
        )

    return transform


# The questions.


def total_flights(flights: DataFrame) -> DataFrame:
    """Q1: the number of flights (column flights).

    Every row is one scheduled flight, cancelled ones included.
    """
    return flights.agg(F.count(F.lit(1)).alias("flights"))


def cancelled_flights(flights: DataFrame) -> DataFrame:
    """Q2: the number of cancelled flights (column cancelled).

    Cancelled means dep_time and arr_time both null; a flight that departed but has no arrival
    time recorded is not counted.
    """
    return flights.transform(cancelled).agg(F.count(F.lit(1)).alias("cancelled"))


def mean_dep_delay(flights: DataFrame) -> DataFrame:
    """Q3: the mean departure delay in minutes (column mean_dep_delay).

    The mean is over the flights that have a dep_delay; cancelled flights have none.
    """
    return flights.transform(departed).agg(F.avg("dep_delay").alias("mean_dep_delay"))


def top_landing_airports(flights: DataFrame, n: int = 5) -> DataFrame:
    """Q4: the n airports with the most landings, beside the plain ranking by scheduled flights.

    Columns airport, landings, landings_rank, flights, flights_rank: the airports in either top n,
    ordered by landings_rank. A landing is a flight that arrived at its scheduled destination
    (arr_time and arr_delay both present); flights counts every flight scheduled there, cancelled
    and diverted included. Ties go to the airport code ascending.
    """
    per_airport = flights.groupBy(F.col("dest").alias("airport")).agg(
        F.count_if(is_landed()).alias("landings"), F.count(F.lit(1)).alias("flights")
    )
    return (
        per_airport.transform(with_rank("landings_rank", "landings", "airport"))
        .transform(with_rank("flights_rank", "flights", "airport"))
        .where((F.col("landings_rank") <= n) | (F.col("flights_rank") <= n))
        .orderBy("landings_rank")
        .select("airport", "landings", "landings_rank", "flights", "flights_rank")
    )


def most_frequent_route(flights: DataFrame) -> DataFrame:
    """Q5: the route with the most flights (one row: origin, dest, flights).

    Routes are counted over all scheduled flights, cancelled included; ties go to origin, then
    dest, ascending.
    """
    return flights.transform(route_counts).transform(top_n(1, "flights", *ROUTE))


def top_carriers_by_arr_delay(flights: DataFrame, n: int = 5) -> DataFrame:
    """Q6: the n airlines with the largest mean arrival delay (carrier, name, mean_arr_delay).

    The mean, in minutes, is over each airline's flights that have an arr_delay (cancelled and
    diverted flights have none). Ties go to the carrier code ascending.
    """
    delays = (
        flights.transform(non_null("arr_delay"))
        .groupBy("carrier", "name")
        .agg(F.avg("arr_delay").alias("mean_arr_delay"))
    )
    return delays.transform(top_n(n, "mean_arr_delay", "carrier"))


def busiest_day_of_week(flights: DataFrame) -> DataFrame:
    """Q7: the day of the week with the most flights (one row: day_of_week, flights).

    The weekday is that of the scheduled date (year, month, day) and all scheduled flights count;
    ties go to the day name ascending.
    """
    # Counting per date first is cheap (365 rows) and shares work with q15.
    per_weekday = (
        flights.transform(daily_flights)
        .transform(with_day_of_week)
        .groupBy("day_of_week")
        .agg(F.sum("flights").alias("flights"))
    )
    return per_weekday.transform(top_n(1, "flights", "day_of_week"))


def pct_dep_delay_over_30_by_month(flights: DataFrame, threshold: float = 30.0) -> DataFrame:
    """Q8: per month, the percentage of departed flights delayed more than `threshold` minutes.

    Columns month, pct_dep_delay_over_30 (0-100), months in order. The denominator is the flights
    that departed (have a dep_delay); a delay of exactly 30 minutes does not exceed 30.
    """
    # Rows reaching the aggregate all departed, so count(1) is the denominator.
    share_late = 100.0 * F.count_if(F.col("dep_delay") > threshold) / F.count(F.lit(1))
    return (
        flights.transform(departed)
        .groupBy("month")
        .agg(share_late.alias("pct_dep_delay_over_30"))
        .orderBy("month")
    )


def top_origin_to(flights: DataFrame, dest: str = "SEA") -> DataFrame:
    """Q9: the most common origin of the flights that landed at `dest` (one row: origin, flights).

    Only landings count: the flight arrived at `dest` with an arr_delay, so diverted and
    cancelled flights are left out. Ties go to the origin code ascending.
    """
    origins = flights.transform(landed).where(F.col("dest") == dest).transform(count_by("origin"))
    return origins.transform(top_n(1, "flights", "origin"))


def mean_dep_delay_by_day_of_week(flights: DataFrame) -> DataFrame:
    """Q10: the mean departure delay per weekday (day_of_week, mean_dep_delay), Monday to Sunday.

    The weekday is that of the scheduled date; the mean, in minutes, is over the flights that
    have a dep_delay.
    """
    return (
        flights.transform(departed)
        .transform(with_day_of_week)
        .groupBy("day_number", "day_of_week")
        .agg(F.avg("dep_delay").alias("mean_dep_delay"))
        .orderBy("day_number")
        .drop("day_number")
    )


def longest_route_by_air_time(flights: DataFrame) -> DataFrame:
    """Q11: the route with the largest mean air_time (one row: origin, dest, mean_air_time).

    The mean, in minutes, is over each route's flights that have an air_time; ties go to origin,
    then dest, ascending.
    """
    timed = flights.transform(non_null("air_time"))
    air_times = timed.groupBy(*ROUTE).agg(F.avg("air_time").alias("mean_air_time"))
    return air_times.transform(top_n(1, "mean_air_time", *ROUTE))


def top_dest_per_origin(flights: DataFrame) -> DataFrame:
    """Q12: for each origin, the most common destination (origin, dest, flights), by origin.

    Counts all scheduled flights per (origin, dest), cancelled included; ties go to the
    destination code ascending.
    """
    return flights.transform(route_counts).transform(top_per_group("origin", "flights", "dest"))


def air_time_spread(flights: DataFrame) -> DataFrame:
    """Per route, the sample standard deviation of air_time and the flights it is computed over."""
    return (
        flights.transform(non_null("air_time"))
        .groupBy(*ROUTE)
        .agg(F.stddev_samp("air_time").alias("air_time_stddev"), F.count(F.lit(1)).alias("timed_flights"))
    )


def most_variable_routes(
    flights: DataFrame, n: int = 3, min_flights: tuple[int, ...] = Q13_MIN_FLIGHTS
) -> DataFrame:
    """Q13: the n routes with the largest air_time variation, once per minimum number of flights.

    Columns min_flights, origin, dest, air_time_stddev (sample standard deviation of air_time, in
    minutes), timed_flights; the rows of each minimum together, in the order `min_flights` lists
    them (the answer's minimum first, then the loosest, 2: one flight has no spread). Ties go to
    origin, then dest.
    """
    readings = F.posexplode(F.array(*[F.lit(m) for m in min_flights])).alias("reading", "min_flights")
    ranking = Window.partitionBy("reading").orderBy(F.desc("air_time_stddev"), *ROUTE)
    return (
        flights.transform(air_time_spread)
        .select("*", readings)
        .where(F.col("timed_flights") >= F.col("min_flights"))
        .withColumn("rank", F.row_number().over(ranking))
        .where(F.col("rank") <= n)
        .orderBy("reading", "rank")
        .select("min_flights", *ROUTE, "air_time_stddev", "timed_flights")
    )


def mean_arr_delay_after_late_departure(flights: DataFrame, threshold: float = 60.0) -> DataFrame:
    """Q14: the mean arrival delay of flights that left more than `threshold` minutes late.

    Column mean_arr_delay, in minutes, over those flights that have an arr_delay (a diverted
    one has none); a departure delay of exactly 60 does not exceed an hour.
    """
    return (
        flights.where(F.col("dep_delay") > threshold)
        .transform(non_null("arr_delay"))
        .agg(F.avg("arr_delay").alias("mean_arr_delay"))
    )


def mean_daily_flights_by_month(flights: DataFrame) -> DataFrame:
    """Q15: per month, the mean number of flights a day (month, mean_daily_flights), in order.

    Flights scheduled on each calendar day, averaged over the days of the month that have
    flights; in 2013 every day has some, so this is the month's flights over its length.
    """
    return (
        flights.transform(daily_flights)
        .groupBy("month")
        .agg(F.avg("flights").alias("mean_daily_flights"))
        .orderBy("month")
    )


def top_late_routes(flights: DataFrame, n: int = 3, threshold: float = 30.0) -> DataFrame:
    """Q16: the n most common routes of flights that arrived more than `threshold` minutes late.

    Columns origin, dest, flights. Only flights that landed have an arr_delay to compare; a delay
    of exactly 30 does not count. Ties go to origin, then dest, ascending.
    """
    late = flights.transform(landed).where(F.col("arr_delay") > threshold)
    return late.transform(route_counts).transform(top_n(n, "flights", *ROUTE))


def main_dest_per_origin(flights: DataFrame) -> DataFrame:
    """Q17: for each origin, the main destination (origin, dest, flights), by origin.

    Main means most flights that actually operated (cancelled left out), where q12 counts the
    schedule; the two usually agree. Ties go to the destination code ascending.
    """
    return (
        flights.transform(operated)
        .transform(route_counts)
        .transform(top_per_group("origin", "flights", "dest"))
    )


# The JSON layer.


def as_int(frame: DataFrame) -> int:
    """The single value of a one-row, one-column answer, as an int."""
    return int(frame.first()[0])


def as_float(frame: DataFrame) -> float | None:
    """The single value of a one-row, one-column answer, as a float (None when there is none)."""
    value = frame.first()[0]
    return None if value is None else float(value)


def as_record(frame: DataFrame) -> dict[str, Any] | None:
    """The one row of an answer as a dict (None when the answer is empty)."""
    row = frame.first()
    return None if row is None else row.asDict()


def as_records(frame: DataFrame) -> list[dict[str, Any]]:
    """The rows of an answer as dicts, in the answer's order."""
    return [row.asDict() for row in frame.collect()]


QUESTION_FUNCTIONS: dict[str, tuple[Transform, Callable[[DataFrame], Any]]] = {
    "q1": (total_flights, as_int),
    "q2": (cancelled_flights, as_int),
    "q3": (mean_dep_delay, as_float),
    "q4": (top_landing_airports, as_records),
    "q5": (most_frequent_route, as_record),
    "q6": (top_carriers_by_arr_delay, as_records),
    "q7": (busiest_day_of_week, as_record),
    "q8": (pct_dep_delay_over_30_by_month, as_records),
    "q9": (top_origin_to, as_record),
    "q10": (mean_dep_delay_by_day_of_week, as_records),
    "q11": (longest_route_by_air_time, as_record),
    "q12": (top_dest_per_origin, as_records),
    "q13": (most_variable_routes, as_records),
    "q14": (mean_arr_delay_after_late_departure, as_float),
    "q15": (mean_daily_flights_by_month, as_records),
    "q16": (top_late_routes, as_records),
    "q17": (main_dest_per_origin, as_records),
}

# Intermediates two questions build: route counts (q5, q12) and daily counts (q7, q15), both small.
# Spark substitutes a cached plan wherever a query contains the same plan. The landed filter (q9,
# q16) is not cached: it would copy 97% of the flights to save a scan of data already in memory,
# and on the full data that made the 17 answers slower (docs/PIPELINE.md).
SHARED: tuple[Transform, ...] = (route_counts, daily_flights)
# The stage answers_to_json reports, by this name, to the Progress it is given.
STAGE = "17 questions"


def answer(flights: DataFrame, key: str, advance: Callable[..., None]) -> Any:
    """Computes one question's answer as plain Python values and moves the progress bar on."""
    question, convert = QUESTION_FUNCTIONS[key]
    value = convert(question(flights))
    advance(1)
    return value


def answers_to_json(flights: DataFrame, progress: Progress | None = None) -> dict[str, Any]:
    """Answers q1..q17 as plain Python values (ints, floats, strings, dicts, lists)."""
    # Cache the flights once so the file is read once, not 17 times; leave a caller's cache alone.
    owned = not flights.is_cached
    if owned:
        flights.cache()
    shared = [flights.transform(build).cache() for build in SHARED]
    progress = progress or Progress("answers")
    try:
        with progress.stage(STAGE, total=len(QUESTION_FUNCTIONS), unit="questions") as advance:
            return {key: answer(flights, key, advance) for key in QUESTION_FUNCTIONS}
    finally:
        for frame in shared:
            frame.unpersist()
        if owned:
            flights.unpersist()
