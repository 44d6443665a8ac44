"""In-process timings, without HTTP: our predict path and its stages against a raw booster.predict."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import time
import timeit
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask
from werkzeug.test import Client

from bench import payloads
from flight_delay.api import create_app
from flight_delay.api.services import services_of
from flight_delay.artifact import FlightDelayModel
from flight_delay.config import load_config
from flight_delay.context.serving import in_context
from flight_delay.context.state import ContextState
from flight_delay.history.database import Database
from flight_delay.history.models import utcnow
from flight_delay.history.repository import insert_predictions
from flight_delay.history.writer import HistoryWriter
from flight_delay.server import prepare
from flight_delay.serving.predictions import ScoredFlights, missing_fields
from flight_delay.serving.registry import ActiveModel, ModelRegistry
from flight_delay.transport import native
from flight_delay.transport.asgi import asgi_app
from flight_delay.validation import FlightInput, batch_items, checked_flights

SYNCHRONOUS_MODES = ("FULL", "NORMAL", "OFF")
RAW_ROW = "raw booster.predict (prepared row, num_threads=1)"
RAW_MATRIX = "raw booster.predict (prepared matrix, num_threads=1)"
PREDICT_PATH = "our predict path (payload to prediction)"
NATIVE_ASGI = "whole request, native route through the ASGI app (no HTTP)"
V2_ASGI = "whole request, V2 infer through the ASGI app (no HTTP)"
# One loop for every timed coroutine: a new loop per call would cost more than what is timed.
LOOP = asyncio.new_event_loop()


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


def post_context(app: Flask, flights: list[dict[str, Any]], weather: list[dict[str, Any]]) -> None:
    """Posts flights and weather to the in-process app, as the servers measured are posted them."""
    client, token = app.test_client(), app.config["ML_API_ADMIN_TOKEN"]
    for path, key, items in (("/flights/", "flights", flights), ("/weather/", "observations", weather)):
        answer = client.post(path, json={key: items}, headers={"Authorization": f"Bearer {token}"})
        if answer.status_code != 200:
            raise RuntimeError(f"POST {path}: {answer.status_code} {answer.get_data(as_text=True)[:300]}")


def context_of(context: ContextState, values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The flights' values with their context added, from the worker's index (refreshed if stale)."""
    return in_context(values, context.current() or context.refresh(), utcnow()).values


def history_rows(
    version: str, flights: list[FlightInput], predicted: np.ndarray, features: list[Any]
) -> list[dict[str, Any]]:
    """Builds history rows as the prediction service does (with the features the model read)."""
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
            "features": read,
        }
        for flight, value, read in zip(flights, predicted.tolist(), features, strict=True)
    ]


def recorder(db: Database, pipe: Pipeline) -> Callable[[], Any]:
    """Returns a call that records the flights in a transaction of their own (no group commit)."""

    def record() -> list[int]:
        return insert_predictions(db, pipe.history_rows())

    return record


def served_recorder(writer: HistoryWriter, pipe: Pipeline) -> Callable[[], Any]:
    """Returns a call that records the flights as the service does (its writer: group commit)."""
    return lambda: LOOP.run_until_complete(writer.record(pipe.history_rows()))


@dataclass
class Pipeline:
    """The pieces of one predict request for one payload, so that each stage can be timed alone."""

    body: str
    flights: list[FlightInput]
    values: list[dict[str, Any]]
    registry: ModelRegistry
    active: ActiveModel
    context: ContextState

    @classmethod
    def of(cls, app: Flask, payload: Any) -> Pipeline:
        """Checks the payload once, looks up the active model once, adds the flights' context once."""
        flights = checked_flights(*batch_items(payload))
        registry, context = services_of(app).registry, services_of(app).context
        values = context_of(context, [f.values for f in flights])  # as the service scores them
        return cls(json.dumps(payload), flights, values, registry, registry.active(), context)

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

    @functools.cached_property
    def recorded(self) -> list[Any]:
        """The features as the history records them (made once, as scoring makes them)."""
        return self.features.tolist()

    def history_rows(self) -> list[dict[str, Any]]:
        """The history rows of the flights, as the service writes them."""
        return history_rows(self.active.version, self.flights, self.predicted, self.recorded)

    def answer(self) -> Any:
        """The answer the native route renders for these predictions."""
        predictions = [
            {"history_id": i, "arr_delay": float(p), "basis": "at_departure"}
            for i, p in enumerate(self.predicted)
        ]
        return ScoredFlights(self.active.version, "x", predictions)

    def validate(self) -> list[FlightInput]:
        """JSON decoding and the one check of the flights, as the data plane does them."""
        return checked_flights(*batch_items(native.parsed_json(self.body.encode())))

    def predict_path(self, with_lookup: bool = True) -> np.ndarray:
        """Payload to prediction: validation, model, field checks, context, encoding, booster, features."""
        flights = self.validate()
        active = self.registry.active() if with_lookup else self.active
        missing_fields(active.model, flights)
        return active.model.predict_recorded(context_of(self.context, [f.values for f in flights]))[0]


