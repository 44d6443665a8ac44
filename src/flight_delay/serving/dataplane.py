"""The data plane: one path for every prediction, whatever protocol brought it.

Every transport (the native JSON route, the Open Inference Protocol, MLflow's scoring protocol, and
Flask's view for an embedding WSGI server and the tests) turns its request into a PredictRequest and
awaits `DataPlane.predict`: the flights are validated by the one compiled check, scored by the active
model, recorded in the history, and only then answered (a ScoredFlights, which the transport renders
in its own protocol). Nothing here knows HTTP: refusals are domain errors (flight_delay.errors).

It runs on the worker's event loop: what could hold the loop (a large batch's checks and scoring,
looking the active model up in the database, loading it) goes to a thread; the commit is awaited
without holding one.

Canary and shadow live here, so every protocol has them: the registry's routing picks the version
serving a request (the canary when a stable hash of its X-Request-ID falls in the canary's share, the
active version otherwise; the answer names it), and once the rows are recorded a shadow version, if
any, is handed the flights to score after the answer (serving/shadow.py).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from flight_delay.errors import DatabaseUnavailable
from flight_delay.history.writer import HistoryWriter
from flight_delay.loop_lock import LoopLock
from flight_delay.serving.predictions import PredictionService, ScoredFlights, counting_write_failures
from flight_delay.serving.registry import ActiveModel, ModelRegistry, Routing
from flight_delay.serving.shadow import ShadowJob, ShadowScorer
from flight_delay.validation import checked_flights

T = TypeVar("T")


@dataclass(frozen=True)
class PredictRequest:
    """A prediction as every transport hands it over: the flights as sent, and how they came."""

    items: Sequence[Any]  # one mapping per flight, as the client sent it (it is what the history keeps)
    request_id: str
    started: float  # time.perf_counter() when the request arrived
    single: bool = False  # a bare flight: refusals are worded at its fields, not under flights.N
    protocol: str = "native"  # recorded with each prediction: native, v2 or mlflow
    large: bool = False  # a batch body: checked and scored in a thread, so the loop serves others
    version: str | None = None  # a version the request names (V2's path): served if it is served now


class DataPlane:
    """Validates, scores with the active model, records, answers: every transport's one path."""

    def __init__(
        self,
        registry: ModelRegistry,
        scorer: PredictionService,
        writer: HistoryWriter,
        deadline_s: float | None = None,
        shadows: ShadowScorer | None = None,
    ) -> None:
        self.registry = registry
        self.scorer = scorer
        self.writer = writer
        self.deadline_s = deadline_s  # HISTORY_WRITE_TIMEOUT_S: the database's time, per call
        self.shadows = shadows or ShadowScorer(writer)
        self._lookup_lock = LoopLock()
        self._own_loop: tuple[int, asyncio.AbstractEventLoop] | None = None
        self._own_loop_lock = threading.Lock()

    async def predict(self, request: PredictRequest) -> ScoredFlights:
        """The flights' predictions, once recorded; raises a domain error if they cannot be served."""
        flights = await run_off_loop_if(request.large, checked_flights, request.items, request.single)
        routing = await self.routing()
        served = routing.serving(request.request_id, request.version)
        if not self.scorer.context_current():  # (most requests: no coroutine, no deadline to arm)
            await self._within_deadline(self.scorer.context_ready(), "read the posted flights and weather")
        unrecorded = await run_off_loop_if(
            request.large,
            self.scorer.score,
            served,
            flights,
            request.request_id,
            request.started,
            request.single,
            request.protocol,
        )
        with counting_write_failures():
            ids = await self._within_deadline(self.writer.record(unrecorded.rows), "record the prediction")
        shadow = routing.shadowing(served)
        if shadow is not None:
            scored_at = unrecorded.rows[0]["created_at"]
            job = ShadowJob(shadow, flights, request.request_id, request.protocol, ids, scored_at)
            self.shadows.submit(job)
        return self.scorer.served(unrecorded, ids)

    def predict_blocking(self, request: PredictRequest) -> ScoredFlights:
        """predict() for a thread (an embedding WSGI server's, Flask's test client), on the plane's loop."""
        return asyncio.run_coroutine_threadsafe(self.predict(request), self._loop()).result()

    async def active_model(self) -> ActiveModel:
        """The model served now: from memory when checked lately, else looked up in a thread."""
        return (await self.routing()).active

    async def routing(self) -> Routing:
        """The active model and the traffic split: from memory when checked lately, else in a thread."""
        return self.registry.current_routing() or await self._within_deadline(
            self._routing_from_a_thread(), "tell which model is active"
        )

    async def _within_deadline(self, waiting: Awaitable[T], what: str) -> T:
        """Awaits the database's part within the deadline; past it, a 503 `database_unavailable`."""
        try:
            async with asyncio.timeout(self.deadline_s):
                return await waiting
        except TimeoutError as exc:
            raise DatabaseUnavailable(
                f"The database did not {what} within {self.deadline_s:g} s; nothing was served."
            ) from exc

    async def _routing_from_a_thread(self) -> Routing:
        """Looks the routing up in a thread: asking the database, loading models, would hold the loop.

        One lookup at a time per loop: the requests that arrive during a model's load wait for it
        rather than each loading the same model again in a thread of its own.
        """
        async with self._lookup_lock():
            return self.registry.current_routing() or await asyncio.to_thread(self.registry.routing)

    def _loop(self) -> asyncio.AbstractEventLoop:
        """This process's own event loop for blocking callers, started on first use (again after a fork)."""
        with self._own_loop_lock:
            if self._own_loop is None or self._own_loop[0] != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="data-plane", daemon=True).start()
                self._own_loop = (os.getpid(), loop)
            return self._own_loop[1]


async def run_off_loop_if(off_loop: bool, work: Callable[..., T], *args: Any) -> T:
    """Runs the work here, or in a thread when it is large enough to hold the loop."""
    if off_loop:
        return await asyncio.to_thread(work, *args)
    return work(*args)
