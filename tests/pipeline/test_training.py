"""Training in Spark: the same features as serving, an honest split, an artifact the API serves."""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from flask.testing import FlaskClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.testing import assertDataFrameEqual

from flight_delay.artifact import bundle_path, save_artifact
from flight_delay.context.definitions import CONTEXT_FEATURES
from flight_delay.features import FeatureContract
from flight_delay.pipeline.dataset import FLIGHTS_SCHEMA, conform_types, read_weather
from flight_delay.pipeline.features import fit_contract, with_features
from flight_delay.pipeline.training import (
    DRIVER_COPIES,
    capped,
    driver_sample,
    null_report,
    split_by_time,
    train_on_flights,
    trainable,
)
from tests.conftest import upload
from tests.factories import minimal_flight, synthetic_flights


def spark_flights(spark: SparkSession, frame: pd.DataFrame) -> DataFrame:
    """Turns a pandas flights table into a Spark DataFrame with the dataset's schema."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    as_text = spark.createDataFrame(
        [{k: (None if v is None else str(v)) for k, v in row.items()} for row in rows],
        schema=", ".join(f"{f.name} string" for f in FLIGHTS_SCHEMA.fields),
    )
    numeric = [f.name for f in FLIGHTS_SCHEMA.fields if f.dataType.typeName() in ("integer", "double")]
    return as_text.select(
        *[(as_text[c].cast("double") if c in numeric else as_text[c]).alias(c) for c in as_text.columns]
    ).transform(conform_types)


@pytest.fixture(scope="module")
def flights_frame() -> pd.DataFrame:
    """Synthetic flights with the awkward cases: unseen categories, nulls, cancelled, diverted."""
    frame = synthetic_flights(600, seed=7)
    frame.loc[0, ["dep_time", "arr_time", "dep_delay", "arr_delay", "air_time"]] = None  # cancelled
    frame.loc[1, ["arr_delay", "air_time"]] = None  # diverted
    frame.loc[2, "dep_delay"] = None
    frame.loc[3, "sched_dep_time"] = 0
    frame.loc[4, "sched_arr_time"] = 2359
    return frame


def test_spark_features_equal_serving_features(spark: SparkSession, flights_frame: pd.DataFrame) -> None:
    # The context as the service adds it to a flight, and as pipeline/context.py adds its columns.
    rng = np.random.default_rng(0)
    context = {
        name: np.where(rng.random(len(flights_frame)) < 0.2, np.nan, rng.normal(0, 9, len(flights_frame)))
        for name in CONTEXT_FEATURES
    }
    in_context = flights_frame.assign(**context)
    flights = spark_flights(spark, flights_frame).join(
        spark.createDataFrame(
            in_context[["id", *CONTEXT_FEATURES]].astype(object).where(in_context.notna(), None)
        ),
        "id",
    )
    contract = FeatureContract.fit(flights_frame[flights_frame["month"] <= 6])  # some values unseen
    records = in_context.astype(object).where(in_context.notna(), None).to_dict("records")

    served = contract.encode_flights(records)
    expected = spark.createDataFrame(
        [
            (int(i), *[None if math.isnan(v) else float(v) for v in row])
            for i, row in zip(flights_frame["id"], served, strict=True)
        ],
        schema=", ".join(["id long", *[f"{n} double" for n in contract.feature_names]]),
    )
    trained = flights.transform(with_features(contract, keep=("id",))).withColumn(
        "id", flights["id"].cast("long")
    )

    assert np.isnan(served).any(), "the sample must exercise nulls and unseen categories"
    assertDataFrameEqual(trained, expected)


def test_contract_fitted_in_spark_equals_contract_fitted_in_python(
    spark: SparkSession, flights_frame: pd.DataFrame
) -> None:
    assert fit_contract(spark_flights(spark, flights_frame)) == FeatureContract.fit(flights_frame)


def test_cleaning_drops_only_flights_without_a_target(
    spark: SparkSession, flights_frame: pd.DataFrame
) -> None:
    flights = spark_flights(spark, flights_frame)
    report = null_report(flights)

    assert report["outcomes"] == {"cancelled": 1, "diverted": 1, "arrived": 598}
    assert report["nulls_in_arrived"]["dep_delay"] == 1
    assert flights.transform(trainable).count() == 598


def test_split_is_by_time(spark: SparkSession, flights_frame: pd.DataFrame) -> None:
    train, valid, test = split_by_time(spark_flights(spark, flights_frame))

    assert {r["month"] for r in train.select("month").distinct().collect()} == set(range(1, 9))
    assert {r["month"] for r in valid.select("month").distinct().collect()} == {9, 10}
    assert {r["month"] for r in test.select("month").distinct().collect()} == {11, 12}


def test_trained_artifact_carries_metrics_and_serves(
    spark: SparkSession, flights_frame: pd.DataFrame, client: FlaskClient, tmp_path: Path
) -> None:
    model = train_on_flights(
        spark_flights(spark, flights_frame),
        read_weather(spark),
        rounds=30,
        params={"num_leaves": 7, "min_data_in_leaf": 5},
        source={"file": "synthetic"},
    )
    path = save_artifact(model, tmp_path / "model.pkl")

    metrics = model.metrics
    assert set(metrics) == {"test", "baselines", "bases", "shift"}
    assert set(metrics["baselines"]) == {"train_median", "train_mean", "dep_delay", "route_median"}
    assert metrics["test"]["mae"] < metrics["baselines"]["train_median"]["mae"]
    assert set(metrics["bases"]["at_departure"]["by"]["month"]) == {"11", "12"}
    assert model.before_departure is not None
    assert set(model.without_context) == {"at_departure", "before_departure"}
    assert model.contract.context_features == CONTEXT_FEATURES
    assert model.training["split"]["validation_months"] == "9-10"
    assert model.residual
    assert set(model.contract.ranges) == {"dep_delay", "distance"}
    assert model.training["data"]["rows"] == 598
    assert model.training["data"]["file"] == "synthetic"
    assert list(model.profile["bins"]) == [*model.contract.feature_names, "prediction"]
    training = model.training  # the profile covers the whole training window: boosted and validation months
    assert model.profile["flights"]["rows"] == training["train_rows"] + training["validation_rows"]
    assert pickle.loads(path.read_bytes()).contract == model.contract
    assert upload(client, path).status_code == 201
    response = client.post("/model/predict/", json=minimal_flight())
    assert response.status_code == 200
    assert upload(client, bundle_path(path)).get_json()["kind"] == "flight-delay/lightgbm"
    from_bundle = client.post("/model/predict/", json=minimal_flight())
    bundled_delay = from_bundle.get_json()["predictions"][0]["arr_delay"]
    assert bundled_delay == pytest.approx(response.get_json()["predictions"][0]["arr_delay"])
    expected = model.predict([minimal_flight()])[0]
    assert response.get_json()["predictions"][0]["arr_delay"] == pytest.approx(expected)


def test_above_the_cap_the_driver_gets_the_same_sample_on_any_partitioning(
    spark: SparkSession, flights_frame: pd.DataFrame
) -> None:
    flights = spark_flights(spark, flights_frame)

    one_partition = driver_sample(flights.coalesce(1), 100, seed=0)
    five_partitions = driver_sample(flights.repartition(5), 100, seed=0)
    other_seed = driver_sample(flights, 100, seed=1)

    assert 90 <= one_partition.count() <= 100
    assertDataFrameEqual(one_partition, five_partitions)
    ids = {row["id"] for row in one_partition.select("id").collect()}
    assert ids != {row["id"] for row in other_seed.select("id").collect()}


def test_what_reaches_the_driver_is_counted_and_logged(
    spark: SparkSession, flights_frame: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    flights = spark_flights(spark, flights_frame)
    caplog.set_level(logging.INFO, logger="flight_delay.pipeline.training")

    kept, report = capped(flights, 100, seed=0, name="train")
    whole, whole_report = capped(flights, 600, seed=0, name="test")

    rows = kept.count()
    # Every column reaches the driver as float64, held about DRIVER_COPIES times while converted.
    assert report == {
        "rows": 600,
        "kept": rows,
        "sampled": True,
        "estimated_bytes": rows * 21 * 8 * DRIVER_COPIES,
    }
    assert f"train: {rows} of 600 rows to the driver (max 100), about " in caplog.text
    assert whole is flights
    assert whole_report["sampled"] is False
    assert whole_report["kept"] == 600
    with pytest.raises(ValueError, match="below one hash bucket"):
        capped(flights, 0, seed=0, name="train")


def test_training_takes_at_most_train_max_driver_rows(
    spark: SparkSession, flights_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAIN_MAX_DRIVER_ROWS", "200")

    model = train_on_flights(
        spark_flights(spark, flights_frame),
        read_weather(spark),
        rounds=10,
        params={"num_leaves": 7, "min_data_in_leaf": 5},
    )

    driver = model.training["driver"]
    assert driver["max_rows"] == 200
    arrived_by_august = flights_frame["arr_delay"].notna() & (flights_frame["month"] <= 8)
    assert driver["train before_departure"]["rows"] == arrived_by_august.sum()
    assert driver["train before_departure"]["sampled"] is True
    assert model.training["train_rows"] == driver["train before_departure"]["kept"] <= 200
    assert driver["test before_departure"]["kept"] == model.training["test_rows"] <= 200