def single_flight_stages(app: Flask, flight: dict[str, Any], row: np.ndarray) -> dict[str, float]:
    """Times each stage of one single-flight request in process (seconds per call)."""
    pipe = Pipeline.of(app, flight)
    model, scored = pipe.model, pipe.answer()
    writer = services_of(app).writer
    front = asgi_app(app)
    return best_interleaved(
        {
            RAW_ROW: lambda: model.booster.predict(row, num_threads=1),
            "raw booster.predict (prepared row, OpenMP's default threads)": lambda: model.booster.predict(
                row
            ),
            "JSON decode + validation (the one compiled check)": pipe.validate,
            "active-model lookup (registry.active)": pipe.registry.active,
            "field checks (missing_fields)": lambda: missing_fields(pipe.active.model, pipe.flights),
            "context lookup (in_context, from the worker's index)": lambda: context_of(
                pipe.context, [pipe.flights[0].values]
            ),
            "encoding (contract.encode_flights)": lambda: model.contract.encode_flights(pipe.values),
            "history INSERT + COMMIT (FULL), through the writer": served_recorder(writer, pipe),
            "answer rendering (native.answer)": lambda: native.answer(scored),
            PREDICT_PATH: pipe.predict_path,
            "our predict path, active model not looked up": lambda: pipe.predict_path(with_lookup=False),
            NATIVE_ASGI: asgi_post(front, "/model/predict/", pipe.body.encode()),
            V2_ASGI: asgi_post(
                front, "/v2/models/flight-delay/infer", json.dumps(payloads.v2_columns([flight])).encode()
            ),
            "whole request through Flask's view (no HTTP)": post_json(app, pipe.body),
        }
    )


def history_write_by_mode(folder: Path, model_path: Path, flight: dict[str, Any]) -> dict[str, float]:
    """Times one history write (INSERT + COMMIT of one row) under each SQLITE_SYNCHRONOUS mode."""
    timings = {}
    for mode in SYNCHRONOUS_MODES:
        app = make_app(folder / f"sync-{mode.lower()}", model_path, mode)
        pipe = Pipeline.of(app, flight)
        timings[mode] = per_call(recorder(services_of(app).db, pipe))
    return timings


def requests_per_second(record: Callable[[], Any], concurrent: int, seconds: float) -> float:
    """Runs `concurrent` requests at a time on one event loop for `seconds`; completed per second."""

    async def client(deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            await record()
            done += 1
        return done

    async def clients() -> int:
        deadline = time.perf_counter() + seconds
        return sum(await asyncio.gather(*(client(deadline) for _ in range(concurrent))))

    started = time.perf_counter()
    done = LOOP.run_until_complete(clients())
    return done / (time.perf_counter() - started)


def concurrent_writes(
    app: Flask, flight: dict[str, Any], concurrent: int, seconds: float
) -> dict[str, float]:
    """History writes per second: one transaction per request, then the writer's group commit."""
    pipe = Pipeline.of(app, flight)
    db, writer = services_of(app).db, services_of(app).writer

    async def alone() -> None:
        await asyncio.to_thread(insert_predictions, db, pipe.history_rows())

    async def grouped() -> None:
        await writer.record(pipe.history_rows())

    return {
        "1 request at a time: one transaction each": requests_per_second(alone, 1, seconds),
        f"{concurrent} at a time: one transaction each (threads)": requests_per_second(
            alone, concurrent, seconds
        ),
        f"{concurrent} at a time: group commit (the writer, as served)": requests_per_second(
            grouped, concurrent, seconds
        ),
    }


def batch_stages(app: Flask, flights: list[dict[str, Any]]) -> dict[str, float]:
    """Times each stage of one batch request in process (seconds per call, best of 3)."""
    pipe = Pipeline.of(app, {"flights": flights})
    model, features, scored = pipe.model, pipe.features, pipe.answer()
    db = services_of(app).db
    front = asgi_app(app)
    return {
        RAW_MATRIX: per_call(lambda: model.booster.predict(features, num_threads=1), repeat=9),
        "JSON decode + validation (as served)": per_call(pipe.validate, repeat=3),
        "encoding (contract.encode_flights)": per_call(
            lambda: model.contract.encode_flights(pipe.values), repeat=3
        ),
        "history INSERT + COMMIT (FULL)": per_call(recorder(db, pipe), repeat=3),
        "field checks (missing_fields)": per_call(
            lambda: missing_fields(pipe.active.model, pipe.flights), repeat=3
        ),
        "answer rendering (native.answer)": per_call(lambda: native.answer(scored), repeat=3),
        "whole request, native route (ASGI, no HTTP)": per_call(
            asgi_post(front, "/model/predict/", pipe.body.encode()), repeat=3
        ),
        "whole request, V2 infer (ASGI, no HTTP)": per_call(
            asgi_post(
                front, "/v2/models/flight-delay/infer", json.dumps(payloads.v2_columns(flights)).encode()
            ),
            repeat=3,
        ),
    }


def asgi_post(front: Any, path: str, body: bytes) -> Callable[[], Any]:
    """Returns a call that posts a JSON body through the ASGI app in process, and checks it is a 200."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def once() -> None:
        sent: list[dict[str, Any]] = []
        received = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            return received.pop() if received else {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await front(dict(scope), receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(
                f"in-process {path} answered {sent[0]['status']}: {sent[-1].get('body', b'')[:300]!r}"
            )

    return lambda: LOOP.run_until_complete(once())


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
