"""Group commit of prediction rows, written once: every request waiting on a loop shares the next commit.

Each request still returns only after its own rows are committed (recorded before the response).
While one commit is in flight, the requests that arrive queue up; when it ends, the whole queue goes
in the next one, each request awaiting its own ids. The engine knows nothing of the database: a
backend commits a list of rows in one transaction and returns their ids in order (sqlite_writer.py
for a SQLite file, postgres_writer.py for PostgreSQL). The same engine runs in each worker's event
loop and, on SQLite, in the host's writer process, which shares one transaction among all workers.

A failed shared commit is retried a request at a time, unless the database itself failed (each would
fail alike); a request whose rows were not, or may not have been, committed is refused with a 503
`history_unavailable`, and nothing of it is served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import psycopg
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import database_error_reason

log = logging.getLogger(__name__)

Row = Any  # a row as its backend takes it: a mapping of columns, or the stored values of one


def not_recorded(reason: str) -> HistoryUnavailable:
    """The refusal of a request whose rows were not (or may not have been) committed, with why."""
    return HistoryUnavailable(
        f"The prediction could not be recorded in the history, so it is not served: {reason}."
    )


# The database or the way to it failed (unreachable, restarting, a writer gone silent): a request at a
# time would fail alike, so the batch is not retried one by one.
DATABASE_FAILURES = (OperationalError, psycopg.OperationalError, ConnectionError, TimeoutError)


def written_alone_after(exc: BaseException, requests: int) -> bool:
    """Whether a failed commit of several requests is retried one request at a time."""
    return requests > 1 and not isinstance(exc, (*DATABASE_FAILURES, HistoryUnavailable))


def refusal(exc: BaseException) -> Exception:
    """What a request whose rows were not committed raises: a 503 for the database's faults, else ours."""
    if isinstance(exc, HistoryUnavailable):
        return exc
    if isinstance(exc, SQLAlchemyError | psycopg.Error):
        error: Exception = not_recorded(database_error_reason(exc))
    elif isinstance(exc, ConnectionError | TimeoutError):
        error = not_recorded(str(exc) or type(exc).__name__)
    else:  # not the database's doing: a fault of ours, answered as one
        log.error("recording predictions failed", exc_info=exc)
        error = RuntimeError("recording the predictions failed")
    error.__cause__ = exc
    return error


class CommitBackend(Protocol):
    """Commits rows in one transaction and returns their ids in order; raises if they were not."""

    async def commit(self, rows: list[Row]) -> list[int]:
        """Commits the rows; their ids, in the order given."""
        ...

    def close(self) -> None:
        """Lets go of connections at once (nothing awaited)."""
        ...


@runtime_checkable
class HistoryWriter(Protocol):
    """What the data plane records through: one interface, whatever the database."""

    async def record(self, rows: Sequence[Row]) -> list[int]:
        """Commits the rows and returns their ids in order; raises HistoryUnavailable if they were not."""
        ...


@dataclass(eq=False)
class PendingWrite:
    """One request's rows and the future of their ids."""

    rows: Sequence[Row]
    ids: asyncio.Future[list[int]]


