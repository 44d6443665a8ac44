"""Shadow scoring: a second version scores every prediction after its answer; recorded, never returned.

The data plane hands each answered request's flights here (`submit`: nothing awaited, so nothing of
the answer waits). Per event loop, a bounded queue and one drainer task, started on demand: it first
waits PAUSE_S, so the answer that queued the work goes out before any of it is done and the requests
answered meanwhile join it, then takes what is queued (up to BATCH_FLIGHTS), scores it with the shadow
version in one call (in a thread beyond LOOP_FLIGHTS, so the loop keeps serving), and records the
rows through the history writer, in one group commit with whatever else waits. What does not fit in
the queue (SHADOW_QUEUE_FLIGHTS) is dropped and counted, as is what the shadow cannot score or the
history cannot take (`flight_delay_shadow_dropped_total{reason}`): a shadow never holds or fails the
served path, and its work is batched so that it costs the answers little (bench/shadow.py).

A shadow row is a history row of the shadow version whose `shadow_of` names the served prediction it
shadows; `latency_ms` is the shadow's own scoring time. Work still queued when a worker stops is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from flight_delay.context.index import ContextIndex
from flight_delay.context.serving import in_context
from flight_delay.context.state import ContextState
from flight_delay.history.models import utcnow
from flight_delay.history.writer import HistoryWriter
from flight_delay.observability.metrics import SHADOW_DROPPED, SHADOW_PREDICTIONS, best_effort, labelled
from flight_delay.serving.predictions import missing_fields
from flight_delay.serving.registry import ActiveModel
from flight_delay.validation import FlightInput

log = logging.getLogger(__name__)

DEFAULT_QUEUE_FLIGHTS = 10_000
BATCH_FLIGHTS = 1_000  # scored in one call of the model, recorded in one commit
LOOP_FLIGHTS = 256  # more than this is scored in a thread
# Between batches the drainer waits this long: the flights answered meanwhile are scored together, in
# one call of the model and one record, which costs far less per flight than one request at a time.
PAUSE_S = 0.05
# Rows recorded per call, one call after the other: each joins one group commit beside the served
# rows, small enough that SQLite's shared commit through the host writer takes them (sqlite_writer.py).
RECORD_ROWS = 32


@dataclass(frozen=True)
class ShadowJob:
    """One answered request for the shadow to score: the version, the flights, the served ids."""

    model: ActiveModel
    flights: Sequence[FlightInput]
    request_id: str
    protocol: str
    served_ids: Sequence[int]
    scored_at: datetime  # the served prediction's time: a flight's context is as of it (or its as_of)


class ShadowQueue:
    """One event loop's queue of shadow work and its drainer."""

    def __init__(self) -> None:
        self.jobs: deque[ShadowJob] = deque()
        self.flights = 0
        self.drainer: asyncio.Task[None] | None = None


def counted(version: str, rows: int) -> None:
    """Counts shadow predictions recorded."""
    best_effort(lambda: labelled(SHADOW_PREDICTIONS, version).inc(rows))


def dropped(reason: str, flights: int) -> None:
    """Counts flights the shadow did not score or record, by why."""
    best_effort(lambda: labelled(SHADOW_DROPPED, reason).inc(flights))


