"""The feature contract in Spark: the same features `FeatureContract.encode` builds, as columns.

A parity test holds this module and `flight_delay.features` together, so what the model saw in
training is what the API feeds it.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import chain

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from flight_delay.features import CATEGORICAL_FIELDS, CONTEXT_NAMES, RANGED_FIELDS, FeatureContract


def hhmm_minutes(column: str) -> Column:
    """Converts an hhmm clock time column to minutes after midnight."""
    return (F.floor(F.col(column) / 100) * 60 + F.col(column) % 100).cast("double")


def monday_zero_weekday() -> Column:
    """Returns the weekday of year/month/day counted from 0 (Monday) to 6 (Sunday)."""
    # Spark's dayofweek counts from 1 (Sunday); shifting by 5 modulo 7 puts Monday at 0.
    return ((F.dayofweek(F.make_date("year", "month", "day")) + 5) % 7).cast("double")


def category_code(contract: FeatureContract, name: str) -> Column:
    """Maps a category to its code in the contract's vocabulary; unseen values become null."""
    vocabulary = contract.categories[name]
    codes = F.create_map(*chain.from_iterable((F.lit(v), F.lit(float(i))) for i, v in enumerate(vocabulary)))
    return F.element_at(codes, F.col(name)) if vocabulary else F.lit(None).cast("double")


def feature_columns(contract: FeatureContract) -> dict[str, Column]:
    """Returns one Spark expression per contract feature, keyed by feature name."""
    expressions = {
        "month": F.col("month").cast("double"),
        "day_of_week": monday_zero_weekday(),
        "sched_dep_minute": hhmm_minutes("sched_dep_time"),
        "sched_arr_minute": hhmm_minutes("sched_arr_time"),
        "dep_delay": F.col("dep_delay").cast("double"),
        "distance": F.col("distance").cast("double"),
        **{name: category_code(contract, name) for name in CATEGORICAL_FIELDS},
        # Columns pipeline/context.py adds (the contract's context features, null when missing).
        **{name: F.col(name).cast("double") for name in contract.context_features if name in CONTEXT_NAMES},
    }
    missing = set(contract.feature_names) - set(expressions)
    if missing:
        raise ValueError(f"no Spark expression for features {sorted(missing)}")
    return {name: expressions[name] for name in contract.feature_names}


def with_features(contract: FeatureContract, keep: tuple[str, ...] = ()) -> Callable[[DataFrame], DataFrame]:
    """Returns a transformation selecting the `keep` columns plus the contract's features."""

    def transform(flights: DataFrame) -> DataFrame:
        """Builds the feature columns next to the kept ones."""
        columns = feature_columns(contract)
        return flights.select(*keep, *[expr.alias(name) for name, expr in columns.items()])

    return transform


def fit_contract(train: DataFrame) -> FeatureContract:
    """Learns the category vocabularies from the training flights, in Spark."""
    bounds = [agg(name).alias(f"{agg.__name__}_{name}") for name in RANGED_FIELDS for agg in (F.min, F.max)]
    row = train.agg(*[F.collect_set(name).alias(name) for name in CATEGORICAL_FIELDS], *bounds).first()
    return FeatureContract(
        categories={name: tuple(sorted(row[name])) for name in CATEGORICAL_FIELDS},
        ranges={name: (float(row[f"min_{name}"]), float(row[f"max_{name}"])) for name in RANGED_FIELDS},
    )