class GroupCommit:
    """Records rows on one event loop, those of every waiting request in one commit of its backend."""

    def __init__(
        self, backend: CommitBackend, min_interval_s: float = 0.0, commit_timeout_s: float | None = None
    ) -> None:
        self.backend = backend
        self.min_interval_s = min_interval_s  # under load, at most one commit per interval
        self.commit_timeout_s = commit_timeout_s  # a commit not done by then is refused (the database hangs)
        self.queue: list[PendingWrite] = []
        self.drainer: asyncio.Task[None] | None = None
        self.commits = 0  # commits begun: fewer than requests when they share them
        self.last_commit = 0.0

    async def record(self, rows: Sequence[Row]) -> list[int]:
        """Commits the rows and returns their ids in order; raises HistoryUnavailable if they were not."""
        if not rows:
            return []
        loop = asyncio.get_running_loop()
        pending = PendingWrite(rows, loop.create_future())
        self.queue.append(pending)
        if self.drainer is None:
            self.drainer = loop.create_task(self._drain())
        try:
            return await pending.ids
        except asyncio.CancelledError:  # the request gave up (its deadline): rows not sent yet stay unsent
            if pending in self.queue:
                self.queue.remove(pending)
            raise

    async def _drain(self) -> None:
        """Commits the queue, batch after batch, until no request waits; fails any left if interrupted."""
        try:
            while self.queue:
                await self._pace()
                batch, self.queue = self.queue, []
                await self._write(batch)
        finally:
            self.drainer = None
            left, self.queue = self.queue, []  # empty unless interrupted
            for pending in left:
                settle(pending, error=not_recorded("the history writer was interrupted"))

    async def _pace(self) -> None:
        """Waits out the rest of the interval since the last commit: who arrives meanwhile shares the next."""
        wait = self.last_commit + self.min_interval_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _write(self, batch: list[PendingWrite]) -> None:
        """Commits the batch at once, then hands out the ids; alone each if the fault may be one request's."""
        try:
            ids = await self._commit([row for pending in batch for row in pending.rows])
        except Exception as exc:
            if written_alone_after(exc, len(batch)):
                for pending in batch:
                    await self._write([pending])
                return
            for pending in batch:
                settle(pending, error=refusal(exc))
            return
        except BaseException:  # cancelled: no request may wait forever, nor pass unrecorded
            for pending in batch:
                settle(pending, error=not_recorded("the history writer was interrupted"))
            raise
        start = 0
        for pending in batch:
            settle(pending, ids[start : start + len(pending.rows)])
            start += len(pending.rows)

    async def _commit(self, rows: list[Row]) -> list[int]:
        """One commit of the backend, counted and timed for the pace."""
        self.commits += 1
        self.last_commit = time.monotonic()
        try:
            async with asyncio.timeout(self.commit_timeout_s):
                ids = await self.backend.commit(rows)
        except TimeoutError as exc:
            raise not_recorded(f"the database did not answer within {self.commit_timeout_s:g} s") from exc
        if len(ids) != len(rows):
            raise RuntimeError(f"the history returned {len(ids)} ids for {len(rows)} rows")
        return ids


def settle(pending: PendingWrite, ids: list[int] | None = None, error: BaseException | None = None) -> None:
    """Hands a request its ids or its error, unless it stopped waiting (cancelled)."""
    if pending.ids.done():
        return
    if error is not None:
        pending.ids.set_exception(error)
    else:
        pending.ids.set_result(ids or [])


class LoopHistoryWriter:
    """A HistoryWriter for whichever event loop runs: a group commit and a backend of its own per loop.

    A backend's connections belong to the loop that opened them: a worker has one loop; tests and
    WSGI callers (through the data plane's own loop) may run others, and each gets its own.
    """

    def __init__(
        self,
        make_backend: Callable[[], CommitBackend],
        min_interval_s: float = 0.0,
        commit_timeout_s: float | None = None,
    ) -> None:
        self.make_backend = make_backend
        self.min_interval_s = min_interval_s
        self.commit_timeout_s = commit_timeout_s
        self.engines: dict[asyncio.AbstractEventLoop, GroupCommit] = {}

    async def record(self, rows: Sequence[Row]) -> list[int]:
        """Commits the rows through this loop's group commit; raises HistoryUnavailable if they were not."""
        return await self.engine().record(rows)

    def engine(self) -> GroupCommit:
        """The running loop's group commit, made on first use; those of closed loops are let go."""
        loop = asyncio.get_running_loop()
        engine = self.engines.get(loop)
        if engine is None:
            for closed in [other for other in self.engines if other.is_closed()]:
                self.engines.pop(closed).backend.close()
            engine = GroupCommit(self.make_backend(), self.min_interval_s, self.commit_timeout_s)
            self.engines[loop] = engine
        return engine

    def close(self) -> None:
        """Closes every loop's backend (at shutdown, or when the database is rebound)."""
        for engine in self.engines.values():
            engine.backend.close()
        self.engines.clear()
