"""Group commit of prediction rows: every request waiting to record shares one transaction.

Each request still returns only after its own rows are committed (recorded before the response).
While one transaction is in flight, the requests that arrive queue up; when it ends, one of them
writes the whole queue in the next transaction, with one fsync for all. Without this, each request
thread took SQLite's write lock on its own and the losers slept in SQLite's busy handler (1, 2, 5 ...
100 ms), long after the lock was free: most of a request's time under load.

Between processes (gunicorn workers) on one SQLite file, the writing thread of each holds an flock on
a file beside the database while it writes, so a waiting worker wakes the moment the other commits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import psycopg
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import Database, database_error_reason
from flight_delay.history.repository import insert_predictions

log = logging.getLogger(__name__)

WRITE_LOCK_SUFFIX = ".write-lock"


def not_recorded(reason: str) -> HistoryUnavailable:
    """The refusal of a request whose rows were not (or may not have been) committed, with why."""
    return HistoryUnavailable(
        f"The prediction could not be recorded in the history, so it is not served: {reason}."
    )


# The database itself failed (unreachable, restarting): as SQLAlchemy raises it, or as psycopg does
# to the PostgreSQL event-loop writer, which talks to the driver directly.
DATABASE_FAILURES = (OperationalError, psycopg.OperationalError)


def written_alone_after(exc: Exception, requests: int) -> bool:
    """Tells whether a failed batch of several requests is retried one request at a time.

    Not when the database is unavailable (OperationalError: each would fail alike); otherwise the
    fault may lie in one request's rows, and the others must not be refused for it.
    """
    return requests > 1 and not isinstance(exc, DATABASE_FAILURES)


@runtime_checkable
class EventLoopWriter(Protocol):
    """What the event loop records through: the host writer's client (SQLite) or PostgresLoopWriter.

    One interface, one implementation per backend, so that the ASGI front answers alike on both.
    """

    async def record(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Commits the rows and returns their ids in order; raises HistoryUnavailable if they were not."""
        ...


@dataclass(eq=False)
class PendingWrite:
    """One request's rows, and once written, their ids or the error that refused them."""

    rows: Sequence[Mapping[str, Any]]
    ids: list[int] | None = None
    error: BaseException | None = None
    done: bool = False


class ProcessWriteLock:
    """An exclusive flock on `<database>.write-lock`, held by this process's writing thread.

    Opened once per process: a descriptor inherited through fork would share the lock with the parent.
    Without a file (in-memory or server database, or a folder that refuses it) it orders nothing.
    """

    def __init__(self) -> None:
        self._fd: int | None = None
        self._pid: int | None = None

    @contextmanager
    def held(self, database_file: Path | None) -> Iterator[None]:
        """Holds the lock for the block (blocking until the other process's commit ends)."""
        fd = self._descriptor(database_file)
        if fd is None:
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _descriptor(self, database_file: Path | None) -> int | None:
        """Opens the lock file once in this process; None when there is no file to lock."""
        if database_file is None:
            return None
        if self._pid != os.getpid():
            self._pid, self._fd = os.getpid(), None
            path = database_file.with_name(database_file.name + WRITE_LOCK_SUFFIX)
            try:
                self._fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:  # only slower without it: SQLite's own lock still orders writers
                log.warning("no write lock file %s (%s): writers wait in SQLite's busy handler", path, exc)
        return self._fd


class HistoryWriter:
    """Records prediction rows, committing those of every waiting request in one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._changed = threading.Condition()
        self._queue: list[PendingWrite] = []
        self._writing = False
        self._process_lock = ProcessWriteLock()

    def record(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Commits the rows and returns their ids in order; raises HistoryUnavailable if they were not."""
        pending = PendingWrite(rows)
        batch = self._wait_for_turn(pending)
        if batch is not None:
            self._lead(batch)
        if isinstance(pending.error, SQLAlchemyError):
            raise not_recorded(database_error_reason(pending.error)) from pending.error
        if pending.error is not None:  # not the database's doing: a fault of ours, answered as one
            raise RuntimeError("recording the predictions failed") from pending.error
        assert pending.ids is not None
        return pending.ids

    def _wait_for_turn(self, pending: PendingWrite) -> list[PendingWrite] | None:
        """Queues the rows; returns the queue to write when this request leads, None once written."""
        with self._changed:
            self._queue.append(pending)
            while self._writing and not pending.done:
                self._changed.wait()
            if pending.done:
                return None
            batch, self._queue = self._queue, []
            self._writing = True
            return batch

    def _lead(self, batch: list[PendingWrite]) -> None:
        """Writes a batch, then wakes its requests and whoever queued meanwhile (one of them leads next)."""
        try:
            self._write(batch)
        except BaseException as exc:  # interrupted: no request may wait forever or pass unrecorded
            for pending in batch:
                if pending.ids is None and pending.error is None:
                    pending.error = exc
            raise
        finally:
            with self._changed:
                self._writing = False
                for pending in batch:
                    pending.done = True
                self._changed.notify_all()

    def _write(self, batch: list[PendingWrite]) -> None:
        """Commits the batch's rows in one transaction and hands each request its ids, or the error."""
        try:
            ids = self._commit([row for pending in batch for row in pending.rows])
        except Exception as exc:
            if written_alone_after(exc, len(batch)):
                for pending in batch:
                    self._write([pending])
                return
            for pending in batch:
                pending.error = exc
            return
        start = 0
        for pending in batch:
            pending.ids = ids[start : start + len(pending.rows)]
            start += len(pending.rows)

    def _commit(self, rows: list[Mapping[str, Any]]) -> list[int]:
        """Inserts and commits rows under this host's write lock; returns their ids."""
        with self._process_lock.held(self.db.sqlite_path()):
            return insert_predictions(self.db, rows)
