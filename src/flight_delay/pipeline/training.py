"""Training with Spark: clean, split by time, build the contract's features, fit LightGBM, measure.

Spark does the data work, on the cluster when there is one: cleaning, the split, the features.
LightGBM then fits on the driver, so only the feature columns reach it, and at most
`max_driver_rows` rows of each split (TRAIN_MAX_DRIVER_ROWS): above that, a sample chosen by a hash
of each row's content, the same rows whatever the cluster's layout, logged with its size.
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

from flight_delay.artifact import FlightDelayModel
from flight_delay.features import INPUT_FIELDS, TARGET, FeatureContract
from flight_delay.monitoring.profile import prediction_fields
from flight_delay.pipeline.features import fit_contract, with_features
from flight_delay.pipeline.locations import Location, local_path, location_name, spark_location
from flight_delay.pipeline.profile import profile_features
from flight_delay.progress import Progress, boosting_callback
from flight_delay.training.evaluation import holdout_metrics
from flight_delay.training.lightgbm_trainer import fit_bases, library_versions

log = logging.getLogger(__name__)

TEST_MONTHS = (11, 12)
DEFAULT_ROUNDS = 400
FLIGHT_MONTH = "flight_month"  # the month, kept beside the features for the metrics per month
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


def split_by_time(flights: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Splits January–October (train) from November–December (test): no peeking at the future."""
    in_test = F.col("month").isin(*TEST_MONTHS)
    return flights.where(~in_test), flights.where(in_test)


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
    flights: DataFrame, contract: FeatureContract, max_rows: int, seed: int, name: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Builds the contract's features in Spark and brings at most max_rows of them to the driver."""
    # The month under its own name: a version-1 contract has a "month" feature too.
    dated = flights.withColumn(FLIGHT_MONTH, F.col("month"))
    features = dated.transform(with_features(contract, keep=(TARGET, FLIGHT_MONTH)))
    kept, report = capped(features, max_rows, seed, name)
    frame = kept.toPandas()
    arrays = {
        "features": frame[list(contract.feature_names)].to_numpy(dtype=np.float64),
        "label": frame[TARGET].to_numpy(dtype=np.float64),
        "month": frame[FLIGHT_MONTH].to_numpy(dtype=np.int64),
    }
    return arrays, report


def train_on_flights(
    flights: DataFrame,
    *,
    seed: int = 0,
    rounds: int = DEFAULT_ROUNDS,
    params: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    max_rows: int | None = None,
    progress: Progress | None = None,
) -> FlightDelayModel:
    """Trains the project's model from a flights DataFrame and measures it on the test months."""
    progress = progress or Progress("train", STAGES)
    cap = max_driver_rows() if max_rows is None else max_rows
    usable = flights.transform(trainable).cache()
    try:
        train, test = split_by_time(usable)
        with progress.stage("features"):
            contract = fit_contract(train)
            train_arrays, train_report = feature_arrays(train, contract, cap, seed, "train")
            test_arrays, test_report = feature_arrays(test, contract, cap, seed, "test")
        model = boosted(progress, train_arrays, contract, seed=seed, rounds=rounds, params=params)
        # The features over every training row, in Spark; the predictions where the boosters are.
        scored = prediction_fields(contract.feature_names, train_arrays["features"], model.predict_features)
        model.profile = profile_features(train, contract, scored).to_dict()
        with progress.stage("metrics"):
            model.metrics = holdout_metrics(model, train_arrays, test_arrays)
        with progress.stage("fingerprint"):
            model.training = {
                "engine": "spark",
                "seed": seed,
                "rounds": rounds,
                "driver": {"max_rows": cap, "train": train_report, "test": test_report},
                **data_record(flights, usable, train_arrays, test_arrays, source),
            }
        return model
    finally:
        usable.unpersist()


def boosted(
    progress: Progress,
    arrays: dict[str, np.ndarray],
    contract: FeatureContract,
    *,
    seed: int,
    rounds: int,
    params: dict[str, Any] | None,
) -> FlightDelayModel:
    """Fits both bases in the boosting stage, their rounds shown as they go."""
    with progress.stage("boosting", total=2 * rounds, unit="rounds") as advance:
        return fit_bases(
            arrays["features"],
            arrays["label"],
            contract,
            seed=seed,
            rounds=rounds,
            params=params,
            callbacks=[boosting_callback(advance)],
        )


def data_record(
    flights: DataFrame,
    usable: DataFrame,
    train_arrays: dict[str, np.ndarray],
    test_arrays: dict[str, np.ndarray],
    source: dict[str, Any] | None,
) -> dict[str, Any]:
    """What the artifact records of the data: the split, its sizes, the fingerprint, the nulls."""
    return {
        "split": {"train_months": "1-10", "test_months": "11-12"},
        "train_rows": len(train_arrays["label"]),
        "test_rows": len(test_arrays["label"]),
        "data": {**(source or {}), **fingerprint(usable)},
        "null_report": null_report(flights),
        "libraries": library_versions(),
    }


def holdout_predictions(
    model: FlightDelayModel, flights: DataFrame, *, max_rows: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the actual and predicted arrival delays of the test months' flights (capped as in training)."""
    _, test = split_by_time(flights.transform(trainable))
    cap = max_driver_rows() if max_rows is None else max_rows
    arrays, _ = feature_arrays(test, model.contract, cap, seed, "holdout")
    return arrays["label"], model.predict_features(arrays["features"])
