"""Scores flights with the active model and records every prediction before it is returned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from flask import Flask

from flight_delay.errors import HistoryUnavailable, InvalidInput, UnscorableFlight
from flight_delay.history.database import Database
from flight_delay.history.host_writer import EventLoopWriterClient
from flight_delay.history.models import utcnow
from flight_delay.history.pg_loop_writer import postgres_loop_writer
from flight_delay.history.writer import EventLoopWriter, HistoryWriter
from flight_delay.loop_lock import LoopLock
from flight_delay.observability.metrics import (
    HISTORY_WRITE_FAILURES,
    PREDICTIONS,
    UNSEEN_INPUTS,
    best_effort,
    labelled,
)
from flight_delay.serving.adapters import ServingModel
from flight_delay.serving.registry import ActiveModel, ModelRegistry

AT_DEPARTURE, BEFORE_DEPARTURE = "at_departure", "before_departure"


@dataclass(frozen=True)
class FlightInput:
    """A validated flight and the payload exactly as the client sent it."""

    values: dict[str, Any]
    payload: dict[str, Any]


@dataclass(frozen=True)
class ScoredFlights:
    """The outcome of one predict request: the model used and one prediction per flight."""

    model_version: str
    request_id: str
    predictions: list[dict[str, Any]]


def missing_fields(model: ServingModel, flights: Sequence[FlightInput]) -> dict[int, dict[str, list[str]]]:
    """Finds, per flight, the model's input fields that are absent or null where null is not allowed."""
    required = frozenset(model.input_fields)
    nullable = set(model.nullable_fields)
    not_null = [name for name in model.input_fields if name not in nullable]
    problems: dict[int, dict[str, list[str]]] = {}
    for index, flight in enumerate(flights):
        values = flight.values
        # The common case in two quick checks: every field there, none null where it may not be.
        if values.keys() >= required and None not in [values[name] for name in not_null]:
            continue
        for name in model.input_fields:
            if name not in values:
                problems.setdefault(index, {})[name] = ["Missing data for required field."]
            elif values[name] is None and name not in nullable:
                problems.setdefault(index, {})[name] = ["Field may not be null."]
    return problems


@dataclass(frozen=True)
class UnrecordedPredictions:
    """Flights scored but not yet recorded: the history rows to write, and the answer once they are."""

    model_version: str
    request_id: str
    rows: list[dict[str, Any]]
    bases: list[str]  # per flight: at_departure or before_departure
    warnings: list[list[dict[str, Any]]]  # per flight: what the model never saw in training

    def served(self, ids: Sequence[int]) -> ScoredFlights:
        """The answer, once the rows are committed under `ids`; `warnings` only where there are some."""
        predictions = [
            {"history_id": i, "arr_delay": row["arr_delay"], "basis": basis}
            for i, row, basis in zip(ids, self.rows, self.bases, strict=True)
        ]
        for prediction, found in zip(predictions, self.warnings, strict=True):
            if found:
                prediction["warnings"] = found
        return ScoredFlights(self.model_version, self.request_id, predictions)


def bases_of(model: ServingModel, flights: Sequence[FlightInput]) -> list[str]:
    """Which basis each prediction used: at departure when the model read a departure delay, else before."""
    if "dep_delay" not in model.input_fields:
        return [BEFORE_DEPARTURE] * len(flights)
    return [BEFORE_DEPARTURE if f.values.get("dep_delay") is None else AT_DEPARTURE for f in flights]


