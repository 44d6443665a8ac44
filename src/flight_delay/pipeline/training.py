"""Training with Spark: clean, split by time, build the contract's features, fit LightGBM, measure.

Spark does the data work (it scales past one machine); the feature matrix of ~330k rows is then
small enough for LightGBM on the driver. On a cluster the same features would feed a distributed
LightGBM (SynapseML) without changing the contract.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from flight_delay.artifact import FlightDelayModel
from flight_delay.features import INPUT_FIELDS, TARGET, FeatureContract
from flight_delay.pipeline.features import fit_contract, with_features
from flight_delay.pipeline.profile import profile_flights
from flight_delay.progress import Progress, boosting_callback
from flight_delay.training.lightgbm_trainer import fit_booster, holdout_metrics, library_versions

TEST_MONTHS = (11, 12)
DEFAULT_ROUNDS = 400
# The stages train_on_flights reports; `flight-delay train` adds its own last one, "save".
STAGES = ("features", "boosting", "metrics", "fingerprint")


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


def feature_arrays(flights: DataFrame, contract: FeatureContract) -> dict[str, np.ndarray]:
    """Builds the contract's features in Spark and brings them to the driver as arrays."""
    frame = flights.transform(with_features(contract, keep=(TARGET,))).toPandas()
    return {
        "features": frame[list(contract.feature_names)].to_numpy(dtype=np.float64),
        "label": frame[TARGET].to_numpy(dtype=np.float64),
        "dep_delay": frame["dep_delay"].to_numpy(dtype=np.float64),
    }


def train_on_flights(
    flights: DataFrame,
    *,
    seed: int = 0,
    rounds: int = DEFAULT_ROUNDS,
    params: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> FlightDelayModel:
    """Trains the project's model from a flights DataFrame and measures it on the test months."""
    progress = progress or Progress("train", STAGES)
    usable = flights.transform(trainable).cache()
    try:
        train, test = split_by_time(usable)
        with progress.stage("features"):
            contract = fit_contract(train)
            train_arrays, test_arrays = feature_arrays(train, contract), feature_arrays(test, contract)
        booster = boosted(progress, train_arrays, contract, seed=seed, rounds=rounds, params=params)
        model = FlightDelayModel(
            booster, contract, profile=profile_flights(train, contract.input_fields).to_dict()
        )
        with progress.stage("metrics"):
            model.metrics = measure(model, train_arrays, test_arrays)
        with progress.stage("fingerprint"):
            model.training = {
                "engine": "spark",
                "seed": seed,
                "rounds": rounds,
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
) -> Any:
    """Fits the booster in the boosting stage, its rounds shown as they go."""
    with progress.stage("boosting", total=rounds, unit="rounds") as advance:
        return fit_booster(
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


def measure(
    model: FlightDelayModel, train_arrays: dict[str, np.ndarray], test_arrays: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Scores the model and the baselines on the test months (the mean baseline learnt on train)."""
    return holdout_metrics(
        test_arrays["label"],
        model.predict_features(test_arrays["features"]),
        float(train_arrays["label"].mean()),
        test_arrays["dep_delay"],
    )


def holdout_predictions(model: FlightDelayModel, flights: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Returns the actual and predicted arrival delays of the test months' flights."""
    _, test = split_by_time(flights.transform(trainable))
    arrays = feature_arrays(test, model.contract)
    return arrays["label"], model.predict_features(arrays["features"])
