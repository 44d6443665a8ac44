"""In-process timings, without HTTP: our predict path and its stages against a raw booster.predict."""

from __future__ import annotations

import functools
import json
import secrets
import threading
import time
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import marshmallow as ma
import numpy as np
from flask import Flask
from werkzeug.test import Client

from flight_delay.api import create_app
from flight_delay.api.schemas import PredictRequestSchema, PredictResponseSchema
from flight_delay.artifact import FlightDelayModel
from flight_delay.config import load_config
from flight_delay.extensions import registry
from flight_delay.history.database import Database
from flight_delay.history.models import utcnow
from flight_delay.history.repository import insert_predictions
from flight_delay.history.writer import HistoryWriter
from flight_delay.server import prepare
from flight_delay.serving.predictions import FlightInput, missing_fields
from flight_delay.serving.registry import ActiveModel

SYNCHRONOUS_MODES = ("FULL", "NORMAL", "OFF")
RAW_ROW = "raw booster.predict (prepared row, num_threads=1)"
RAW_MATRIX = "raw booster.predict (prepared matrix, num_threads=1)"
PREDICT_PATH = "our predict path (payload to prediction)"
# One instance, as the view's @blp.response holds (building a schema costs more than the dump).
RESPONSE_SCHEMA = PredictResponseSchema()


def per_call(fn: Callable[[], Any], repeat: int = 25, budget: float = 0.03) -> float:
    """Seconds per call of fn: the best of `repeat` short runs (short, so some land in quiet moments)."""
    fn()  # warm caches (compiled SQL, imports) before timing
    once = max(timeit.timeit(fn, number=1), 1e-7)
    number = max(1, int(budget / once))
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def best_interleaved(calls: dict[str, Callable[[], Any]], rounds: int = 5) -> dict[str, float]:
    """Seconds per call of each, best of `rounds` rounds that visit every call in turn.

    Interleaving spreads a busy machine's quiet and loud moments over all of them, so their
    ratios hold better than when each is timed in a block of its own.
    """
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, fn in calls.items():
            best[name] = min(best[name], per_call(fn, repeat=5))
    return best


def app_config(data_dir: Path, model_path: Path, synchronous: str = "FULL") -> dict[str, Any]:
    """Production configuration over a folder of its own (SQLite file, model store, an admin token)."""
    return {
        "ENV": "production",
        "ML_API_ADMIN_TOKEN": secrets.token_hex(32),  # production refuses to start without one
        "DATA_DIR": data_dir,
        "DATABASE_URL": f"sqlite:///{data_dir / 'flight_delay.db'}",
        "MODEL_STORE_DIR": data_dir / "models",
        "DEFAULT_MODEL_PATH": model_path,
        "SQLITE_SYNCHRONOUS": synchronous,
        "LOG_LEVEL": "WARNING",
    }


def make_app(data_dir: Path, model_path: Path, synchronous: str = "FULL") -> Flask:
    """Migrates, activates the model and builds the app, as `flight-delay serve` does per worker."""
    config = app_config(data_dir, model_path, synchronous)
    prepare(load_config(environ={}, **config))
    return create_app(config)


def history_rows(version: str, flights: list[FlightInput], predicted: np.ndarray) -> list[dict[str, Any]]:
    """Builds history rows as the prediction service does."""
    created_at = utcnow()
    request_id = uuid.uuid4().hex
    return [
        {
            "created_at": created_at,
            "request_id": request_id,
            "model_version": version,
            "input": flight.payload,
            "arr_delay": float(value),
            "latency_ms": 1.0,
        }
        for flight, value in zip(flights, predicted.tolist(), strict=True)
    ]


def recorder(
    db: Database, version: str, flights: list[FlightInput], predicted: np.ndarray
) -> Callable[[], Any]:
    """Returns a call that records the flights in a transaction of their own (no group commit)."""

    def record() -> list[int]:
        return insert_predictions(db, history_rows(version, flights, predicted))

    return record


def served_recorder(
    db: Database, version: str, flights: list[FlightInput], predicted: np.ndarray
) -> Callable[[], Any]:
    """Returns a call that records the flights as the service does (HistoryWriter: group commit)."""
    writer = HistoryWriter(db)
    return lambda: writer.record(history_rows(version, flights, predicted))


@dataclass
class Pipeline:
    """The pieces of one predict request for one payload, so that each stage can be timed alone."""

    body: str
    schema: PredictRequestSchema
    flights: list[FlightInput]
    values: list[dict[str, Any]]
    active: ActiveModel

    @classmethod
    def of(cls, payload: Any) -> Pipeline:
        """Parses the payload once and looks up the active model once."""
        schema = PredictRequestSchema()
        flights = [FlightInput(**flight) for flight in schema.load(payload)["flights"]]
        return cls(json.dumps(payload), schema, flights, [f.values for f in flights], registry.active())

    @property
    def model(self) -> FlightDelayModel:
        """The project's artifact behind the active model."""
        return self.active.model.model

    @functools.cached_property
    def features(self) -> np.ndarray:
        """The flights' feature matrix, encoded once."""
        return self.model.contract.encode_flights(self.values)

    @functools.cached_property
    def predicted(self) -> np.ndarray:
        """The booster's predictions for the flights, made once."""
        return self.model.predict_features(self.features)

    def response(self) -> dict[str, Any]:
        """The answer the view would dump for these predictions."""
        return {
            "model_version": self.active.version,
            "request_id": "x",
            "predictions": [{"history_id": i, "arr_delay": float(p)} for i, p in enumerate(self.predicted)],
        }

    def validate(self, marshmallow_only: bool = False) -> list[FlightInput]:
        """JSON decoding and validation as the view does it, or through marshmallow alone."""
        data = json.loads(self.body)
        # marshmallow_only: the schema's load without msgspec's fast load (what validation costs without it).
        loaded = ma.Schema.load(self.schema, data) if marshmallow_only else self.schema.load(data)
        return [FlightInput(**flight) for flight in loaded["flights"]]

    def predict_path(self, with_lookup: bool = True) -> np.ndarray:
        """Payload to prediction: validation, active model, field checks, encoding, booster."""
        flights = self.validate()
        active = registry.active() if with_lookup else self.active
        missing_fields(active.model, flights)
        return active.model.predict([f.values for f in flights])


