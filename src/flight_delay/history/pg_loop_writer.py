"""Group commit on PostgreSQL from a worker's event loop: the waiting requests' rows in one statement.

The SQLite host writer's client lets the event loop wait for a commit without holding a thread; this
is its PostgreSQL counterpart (both are history.writer.EventLoopWriter). Each worker keeps one
psycopg AsyncConnection in autocommit mode. While one INSERT (its own transaction) is in flight, the
requests that arrive queue up; when it ends, the whole queue goes in the next one, each request
awaiting its own ids. A request is still answered only once its rows are committed: when the
statement fails, or the connection breaks before its answer, the request is refused (503
`history_unavailable`) and nothing is served. Several workers and replicas each write this way at
once; the sequence numbers their rows.

A connection the server ended while idle (restart, pg_terminate_backend) has something to read: it
is replaced before the next statement is sent, so no request fails for it. One ended in the middle
of a statement fails that statement's requests (their rows' fate unknown), and the next reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import select
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Dialect

from flight_delay.history.database import Database, database_error_reason, postgres_connect_args
from flight_delay.history.repository import POSTGRES_INSERT, postgres_columns
from flight_delay.history.writer import not_recorded, written_alone_after

log = logging.getLogger(__name__)


@dataclass(eq=False)
class LoopWrite:
    """One request's rows and the future of their ids."""

    rows: Sequence[Mapping[str, Any]]
    ids: asyncio.Future[list[int]]


def postgres_loop_writer(config: Mapping[str, Any], db: Database) -> PostgresLoopWriter | None:
    """The event-loop writer of a PostgreSQL (psycopg) history; None for another database."""
    engine = db.bound_engine()
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None
    # SQLAlchemy's own arguments for psycopg.connect, bounded as make_engine bounds its connections.
    _, connect_args = engine.dialect.create_connect_args(engine.url)
    limits = postgres_connect_args(
        engine.url, config["POSTGRES_LOCK_TIMEOUT_MS"], config["POSTGRES_CONNECT_TIMEOUT_S"]
    )
    return PostgresLoopWriter({**connect_args, **limits}, engine.dialect)


def refusal(exc: Exception) -> Exception:
    """What a request whose rows were not committed raises: HistoryWriter's errors, worded alike."""
    if isinstance(exc, psycopg.Error):
        error: Exception = not_recorded(database_error_reason(exc))
    else:  # not the database's doing: a fault of ours, answered as one
        log.error("recording predictions from the event loop failed", exc_info=exc)
        error = RuntimeError("recording the predictions failed")
    error.__cause__ = exc
    return error


def settle(write: LoopWrite, ids: list[int] | None = None, error: Exception | None = None) -> None:
    """Hands a request its ids or its error, unless it stopped waiting (cancelled)."""
    if write.ids.done():
        return
    if error is not None:
        write.ids.set_exception(error)
    else:
        write.ids.set_result(ids or [])


def ended_while_idle(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection is closed or has something to read (the server's goodbye, or EOF)."""
    if connection.closed:
        return True
    readable, _, _ = select.select([connection.fileno()], [], [], 0)
    return bool(readable)


class PostgresLoopWriter:
    """Records prediction rows from the event loop, those of every waiting request in one statement."""

    def __init__(self, connect_args: Mapping[str, Any], dialect: Dialect) -> None:
        self.connect_args = dict(connect_args)
        self.dialect = dialect
        self.connection: psycopg.AsyncConnection[Any] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: list[LoopWrite] = []
        self.drainer: asyncio.Task[None] | None = None
        self.statements = 0  # INSERTs sent: fewer than requests when they share them

    async def record(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Commits the rows and returns their ids in order; raises HistoryUnavailable if they were not."""
        if not rows:
            return []
        loop = self._this_loop()
        write = LoopWrite(rows, loop.create_future())
        self.queue.append(write)
        if self.drainer is None:
            self.drainer = loop.create_task(self._drain())
        return await write.ids

    def _this_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop; a new one (tests run one per call, a worker only one) starts afresh."""
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self.close()
            self.loop, self.queue, self.drainer = loop, [], None
        return loop

    async def _drain(self) -> None:
        """Writes the queue, batch after batch, until no request waits; fails any left if interrupted."""
        try:
            while self.queue:
                batch, self.queue = self.queue, []
                await self._write(batch)
        finally:
            self.drainer = None
            left, self.queue = self.queue, []  # empty unless interrupted
            for write in left:
                settle(write, error=not_recorded("the history writer was interrupted"))

    async def _write(self, batch: list[LoopWrite]) -> None:
        """Commits the batch in one statement, then hands out the ids; alone each if a row is refused."""
        try:
            ids = await self._commit([row for write in batch for row in write.rows])
        except Exception as exc:
            if written_alone_after(exc, len(batch)):
                for write in batch:
                    await self._write([write])
                return
            for write in batch:
                settle(write, error=refusal(exc))
            return
        except BaseException:  # cancelled: no request may wait forever, nor pass unrecorded
            for write in batch:
                settle(write, error=not_recorded("the history writer was interrupted"))
            raise
        start = 0
        for write in batch:
            settle(write, ids[start : start + len(write.rows)])
            start += len(write.rows)

    async def _commit(self, rows: list[Mapping[str, Any]]) -> list[int]:
        """Inserts the rows in one statement, its own transaction (autocommit); returns their ids in order."""
        connection = await self._connected()
        self.statements += 1
        try:
            cursor = await connection.execute(POSTGRES_INSERT, postgres_columns(rows, self.dialect))
            returned = await cursor.fetchall()
        except psycopg.Error:
            if connection.broken:
                self.close()
            raise
        return sorted(row[0] for row in returned)  # numbered in the rows' order (ORDER BY position)

    async def _connected(self) -> psycopg.AsyncConnection[Any]:
        """The loop's connection: a new one if there is none or the server ended it while it was idle."""
        if self.connection is not None and ended_while_idle(self.connection):
            log.info("the history connection was closed by the server: reconnecting")
            self.close()
        if self.connection is None:
            self.connection = await psycopg.AsyncConnection.connect(autocommit=True, **self.connect_args)
        return self.connection

    def close(self) -> None:
        """Closes the connection at once, if any (its socket: nothing is awaited)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.pgconn.finish()
