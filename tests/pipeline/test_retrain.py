"""flight-delay retrain: the flights file and the recorded flights with actuals; stored, replayed, judged."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession

from flight_delay.api import create_app
from flight_delay.artifact import bundle_path
from flight_delay.cli import main
from flight_delay.features import DATASET_COLUMNS, INPUT_FIELDS
from flight_delay.pipeline.retrain import dataset_row, verdict
from flight_delay.serving.loader import artifact_version, read_model
from tests.conftest import upload
from tests.factories import ADMIN_HEADERS, synthetic_flights

RECORDED = 80


def served_with_actuals(app_config: dict[str, Any], model: Path) -> None:
    """A server's history: RECORDED flights answered by the model, each with its actual delay posted."""
    client = create_app(app_config).test_client()
    assert upload(client, model).status_code == 201
    table = synthetic_flights(RECORDED, seed=21)
    flights = json.loads(table[list(INPUT_FIELDS)].to_json(orient="records"))
    answered = client.post("/model/predict/", json={"flights": flights}).get_json()["predictions"]
    actuals = [
        {"history_id": p["history_id"], "arr_delay": float(a)}
        for p, a in zip(answered, table["arr_delay"], strict=True)
    ]
    assert client.post("/model/actuals/", json={"actuals": actuals}, headers=ADMIN_HEADERS).status_code == 200


def test_retrain_trains_on_both_stores_a_candidate_replays_it_and_activates_it_when_asked(
    spark: SparkSession, app_config: dict[str, Any], model_files: Any, tmp_path: Path
) -> None:
    served_with_actuals(app_config, model_files(0))
    data = tmp_path / "airports-database.csv"
    synthetic_flights(400, seed=11).to_csv(data, index=False)
    out = tmp_path / "retrained.pkl"
    env = {
        "DATABASE_URL": app_config["DATABASE_URL"],
        "DATA_DIR": str(app_config["DATA_DIR"]),
        "MODEL_STORE_DIR": str(tmp_path / "cli-models"),
    }

    arguments = ["retrain", "--data", str(data), "--out", str(out), "--days", "1", "--rounds", "10"]
    result = CliRunner().invoke(main, [*arguments, "--activate-if-better", "-1000"], env=env)

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    version = artifact_version(bundle_path(out).read_bytes())
    assert report["candidate"]["version"] == version
    assert (report["recorded_flights"], report["flights"], report["activated"]) == (RECORDED, RECORDED, True)
    training = read_model(bundle_path(out).read_bytes()).describe()["training"]
    assert training["train_rows"] + training["validation_rows"] + training["test_rows"] == 400 + RECORDED
    client = create_app(app_config).test_client()
    assert client.get("/model/").get_json()["version"] == version
    audit = client.get("/model/audit/").get_json()["events"][-2:]
    assert [(e["action"], e["version"], e["by"]) for e in audit] == [
        ("upload", version, f"cli:{getpass.getuser()}"),
        ("activate", version, f"cli:{getpass.getuser()}"),
    ]
    assert audit[1]["reason"].startswith("retrain: replayed MAE")


@pytest.mark.parametrize(
    ("candidate", "served", "margin", "activated"),
    [(10.0, 12.0, 1.5, True), (10.0, 12.0, 2.5, False), (12.0, 10.0, 0.0, False), (10.0, 12.0, None, False)],
)
def test_the_verdict_asks_the_replayed_mae_to_beat_the_served_one_by_the_margin(
    candidate: float, served: float, margin: float | None, activated: bool
) -> None:
    result = {"flights": 10, "candidate": {"mae": candidate}, "served": {"mae": served}}

    assert verdict(result, margin).activate is activated


def test_no_recorded_flight_activates_nothing() -> None:
    empty = {"flights": 0, "candidate": {"mae": None}, "served": {"mae": None}}

    assert verdict(empty, 0.0).activate is False


def test_a_recorded_flight_becomes_a_dataset_row_that_arrived() -> None:
    flight = {
        "year": 2013,
        "month": 7,
        "day": 4,
        "sched_dep_time": 700,
        "sched_arr_time": 1005,
        "carrier": "AA",
    }

    row = dict(zip([c.name for c in DATASET_COLUMNS], dataset_row(flight, 12.0), strict=True))

    assert (row["arr_delay"], row["dep_time"], row["arr_time"]) == (12.0, 700.0, 1005.0)
    assert (row["carrier"], row["month"], row["tailnum"]) == ("AA", 7.0, None)
