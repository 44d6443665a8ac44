"""Scores validated flights with a model: the history rows to record, and the answer once they are."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from flight_delay.context.serving import FlightsInContext, in_context
from flight_delay.context.state import ContextState
from flight_delay.errors import DatabaseUnavailable, HistoryUnavailable, InvalidInput, UnscorableFlight
from flight_delay.history.models import utcnow
from flight_delay.loop_lock import LoopLock
from flight_delay.observability.metrics import (
    HISTORY_WRITE_FAILURES,
    PREDICTIONS,
    UNSEEN_INPUTS,
    best_effort,
    labelled,
)
from flight_delay.serving.adapters import ServingModel
from flight_delay.serving.registry import ActiveModel
from flight_delay.validation import WORDED_MAX, FlightInput

AT_DEPARTURE, BEFORE_DEPARTURE = "at_departure", "before_departure"


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


def refuse_missing_fields(active: ActiveModel, flights: Sequence[FlightInput], single: bool) -> None:
    """Refuses flights lacking what the model reads, naming each field (the first WORDED_MAX flights)."""
    problems = missing_fields(active.model, flights)
    if not problems:
        return
    model = active.version[:12]
    if single:
        raise InvalidInput(f"The flight lacks fields that model {model} reads.", problems[0])
    message = f"The flight lacks fields that model {model} reads."
    if len(problems) > WORDED_MAX:
        message = (
            f"{len(problems)} flights lack fields model {model} reads; errors lists the first {WORDED_MAX}."
        )
        problems = dict(list(problems.items())[:WORDED_MAX])
    raise InvalidInput(message, {"flights": problems})


@dataclass(frozen=True)
class UnrecordedPredictions:
    """Flights scored but not yet recorded: the history rows to write, and the answer once they are."""

    model_version: str
    request_id: str
    rows: list[dict[str, Any]]
    bases: list[str]  # per flight: at_departure or before_departure
    warnings: list[list[dict[str, Any]]]  # per flight: what the model never saw in training
    contexts: list[dict[str, Any]] | None = None  # per flight, from a model that reads context

    def served(self, ids: Sequence[int]) -> ScoredFlights:
        """The answer, once the rows are committed under `ids`; `warnings` only where there are some."""
        predictions = [
            {"history_id": i, "arr_delay": row["arr_delay"], "basis": basis}
            for i, row, basis in zip(ids, self.rows, self.bases, strict=True)
        ]
        for prediction, context in zip(predictions, self.contexts or (), strict=False):
            prediction["context"] = context
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
    """Scores validated flights with a model: checks what it reads, flags what it never saw, predicts."""

    def __init__(self, strict_inputs: bool = False, context: ContextState | None = None) -> None:
        self.strict_inputs = strict_inputs  # ML_API_STRICT_INPUTS: refuse what the model never saw
        self.context = context  # this worker's posted flights and weather (None: no context store)
        self._context_lock = LoopLock()

    def context_current(self) -> bool:
        """Whether score() may read the context as it is (none kept, or checked lately): no I/O."""
        return self.context is None or self.context.current() is not None

    async def context_ready(self) -> None:
        """Reads new posts in a thread when the context is stale (it queries), one refresh per loop at a time.

        score() reads the last context read, never the database: a caller awaits this first.
        """
        if self.context_current():
            return
        async with self._context_lock():
            if self.context.current() is None:
                await asyncio.to_thread(self.context.refresh)

    def score(
        self,
        active: ActiveModel,
        flights: Sequence[FlightInput],
        request_id: str,
        started: float,
        single: bool,
        protocol: str = "native",
    ) -> UnrecordedPredictions:
        """Scores the flights with the active model; raises if they cannot be scored."""
        refuse_missing_fields(active, flights, single)
        values = [flight.values for flight in flights]
        warnings = self._unseen(active, values, single)
        created_at = utcnow()  # also the prediction time of a flight without as_of
        found = self._in_context(active, values, created_at)
        predicted, features = _predicted(active.model, found.values if found else values)
        latency_ms = (time.perf_counter() - started) * 1000.0
        rows = [
            {
                "created_at": created_at,
                "request_id": request_id,
                "model_version": active.version,
                "input": flight.payload,
                "arr_delay": value,
                "latency_ms": latency_ms,
                "protocol": protocol,
                "features": read,
            }
            for flight, value, read in zip(
                flights, predicted.tolist(), features or _none(flights), strict=True
            )
        ]
        return UnrecordedPredictions(
            active.version,
            request_id,
            rows,
            bases_of(active.model, flights),
            warnings,
            found and found.answers,
        )

    def _in_context(
        self, active: ActiveModel, values: Sequence[Mapping[str, Any]], now: datetime
    ) -> FlightsInContext | None:
        """The flights with their context as of each one's as_of (or now), for a model that reads context."""
        if not active.model.context_features or self.context is None:
            return None
        return in_context(values, self.context.snapshot(), now)

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

    def served(self, unrecorded: UnrecordedPredictions, ids: Sequence[int]) -> ScoredFlights:
        """Counts the recorded predictions and builds the answer."""
        best_effort(lambda: labelled(PREDICTIONS, unrecorded.model_version).inc(len(ids)))
        return unrecorded.served(ids)


def _none(flights: Sequence[Any]) -> list[None]:
    """No features recorded, one None per flight (a model without a contract)."""
    return [None] * len(flights)


def _predicted(
    model: ServingModel, values: Sequence[Mapping[str, Any]]
) -> tuple[np.ndarray, list[Any] | None]:
    """Runs the model (and says what it read); refuses a failure, a wrong count, a non-finite value."""
    try:
        predicted, features = model.predict_recorded(values)
        predicted = np.asarray(predicted, dtype=np.float64)
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
    return predicted, features


@contextmanager
def counting_write_failures() -> Iterator[None]:
    """Counts a history write that failed (the request is refused by the caller's error mapping)."""
    try:
        yield
    except (HistoryUnavailable, DatabaseUnavailable):
        best_effort(HISTORY_WRITE_FAILURES.inc)
        raise
