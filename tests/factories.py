"""Builds tiny flights tables and models for tests, in milliseconds, with no committed binaries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import lightgbm as lgb
import numpy as np
import pandas as pd

from flight_delay.artifact import FlightDelayModel
from flight_delay.features import DATASET_COLUMNS, REFERENCE_FLIGHT, FeatureContract
from flight_delay.training.lightgbm_trainer import train_model

CARRIERS = ("UA", "AA", "DL", "B6", "EV")
AIRPORTS = ("EWR", "JFK", "LGA")
DESTS = ("IAH", "ATL", "ORD", "LAX", "SEA", "MIA")


def synthetic_flights(rows: int = 400, seed: int = 0) -> pd.DataFrame:
    """Makes a flights table with the dataset's columns and a learnable arrival delay."""
    rng = np.random.default_rng(seed)
    month = rng.integers(1, 13, rows)
    day = rng.integers(1, 29, rows)
    sched_dep = rng.integers(5, 23, rows) * 100 + rng.integers(0, 60, rows)
    sched_arr = (sched_dep + 300) % 2400
    dep_delay = np.round(rng.gamma(1.5, 15.0, rows) - 10.0)
    distance = rng.integers(200, 2600, rows).astype(float)
    carrier = rng.choice(CARRIERS, rows)
    arr_delay = dep_delay * 0.95 - 5 + (carrier == "EV") * 10 + rng.normal(0, 4, rows)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows),
            "year": 2013,
            "month": month,
            "day": day,
            "dep_time": sched_dep,
            "sched_dep_time": sched_dep,
            "dep_delay": dep_delay,
            "arr_time": sched_arr,
            "sched_arr_time": sched_arr,
            "arr_delay": np.round(arr_delay),
            "carrier": carrier,
            "flight": rng.integers(1, 5000, rows),
            "tailnum": "N14228",
            "origin": rng.choice(AIRPORTS, rows),
            "dest": rng.choice(DESTS, rows),
            "air_time": distance / 8.0,
            "distance": distance,
            "hour": sched_dep // 100,
            "minute": sched_dep % 100,
            "time_hour": "2013-01-01T10:00:00Z",
            "name": "An Airline",
        }
    )
    return frame[[c.name for c in DATASET_COLUMNS]]


def tiny_model(seed: int = 0, rows: int = 400) -> FlightDelayModel:
    """Trains the project's artifact on synthetic flights; another seed gives another model."""
    frame = synthetic_flights(rows, seed)
    test = frame["month"] >= 11
    return train_model(
        frame[~test],
        frame[test],
        seed=seed,
        rounds=15,
        params={"num_leaves": 7, "min_data_in_leaf": 5, "num_threads": 1},
    )


def basis_matrices(contract: FeatureContract, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The flights' features as each basis reads them: departed flights; every flight, dep_delay hidden."""
    return {basis: contract.encode(rows) for basis, rows in basis_frames(frame).items()}


def basis_frames(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The flights as each basis reads them, without context (what training's questions hold)."""
    return {
        "at_departure": frame[frame["dep_delay"].notna()],
        "before_departure": frame.assign(dep_delay=np.nan),
    }


def based_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Both bases' rows in one frame with a `basis` column, as pipeline/context.with_context gives them."""
    return pd.concat(
        [rows.assign(basis=basis) for basis, rows in basis_frames(frame).items()], ignore_index=True
    )


def write_pickle(obj: Any, path: Path) -> Path:
    """Cloudpickles an object to a file and returns the path."""
    path.write_bytes(cloudpickle.dumps(obj))
    return path


# The admin token every test server and app is configured with.
ADMIN_TOKEN = "test-admin-token"  # noqa: S105 - a test fixture, not a secret
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def tiny_regressor(features: list[str], seed: int = 0) -> lgb.LGBMRegressor:
    """Fits a bare LGBMRegressor on the given dataset columns (as a DataFrame, so names are kept)."""
    frame = synthetic_flights(300, seed)
    regressor = lgb.LGBMRegressor(n_estimators=10, num_leaves=7, min_child_samples=5, verbose=-1)
    return regressor.fit(frame[features], frame["arr_delay"])


def reference_flight(**changes: Any) -> dict[str, Any]:
    """Returns a copy of the reference flight with some fields changed."""
    return {**REFERENCE_FLIGHT, **changes}


def minimal_flight(**changes: Any) -> dict[str, Any]:
    """Returns only the fields the project's model reads, from the reference flight."""
    fields = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "dep_delay", "distance")
    flight = {name: REFERENCE_FLIGHT[name] for name in (*fields, "carrier", "origin", "dest")}
    return {**flight, **changes}
