"""One definition of each context feature: Spark's (training) and the service's (serving) agree.

First Spark against the definitions themselves on synthetic days around a daylight-saving change;
then a real server, fed a few days of real flights and weather over HTTP, against Spark on the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from flight_delay.context.definitions import CONTEXT_FEATURES, DEFAULT_LEAD_S, WEATHER_FIELDS, flight_facts
from flight_delay.context.ingestion import moment
from flight_delay.data.nycflights import build_dataset, frame_records, load_table
from flight_delay.pipeline.context import with_context
from flight_delay.pipeline.dataset import FLIGHTS_SCHEMA
from flight_delay.training.lightgbm_trainer import context_index
from tests.context_data import synthetic_context
from tests.factories import ADMIN_HEADERS
from tests.pipeline.test_training import spark_flights
from tests.servers import RunningServer, serve_with_model

KEY = ("flight", "basis")
# Real days around 2013-11-03, when New York fell back an hour.
REAL_DAYS = ((11, 2), (11, 3), (11, 4))


def dataset_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Flight records in the dataset's columns (absent ones null)."""
    frame = pd.DataFrame.from_records(records)
    for field in FLIGHTS_SCHEMA.fields:
        if field.name not in frame:
            frame[field.name] = None
    frame["id"] = range(len(frame))
    frame["name"] = "An Airline"
    frame["time_hour"] = "2013-01-01T10:00:00Z"
    return frame[[f.name for f in FLIGHTS_SCHEMA.fields]]


def spark_weather(spark: SparkSession, observations: list[dict[str, Any]]) -> DataFrame:
    """Observations as the pipeline reads them: every weather column, time_hour a timestamp."""
    frame = pd.DataFrame.from_records(observations)
    for name in WEATHER_FIELDS:
        frame[name] = frame.get(name, np.nan)
    rows = frame[["origin", "time_hour", *WEATHER_FIELDS]].astype(object).where(frame.notna(), None)
    schema = ", ".join(["origin string", "time_hour string", *(f"{n} double" for n in WEATHER_FIELDS)])
    return spark.createDataFrame(rows.to_dict("records"), schema=schema).withColumn(
        "time_hour", F.to_timestamp("time_hour")
    )


def spark_features(flights: DataFrame, weather: DataFrame) -> DataFrame:
    """Spark's context of every flight, before departure and at departure."""
    rows = flights.transform(with_context(weather, lambda facts: facts, DEFAULT_LEAD_S))
    return rows.select(
        F.col("flight").cast("long"), "basis", *[F.col(n).cast("double") for n in CONTEXT_FEATURES]
    )


def expected_frame(spark: SparkSession, answers: list[tuple[int, str, tuple[float, ...]]]) -> DataFrame:
    """The service's (or the definitions') features as a DataFrame to compare with Spark's."""
    schema = ", ".join(["flight long", "basis string", *(f"{n} double" for n in CONTEXT_FEATURES)])
    rows = [
        (f, b, *[None if v is None or np.isnan(v) else float(v) for v in values]) for f, b, values in answers
    ]
    return spark.createDataFrame(rows, schema=schema)


def questions(records: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], str, int]]:
    """Each flight before departure (the lead before its schedule) and, if it left, at its departure."""
    for record in records:
        facts = flight_facts(record)
        yield record, "before_departure", facts.scheduled - DEFAULT_LEAD_S
        if facts.departed is not None:
            yield record, "at_departure", facts.departed


@pytest.mark.parametrize("seed", [0, 5])
def test_spark_computes_the_definitions(spark: SparkSession, seed: int) -> None:
    records, observations, _ = synthetic_context(seed, count=300)
    index = context_index(dataset_frame(records), pd.DataFrame.from_records(observations))

    expected = [
        (r["flight"], basis, index.context(r, as_of).features) for r, basis, as_of in questions(records)
    ]
    flights = spark_flights(spark, dataset_frame(records))

    assertDataFrameEqual(
        spark_features(flights, spark_weather(spark, observations)),
        expected_frame(spark, expected),
        rtol=1e-9,
    )


@pytest.fixture
def real_days() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Real flights and weather of REAL_DAYS (numbered so that the flight number is a key)."""
    flights, weather = build_dataset(), load_table("weather")

    def of_days(frame: pd.DataFrame) -> pd.Series:
        """The rows of REAL_DAYS."""
        return pd.Series(list(zip(frame["month"], frame["day"], strict=True)), index=frame.index).isin(
            REAL_DAYS
        )

    days = flights[of_days(flights)].copy()
    days["flight"] = range(len(days))  # one key per flight, whatever the carrier and day
    return days.reset_index(drop=True), weather[of_days(weather)].reset_index(drop=True)


@pytest.mark.slow
def test_a_running_service_uses_the_context_spark_trains_with(
    spark: SparkSession,
    real_days: tuple[pd.DataFrame, pd.DataFrame],
    tmp_path: Path,
    database_url: str,
    model_files: Callable[[int], Path],
) -> None:
    flights, weather = real_days
    records = frame_records(flights)
    with serve_with_model(
        tmp_path / "data", database_url, model_files(0), CONTEXT_RETENTION_H="240"
    ) as server:
        served = served_features(server, records, frame_records(weather))
    on_spark = spark_features(spark_flights(spark, flights), spark_weather(spark, frame_records(weather)))

    assert len(served) == flights["dep_delay"].notna().sum() + len(flights)
    assertDataFrameEqual(on_spark, expected_frame(spark, served), rtol=1e-9)


def served_features(
    server: RunningServer, records: list[dict[str, Any]], observations: list[dict[str, Any]]
) -> list[tuple[int, str, tuple[float, ...]]]:
    """Posts the flights and weather, asks each flight's predictions, and reads the context they used."""
    for path, key, items in (("/flights/", "flights", records), ("/weather/", "observations", observations)):
        response = requests.post(f"{server.url}{path}", json={key: items}, headers=ADMIN_HEADERS, timeout=120)
        assert response.status_code == 200, response.text
    asked = [(record, basis, as_of) for record, basis, as_of in questions(records)]
    batch = [
        {
            **{k: record[k] for k in ASKED},
            "dep_delay": record["dep_delay"] if basis == "at_departure" else None,
            "as_of": moment(as_of).isoformat(),
        }
        for record, basis, as_of in asked
    ]
    answer = requests.post(f"{server.url}/model/predict/", json={"flights": batch}, timeout=300)
    assert answer.status_code == 200, answer.text
    found = []
    for (record, basis, _), prediction in zip(asked, answer.json()["predictions"], strict=True):
        assert prediction["context"]["used"] is True, prediction["context"]
        values = tuple(prediction["context"]["features"][name] for name in CONTEXT_FEATURES)
        found.append((record["flight"], basis, tuple(np.nan if v is None else v for v in values)))
    return found


ASKED = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "distance", "carrier", "origin", "dest")
ASKED += ("tailnum", "flight")