class PredictionService:
    """Predicts with the registry's active model and writes the history in the same request."""

    def __init__(self, registry: ModelRegistry, db: Database) -> None:
        self.registry = registry
        self.db = db
        self.writer = HistoryWriter(db)  # what Flask's view records through, in its thread
        self.event_loop_writer: EventLoopWriter | None = None
        self.strict_inputs = False  # ML_API_STRICT_INPUTS: refuse what the model never saw
        self._lookup_lock = LoopLock()

    def init_app(self, app: Flask) -> None:
        """Chooses the event loop's writer: the host's writer on SQLite, the loop's own on PostgreSQL.

        A SQLite app outside `flight-delay serve` (no host writer) has none: its predictions are
        answered by Flask's view, which records through this process's HistoryWriter.
        """
        self.strict_inputs = app.config["ML_API_STRICT_INPUTS"]
        socket_path = app.config.get("HISTORY_WRITER_SOCKET")
        if socket_path:
            # Long enough for the writer to wait out SQLite's busy timeout on a locked database.
            timeout_s = app.config["SQLITE_BUSY_TIMEOUT_MS"] / 1000 + 30
            self.event_loop_writer = EventLoopWriterClient(self.db, socket_path, timeout_s)
        else:
            self.event_loop_writer = postgres_loop_writer(app.config, self.db)

    def predict(
        self, flights: Sequence[FlightInput], request_id: str, started: float, single: bool
    ) -> ScoredFlights:
        """Scores the flights and records them; raises if they cannot be scored or recorded."""
        unrecorded = self.score(self.registry.active(), flights, request_id, started, single)
        with _counting_write_failures():
            ids = self.writer.record(unrecorded.rows)
        return self._served(unrecorded, ids)

    async def predict_on_event_loop(
        self, flights: Sequence[FlightInput], request_id: str, started: float, single: bool, batch: bool
    ) -> ScoredFlights:
        """predict() for an event loop: waits for the commit without blocking it (a batch scored off it)."""
        if self.event_loop_writer is None:
            raise RuntimeError("no event-loop history writer: predict() in a thread instead")
        active = self.registry.current() or await self._active_from_a_thread()
        if batch:
            unrecorded = await asyncio.to_thread(self.score, active, flights, request_id, started, single)
        else:
            unrecorded = self.score(active, flights, request_id, started, single)
        with _counting_write_failures():
            ids = await self.event_loop_writer.record(unrecorded.rows)
        return self._served(unrecorded, ids)

    async def _active_from_a_thread(self) -> ActiveModel:
        """Looks the active model up in a thread: asking the database, loading it, would hold the loop.

        One lookup at a time per loop: the requests that arrive during a model's load wait for it
        rather than each loading the same model again in a thread of its own.
        """
        async with self._lookup_lock():
            return self.registry.current() or await asyncio.to_thread(self.registry.active)

    def score(
        self,
        active: ActiveModel,
        flights: Sequence[FlightInput],
        request_id: str,
        started: float,
        single: bool,
    ) -> UnrecordedPredictions:
        """Scores the flights with the active model; raises if they cannot be scored."""
        problems = missing_fields(active.model, flights)
        if problems:
            raise InvalidInput(
                f"The flight lacks fields that model {active.version[:12]} reads.",
                problems[0] if single else {"flights": problems},
            )
        values = [flight.values for flight in flights]
        warnings = self._unseen(active, values, single)
        predicted = _predicted(active.model, values)
        latency_ms = (time.perf_counter() - started) * 1000.0
        created_at = utcnow()
        rows = [
            {
                "created_at": created_at,
                "request_id": request_id,
                "model_version": active.version,
                "input": flight.payload,
                "arr_delay": value,
                "latency_ms": latency_ms,
            }
            for flight, value in zip(flights, predicted.tolist(), strict=True)
        ]
        return UnrecordedPredictions(
            active.version, request_id, rows, bases_of(active.model, flights), warnings
        )

    def _unseen(
        self, active: ActiveModel, values: Sequence[Mapping[str, Any]], single: bool
    ) -> list[list[dict]]:
        """Flags and counts what the model never saw in training; refuses such flights when strict."""
        unseen = active.model.unseen_inputs(values)
        if not any(unseen):
            return unseen
        for field_name in (warning["field"] for found in unseen for warning in found):
            best_effort(lambda name=field_name: UNSEEN_INPUTS.labels(name).inc())
        if self.strict_inputs:
            problems = {
                index: {w["field"]: [f"{w['value']!r} is {w['reason']}."] for w in found}
                for index, found in enumerate(unseen)
                if found
            }
            raise InvalidInput(
                f"The flight holds values model {active.version[:12]} never saw in training "
                "(ML_API_STRICT_INPUTS refuses them).",
                next(iter(problems.values())) if single else {"flights": problems},
            )
        return unseen

    def _served(self, unrecorded: UnrecordedPredictions, ids: Sequence[int]) -> ScoredFlights:
        """Counts the recorded predictions and builds the answer."""
        best_effort(lambda: labelled(PREDICTIONS, unrecorded.model_version).inc(len(ids)))
        return unrecorded.served(ids)


def _predicted(model: ServingModel, values: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Runs the model on the flights' values; refuses its failure, a wrong count, a non-finite prediction."""
    try:
        predicted = np.asarray(model.predict(values), dtype=np.float64)
    except Exception as exc:  # the model's own code: report, never crash the worker
        raise UnscorableFlight(f"The model could not score the flights: {type(exc).__name__}: {exc}") from exc
    if predicted.shape != (len(values),):
        raise UnscorableFlight(f"The model returned {predicted.shape} values for {len(values)} flights.")
    bad = np.flatnonzero(~np.isfinite(predicted))
    if bad.size:
        raise UnscorableFlight(
            "The model returned a non-finite prediction.",
            {"flights": {int(i): ["Prediction is not a finite number."] for i in bad[:100]}},
        )
    return predicted


@contextmanager
def _counting_write_failures() -> Iterator[None]:
    """Counts a history write that failed (the request is refused by the caller's error mapping)."""
    try:
        yield
    except HistoryUnavailable:
        best_effort(HISTORY_WRITE_FAILURES.inc)
        raise
