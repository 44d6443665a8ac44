"""What the history writer tests share: rows, a database to write them to, a loop to write them from."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import select

from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade
from flight_delay.history.models import ModelVersion, Prediction
from flight_delay.history.writer import CommitBackend, LoopHistoryWriter
from tests.factories import minimal_flight

VERSION = "a" * 64
WAIT_SECONDS = 30
T = TypeVar("T")


def migrated(database_url: str, **options: Any) -> Database:
    """A migrated database with the model version the rows name."""
    upgrade(database_url)
    db = Database().bind(database_url, **options)
    with db.transaction() as session:
        session.add(ModelVersion(version=VERSION, kind="test", filename=None, size_bytes=1, details={}))
    return db


def rows(request_id: str, count: int = 1, version: str = VERSION) -> list[dict[str, Any]]:
    """History rows of one request: `count` flights, each carrying its position in its payload."""
    created_at = datetime(2026, 11, 27, 5, 0, tzinfo=UTC) + timedelta(microseconds=count)
    return [
        {
            "created_at": created_at,
            "request_id": request_id,
            "model_version": version,
            "input": {**minimal_flight(), "flight": position},
            "arr_delay": float(position) - 0.5,
            "latency_ms": 1.25,
            "protocol": "native",
        }
        for position in range(count)
    ]


def stored(db: Database) -> dict[int, Prediction]:
    """Every recorded prediction by id."""
    with db.transaction() as session:
        return {p.id: p for p in session.scalars(select(Prediction))}


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Polls until condition() holds, failing after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


class LoopThread:
    """An event loop in a thread of its own, as a worker's: coroutines run on it from any thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Awaitable[T]) -> T:
        """Runs a coroutine on the loop and waits for its result (or its exception)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(2 * WAIT_SECONDS)  # type: ignore[arg-type]

    def start(self, coroutine: Awaitable[T]) -> Any:
        """Starts a coroutine on the loop; returns its concurrent future."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)  # type: ignore[arg-type]

    def close(self) -> None:
        """Stops the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_SECONDS)
        self.loop.close()


class Gated:
    """A backend whose first commit waits for `release`; it notes the rows of every commit."""

    def __init__(self, backend: CommitBackend) -> None:
        self.backend = backend
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []

    async def commit(self, rows: list[Any]) -> list[int]:
        """Commits through the real backend, the first time only once released."""
        self.sizes.append(len(rows))
        if len(self.sizes) == 1:
            self.entered.set()
            while not self.release.is_set():
                await asyncio.sleep(0.005)
        return await self.backend.commit(rows)

    def close(self) -> None:
        """Closes the real backend."""
        self.backend.close()


def gate(writer: LoopHistoryWriter) -> Gated:
    """Puts a gate on the writer's backend (before its first record); returns the gate."""
    gated = Gated(writer.make_backend())
    writer.make_backend = lambda: gated  # type: ignore[method-assign]
    return gated
