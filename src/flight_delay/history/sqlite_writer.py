"""The SQLite backend of the history writer: commits through the host's writer process, or itself.

One process per host holds the only write connection (host_writer.py): each worker's group commit
sends its batch there over a Unix socket and awaits the answer, so every worker's waiting requests
share one transaction. When the writer cannot be reached (not started yet, restarting), or a batch
has too many rows to be worth shipping, the worker commits itself, in a thread, under an flock beside
the database: a waiting process then wakes the moment the other commits, rather than sleeping in
SQLite's busy handler.

Frames, both ways: a 4-byte big-endian length, then JSON. A request is a list of rows, each the
values SQLite stores (repository.stored_values); an answer is {"first": id} (the rows are numbered
from it, in order) or {"error": why}.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import Database
from flight_delay.history.repository import insert_sqlite_rows, stored_values
from flight_delay.history.writer import not_recorded

log = logging.getLogger(__name__)

WRITE_LOCK_SUFFIX = ".write-lock"
LENGTH = struct.Struct("!I")
MAX_FRAME_BYTES = 256 * 1024 * 1024  # a batch of 10,000 flights is ~3 MB; anything far beyond is a fault
# A batch of more rows pays for its own commit many times over: shipping them to the writer would
# cost a serialization and a copy per row more than sharing the commit saves. The worker writes it.
SHARED_COMMIT_MAX_ROWS = 64


def frame(payload: bytes) -> bytes:
    """Prefixes a payload with its length."""
    return LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """Reads one whole frame; IncompleteReadError at the end of the stream, ValueError for garbage."""
    (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
    if size > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {size} bytes")
    return await reader.readexactly(size)


class ProcessWriteLock:
    """An exclusive flock on `<database>.write-lock`, held by this process while it commits.

    Opened once per process: a descriptor inherited through fork would share the lock with the parent.
    Without a file (in-memory database, or a folder that refuses it) it orders nothing.
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


class SqliteCommitter:
    """Commits stored values on this process's own connection, under the host's write lock (blocking)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.lock = ProcessWriteLock()

    def commit_now(self, values: Sequence[Sequence[Any]]) -> list[int]:
        """Inserts and commits the values in one transaction; returns their ids."""
        with self.lock.held(self.db.sqlite_path()):
            return insert_sqlite_rows(self.db, values)


def ended(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Whether an idle connection to the writer was closed by either side (a writer restarting, say)."""
    return writer.is_closing() or reader.at_eof()


class SqliteBackend:
    """A worker loop's SQLite backend: a batch goes to the host's writer, or is committed here in a thread."""

    def __init__(self, db: Database, socket_path: str | None, timeout_s: float) -> None:
        self.db = db
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.local = SqliteCommitter(db)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def commit(self, rows: list[Mapping[str, Any]]) -> list[int]:
        """Commits the rows in one transaction (the writer's, shared, or this worker's); their ids."""
        values = stored_values(rows, self.db.bound_engine().dialect)
        if self.socket_path and len(values) <= SHARED_COMMIT_MAX_ROWS:
            streams = await self._streams()
            if streams is not None:
                return await self._through_writer(streams, values)
        return await asyncio.to_thread(self.local.commit_now, values)

    async def _streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The open connection to the writer, opened if needed; None while it cannot be reached."""
        if self.streams is not None and not ended(*self.streams):
            return self.streams
        self.close()
        try:
            self.streams = await asyncio.open_unix_connection(self.socket_path)
        except OSError:
            self.streams = None
        return self.streams

    async def _through_writer(
        self, streams: tuple[asyncio.StreamReader, asyncio.StreamWriter], values: list[tuple[Any, ...]]
    ) -> list[int]:
        """Sends the rows to the writer and awaits its answer; a writer gone silent refuses them.

        Rows the connection could not send (uvloop raises on a write once the writer's end closed, a
        loop iteration before EOF is read) are this worker's to write; rows sent and not answered may
        or may not be committed, and are refused.
        """
        reader, writer = streams
        try:
            writer.write(frame(orjson.dumps(values)))
        except (OSError, RuntimeError):
            self.close()
            return await asyncio.to_thread(self.local.commit_now, values)
        try:
            async with asyncio.timeout(self.timeout_s):  # (no task, as wait_for makes one per call)
                answer = orjson.loads(await read_frame(reader))
        except TimeoutError as exc:
            self.close()
            raise not_recorded("the history writer did not answer in time") from exc
        except (OSError, EOFError, ValueError, RuntimeError) as exc:  # uvloop: "the handler is closed"
            self.close()
            raise not_recorded(f"the history writer did not answer ({type(exc).__name__})") from exc
        except BaseException:  # cancelled while its answer is due: the next would read this one's
            self.close()
            raise
        if "error" in answer:
            raise HistoryUnavailable(answer["error"])
        return list(range(answer["first"], answer["first"] + len(values)))

    def close(self) -> None:
        """Closes the connection to the writer, if any."""
        streams, self.streams = self.streams, None
        if streams is None:
            return
        with contextlib.suppress(RuntimeError):  # its loop has closed: the connection went with it
            streams[1].close()