def single_flight_stages(app: Flask, flight: dict[str, Any], row: np.ndarray) -> dict[str, float]:
    """Times each stage of one single-flight request in process (seconds per call)."""
    pipe = Pipeline.of(flight)
    model, predicted, response = pipe.model, pipe.predicted, pipe.response()
    db = app.extensions["flight_delay.db"]
    return best_interleaved(
        {
            RAW_ROW: lambda: model.booster.predict(row, num_threads=1),
            "raw booster.predict (prepared row, OpenMP's default threads)": lambda: model.booster.predict(
                row
            ),
            "JSON decode + validation, marshmallow alone (before)": lambda: pipe.validate(True),
            "JSON decode + validation, msgspec fast load (as served)": pipe.validate,
            "active-model lookup (registry.active)": registry.active,
            "field checks (missing_fields)": lambda: missing_fields(pipe.active.model, pipe.flights),
            "encoding (contract.encode_flights)": lambda: model.contract.encode_flights(pipe.values),
            "history INSERT + COMMIT (FULL)": served_recorder(
                db, pipe.active.version, pipe.flights, predicted
            ),
            "response dump (schema + JSON)": lambda: json.dumps(RESPONSE_SCHEMA.dump(response)),
            PREDICT_PATH: pipe.predict_path,
            "our predict path, active model not looked up": lambda: pipe.predict_path(with_lookup=False),
            "whole request through Flask's view (no HTTP)": post_json(app, pipe.body),
        }
    )


def history_write_by_mode(folder: Path, model_path: Path, flight: dict[str, Any]) -> dict[str, float]:
    """Times one history write (INSERT + COMMIT of one row) under each SQLITE_SYNCHRONOUS mode."""
    timings = {}
    for mode in SYNCHRONOUS_MODES:
        app = make_app(folder / f"sync-{mode.lower()}", model_path, mode)
        pipe = Pipeline.of(flight)
        db = app.extensions["flight_delay.db"]
        record = recorder(db, pipe.active.version, pipe.flights, pipe.predicted)
        timings[mode] = per_call(record)
    return timings


def calls_per_second(work: Callable[[], Any], threads: int, seconds: float) -> float:
    """Runs `work` in a loop on `threads` threads for `seconds`; returns completed calls per second."""
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def loop(slot: int) -> None:
        while time.perf_counter() < deadline:
            work()
            counts[slot] += 1

    started = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def concurrent_writes(app: Flask, flight: dict[str, Any], threads: int, seconds: float) -> dict[str, float]:
    """History writes per second from `threads` request threads: as today, behind a lock, group commit."""
    pipe = Pipeline.of(flight)
    predicted = pipe.predicted
    db = app.extensions["flight_delay.db"]
    record = recorder(db, pipe.active.version, pipe.flights, predicted)
    lock = threading.Lock()

    def locked() -> None:
        with lock:
            record()

    grouped = served_recorder(db, pipe.active.version, pipe.flights, predicted)
    return {
        "1 thread: one transaction per request": calls_per_second(record, 1, seconds),
        f"{threads} threads: one transaction per request": calls_per_second(record, threads, seconds),
        f"{threads} threads: the same behind a process-wide lock": calls_per_second(locked, threads, seconds),
        f"{threads} threads: group commit (HistoryWriter, as served)": calls_per_second(
            grouped, threads, seconds
        ),
    }


def batch_stages(app: Flask, flights: list[dict[str, Any]]) -> dict[str, float]:
    """Times each stage of one batch request in process (seconds per call, best of 3)."""
    pipe = Pipeline.of({"flights": flights})
    model, features, predicted, response = pipe.model, pipe.features, pipe.predicted, pipe.response()
    db = app.extensions["flight_delay.db"]
    return {
        RAW_MATRIX: per_call(lambda: model.booster.predict(features, num_threads=1), repeat=9),
        "JSON decode + validation (as served)": per_call(pipe.validate, repeat=3),
        "encoding (contract.encode_flights)": per_call(
            lambda: model.contract.encode_flights(pipe.values), repeat=3
        ),
        "history INSERT + COMMIT (FULL)": per_call(
            recorder(db, pipe.active.version, pipe.flights, predicted), repeat=3
        ),
        "field checks (missing_fields)": per_call(
            lambda: missing_fields(pipe.active.model, pipe.flights), repeat=3
        ),
        "response dump (schema + JSON)": per_call(
            lambda: json.dumps(RESPONSE_SCHEMA.dump(response)), repeat=3
        ),
        "whole request, Flask's view": per_call(post_json(app, pipe.body), repeat=3),
    }


def post_json(app: Flask, body: str) -> Callable[[], Any]:
    """Returns a call that posts a JSON body to /model/predict/ in process, through Flask's view."""
    client = Client(app.wsgi_app, app.response_class)

    def post() -> None:
        answer = client.post("/model/predict/", data=body, content_type="application/json")
        if answer.status_code != 200:
            raise RuntimeError(
                f"in-process predict answered {answer.status_code}: {answer.get_data(as_text=True)}"
            )

    return post