class ShadowScorer:
    """Scores answered requests with the shadow version, off the answer's path, a bounded queue per loop."""

    def __init__(
        self,
        writer: HistoryWriter,
        capacity: int = DEFAULT_QUEUE_FLIGHTS,
        context: ContextState | None = None,
    ) -> None:
        self.writer = writer
        self.capacity = capacity
        self.context = context  # the worker's posted flights and weather, for a shadow that reads them
        self.queues: dict[asyncio.AbstractEventLoop, ShadowQueue] = {}

    def submit(self, job: ShadowJob) -> None:
        """Queues a request's flights for the shadow (on the running loop); drops them when it is full."""
        queue = self._queue()
        if queue.flights + len(job.flights) > self.capacity:
            dropped("queue_full", len(job.flights))
            return
        queue.jobs.append(job)
        queue.flights += len(job.flights)
        if queue.drainer is None:
            queue.drainer = asyncio.get_running_loop().create_task(self._drain(queue))

    def idle(self) -> bool:
        """Whether the running loop has no shadow work queued or under way (nothing lost on a stop)."""
        queue = self._queue()
        return not queue.jobs and queue.drainer is None

    def _queue(self) -> ShadowQueue:
        """The running loop's queue, made on first use; those of closed loops are let go."""
        loop = asyncio.get_running_loop()
        queue = self.queues.get(loop)
        if queue is None:
            for closed in [other for other in self.queues if other.is_closed()]:
                self.queues.pop(closed)
            queue = self.queues[loop] = ShadowQueue()
        return queue

    async def _drain(self, queue: ShadowQueue) -> None:
        """Scores and records the queue, batch after batch, until it is empty (yielding first)."""
        try:
            while queue.jobs:
                await asyncio.sleep(PAUSE_S)  # whoever queued the work answers first; others join the batch
                batch = take_batch(queue)
                await self._score_and_record(batch)
        finally:
            queue.drainer = None

    async def _score_and_record(self, batch: list[ShadowJob]) -> None:
        """Scores one batch (one version) and records its rows; counts, never raises, what fails."""
        flights = sum(len(job.flights) for job in batch)
        index = self.context.snapshot() if self.context is not None else None
        try:
            if flights > LOOP_FLIGHTS:
                rows = await asyncio.to_thread(shadow_rows, batch, index)
            else:
                rows = shadow_rows(batch, index)
        except Exception:  # the shadow's own failure is the shadow's only
            log.warning("the shadow version could not score %d flights", flights, exc_info=True)
            dropped("unscorable", flights)
            return
        await self._record(rows, batch[0].model.version)

    async def _record(self, rows: list[dict[str, Any]], version: str) -> None:
        """Records the shadow rows, RECORD_ROWS at a time; what the history refuses is dropped (counted)."""
        for start in range(0, len(rows), RECORD_ROWS):
            chunk = rows[start : start + RECORD_ROWS]
            try:
                await self.writer.record(chunk)
            except Exception as exc:  # HistoryUnavailable above all: the served rows were recorded already
                log.warning("shadow predictions not recorded: %s", exc)
                dropped("unrecorded", len(rows) - start)
                return
            counted(version, len(chunk))


def take_batch(queue: ShadowQueue) -> list[ShadowJob]:
    """Takes queued jobs of one version, up to BATCH_FLIGHTS flights (at least one job)."""
    batch = [queue.jobs.popleft()]
    size = len(batch[0].flights)
    while queue.jobs and queue.jobs[0].model.version == batch[0].model.version:
        if size + len(queue.jobs[0].flights) > BATCH_FLIGHTS:
            break
        batch.append(queue.jobs.popleft())
        size += len(batch[-1].flights)
    queue.flights -= size
    return batch


def shadow_values(batch: Sequence[ShadowJob], index: ContextIndex | None) -> list[Mapping[str, Any]]:
    """What the shadow scores of each flight: its values, with its context as served when it reads any."""
    if not batch[0].model.model.context_features or index is None:
        return [flight.values for job in batch for flight in job.flights]
    return [
        value
        for job in batch
        for value in in_context([f.values for f in job.flights], index, job.scored_at).values
    ]


def shadow_rows(batch: Sequence[ShadowJob], index: ContextIndex | None = None) -> list[dict[str, Any]]:
    """Scores a batch's flights with its shadow version: one history row per flight it could score."""
    started = time.perf_counter()
    model = batch[0].model
    flights = [flight for job in batch for flight in job.flights]
    values = shadow_values(batch, index)
    keys = [(job, served_id) for job in batch for served_id in job.served_ids]
    missing = missing_fields(model.model, flights)  # fields the shadow reads that the flight lacks
    scorable = [i for i in range(len(flights)) if i not in missing]
    if missing:
        dropped("unscorable", len(missing))
    if not scorable:
        return []
    predicted, features = model.model.predict_recorded([values[i] for i in scorable])
    predicted = np.asarray(predicted, dtype=np.float64)
    features = features or [None] * len(scorable)
    finite = np.isfinite(predicted)
    if not finite.all():
        dropped("unscorable", int((~finite).sum()))
    latency_ms = (time.perf_counter() - started) * 1000.0
    created_at = utcnow()
    return [
        {
            "created_at": created_at,
            "request_id": keys[i][0].request_id,
            "model_version": model.version,
            "input": flights[i].payload,
            "arr_delay": value,
            "latency_ms": latency_ms,
            "protocol": keys[i][0].protocol,
            "shadow_of": keys[i][1],
            "features": read,
        }
        for i, value, read, ok in zip(scorable, predicted.tolist(), features, finite.tolist(), strict=True)
        if ok
    ]
