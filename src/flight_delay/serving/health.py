"""Health and readiness, answered within HEALTH_TIMEOUT_S whatever the database does.

A load balancer must learn that a replica cannot serve even when its database hangs (a PostgreSQL
server stopped, a lock held): every check that asks the database runs in one thread of its own and
is waited for at most HEALTH_TIMEOUT_S; past it, or while an earlier check still hangs, the answer
is `unavailable` / not ready, at once. One thread only: a hung database holds one, never more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from flight_delay import __version__
from flight_delay.errors import ModelNotLoaded, NotReady
from flight_delay.history.service import DatabaseHealth, HistoryService
from flight_delay.serving.readiness import Readiness, readiness, scoring_model
from flight_delay.serving.registry import ModelRegistry

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 1.5


@dataclass(frozen=True)
class Report:
    """GET /health/'s answer: its status code and body."""

    status: int
    body: dict[str, Any]


class HealthChecks:
    """The checks behind /health/, /health/ready and the protocols' readiness, bounded in time.

    Each check has a blocking form (Flask's views, in their threads) and an awaitable one (the routes
    answered on the event loop), both running it in the one health thread.
    """

    def __init__(
        self, registry: ModelRegistry, history: HistoryService, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.registry = registry
        self.history = history
        self.timeout_s = timeout_s
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="health")
        self._running: concurrent.futures.Future[Any] | None = None
        self._lock = threading.Lock()

    def report(self) -> Report:
        """The process, its model and whether its database takes a write (503 `unavailable` if not)."""
        return self._as_report(self._wait(self._submit(self._report)))

    async def report_now(self) -> Report:
        """report(), awaited on an event loop."""
        return self._as_report(await self._await(self._submit(self._report)))

    def readiness(self) -> Readiness:
        """Ready when the active model scores the reference flight and the database takes a write."""
        return self._wait(self._submit(self._readiness)) or self._not_ready()

    async def readiness_now(self) -> Readiness:
        """readiness(), awaited on an event loop."""
        return await self._await(self._submit(self._readiness)) or self._not_ready()

    async def scoring_version_now(self) -> str | None:
        """The active model's version once it scored the reference flight; None if not (or not in time)."""
        return await self._await(self._submit(lambda: scoring_model(self.registry)[0]))

    def _readiness(self) -> Readiness:
        """The readiness check itself (in the health thread)."""
        return readiness(self.registry, self.history)

    def _not_ready(self) -> Readiness:
        """Not ready, because the database did not answer in time."""
        return Readiness(False, None, None, self.silence)

    def _as_report(self, found: tuple[dict[str, Any], DatabaseHealth] | None) -> Report:
        """GET /health/'s answer from the checks' findings (None: no answer in time)."""
        if found is None:
            found = (
                {"loaded": False, "reason": self.silence},
                DatabaseHealth(False, self.backend, self.silence),
            )
        model, database = found
        status = "ok" if database.ok else "unavailable"
        body = {"status": status, "version": __version__, "database": database_body(database), "model": model}
        return Report(200 if database.ok else 503, body)

    @property
    def backend(self) -> str:
        """The database's dialect name."""
        return self.history.db.bound_engine().dialect.name

    @property
    def silence(self) -> str:
        """Why a check gave no answer."""
        return f"The database did not answer within {self.timeout_s:g} s."

    def _report(self) -> tuple[dict[str, Any], DatabaseHealth]:
        """The model's health, then the database's (last: a refused write discards its connections)."""
        model = self._model_health()
        return model, self.history.check_writable()

    def _model_health(self) -> dict[str, Any]:
        """Describes the active model, or why there is none."""
        try:
            active = self.registry.active()
        except ModelNotLoaded as exc:
            return {"loaded": False, "reason": exc.message}
        except SQLAlchemyError:
            return {"loaded": False, "reason": "The database is unavailable."}
        return {"loaded": True, "version": active.version, "kind": active.model.kind}

    def _submit(self, check: Callable[[], T]) -> concurrent.futures.Future[T] | None:
        """Runs the check in the health thread; None while an earlier check still hangs there."""
        with self._lock:
            if self._running is not None and not self._running.done():
                return None
            self._running = self._pool.submit(check)
            return self._running

    def _wait(self, running: concurrent.futures.Future[T] | None) -> T | None:
        """The check's answer within timeout_s, else None."""
        try:
            return None if running is None else running.result(self.timeout_s)
        except concurrent.futures.TimeoutError:
            return None

    async def _await(self, running: concurrent.futures.Future[T] | None) -> T | None:
        """_wait on an event loop: awaited, the loop free meanwhile."""
        if running is None:
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running)), self.timeout_s)
        except TimeoutError:
            return None


def database_body(database: DatabaseHealth) -> dict[str, Any]:
    """The database's health as the API shows it: ok, backend, and the reason when it is not ok."""
    body: dict[str, Any] = {"ok": database.ok, "backend": database.backend}
    if database.reason is not None:
        body["reason"] = database.reason
    return body


def ready_body(found: Readiness) -> dict[str, Any]:
    """GET /health/ready's answer when ready; raises NotReady (a 503 `not_ready`, with why) when not."""
    if not found.ready:
        raise NotReady(found.reason or "Not ready.")
    database = None if found.database is None else database_body(found.database)
    return {"status": "ready", "model_version": found.model_version, "database": database}
