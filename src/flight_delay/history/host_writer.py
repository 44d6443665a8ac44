"""One history writer per host for a SQLite history: gunicorn's workers hand it their rows over a Unix socket.

Each worker committing its own requests paid SQLite's fixed cost per transaction (BEGIN IMMEDIATE,
the WAL frames, fsync, the page cache the other worker's commit invalidated) for about two requests.
One process holding the only write connection commits every worker's waiting requests in one
transaction: while it commits, the next requests queue in their sockets and are the next batch.

A request still returns only after its own rows are committed: the worker waits for the writer's
answer (the ids, or why it failed), on its event loop (EventLoopWriterClient). When the writer cannot
be reached (not started yet, restarting) the worker writes itself; when it stops answering after
taking the rows, nothing is served (the rows may or may not be committed), as for any failed write.

Frames, both ways: a 4-byte big-endian length, then JSON. A request is a list of rows, each the
values SQLite stores (repository.stored_values); an answer is {"first": id} (the rows are
numbered from it, in order) or {"error": reason}.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from flight_delay.history.database import Database, database_error_reason
from flight_delay.history.repository import insert_sqlite_rows, stored_values
from flight_delay.history.writer import HistoryWriter, ProcessWriteLock, not_recorded, written_alone_after
from flight_delay.loop_lock import LoopLock

log = logging.getLogger(__name__)

LENGTH = struct.Struct("!I")
MAX_FRAME_BYTES = 256 * 1024 * 1024  # a batch of 10,000 flights is ~3 MB; anything far beyond is a fault
READ_SIZE = 256 * 1024
# A request of more rows pays for its own commit many times over: shipping them to the writer would
# cost a serialization and a copy per row more than sharing the commit saves. It writes itself.
SHARED_COMMIT_MAX_ROWS = 64


class FrameReader:
    """Collects the bytes a connection sends and cuts them into whole frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Adds received bytes; returns the frames now complete."""
        self.buffer += data
        frames = []
        while len(self.buffer) >= LENGTH.size:
            (size,) = LENGTH.unpack_from(self.buffer)
            if size > MAX_FRAME_BYTES:
                raise ValueError(f"frame of {size} bytes")
            end = LENGTH.size + size
            if len(self.buffer) < end:
                break
            frames.append(bytes(self.buffer[LENGTH.size : end]))
            del self.buffer[:end]
        return frames


def frame(payload: bytes) -> bytes:
    """Prefixes a payload with its length."""
    return LENGTH.pack(len(payload)) + payload


def ids_from(answer: Mapping[str, Any], count: int) -> list[int]:
    """The ids of a request's `count` rows from the writer's answer; raises if it refused them."""
    if "error" in answer:
        raise not_recorded(answer["error"])
    first = answer["first"]
    return list(range(first, first + count))


class HostWriterServer:
    """The writer process: accepts workers' connections and commits their rows in shared transactions."""

    def __init__(self, db: Database, listener: socket.socket, interval_s: float = 0.0) -> None:
        self.db = db
        self.interval_s = interval_s
        self.last_commit = 0.0
        self.listener = listener
        self.selector = selectors.DefaultSelector()
        self.readers: dict[socket.socket, FrameReader] = {}
        self.lock = ProcessWriteLock()  # workers writing themselves (fallback) take it too
        self.requests = self.transactions = 0

    def serve(self, parent: int) -> None:
        """Serves until the parent closes its end of the pipe `parent` (the server has stopped)."""
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.selector.register(parent, selectors.EVENT_READ)
        try:
            self._loop(parent)
        finally:
            # A worker waiting on one gets a 503 (its rows' fate unknown); one sending next writes itself.
            for connection in list(self.readers):
                self._close(connection)
            self.selector.close()

    def _loop(self, parent: int) -> None:
        """Accepts, reads and commits until the parent's pipe closes."""
        while True:
            batch: list[tuple[socket.socket, list[list[Any]]]] = []
            events = self.selector.select()
            # Under load, commit at most once per interval: the requests that arrive meanwhile
            # share the transaction. A request arriving after a quiet spell is written at once.
            wait = self.last_commit + self.interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                events = self.selector.select(0)
            for key, _ in events:
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj == parent:
                    if not os.read(parent, 1):
                        return
                else:
                    batch.extend(self._receive(key.fileobj))  # type: ignore[arg-type]
            if batch:
                self.requests += len(batch)
                self._write(batch)

    def _accept(self) -> None:
        """Takes every pending connection."""
        while True:
            try:
                connection, _ = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # out of descriptors, say: that worker writes itself meanwhile
                log.warning("history writer: cannot accept a connection: %s", exc)
                return
            connection.setblocking(True)  # answers are small; reads happen only once readable
            self.readers[connection] = FrameReader()
            self.selector.register(connection, selectors.EVENT_READ)

    def _receive(self, connection: socket.socket) -> list[tuple[socket.socket, list[list[Any]]]]:
        """Reads what a connection sent; returns its whole requests (closing it at EOF or on garbage)."""
        try:
            data = connection.recv(READ_SIZE)
            if data:
                return [(connection, orjson.loads(f)) for f in self.readers[connection].feed(data)]
        except (OSError, ValueError) as exc:
            log.warning("history writer: dropping a connection: %s", exc)
        self._close(connection)
        return []

    def _close(self, connection: socket.socket) -> None:
        """Forgets and closes a connection (once)."""
        if self.readers.pop(connection, None) is None:
            return
        self.selector.unregister(connection)
        connection.close()

    def _write(self, batch: list[tuple[socket.socket, list[list[Any]]]]) -> None:
        """Commits the batch in one transaction and answers each request; alone each, if a row is refused."""
        try:
            first = self._commit([row for _, rows in batch for row in rows])
        except Exception as exc:  # answered whatever it is: the writer must outlive any one request
            if written_alone_after(exc, len(batch)):
                for request in batch:
                    self._write([request])
                return
            if isinstance(exc, SQLAlchemyError):
                reason = database_error_reason(exc)
            else:
                log.error("history writer: a batch failed", exc_info=exc)
                reason = f"the history writer failed ({type(exc).__name__})"
            answer = orjson.dumps({"error": reason})
            for connection, _ in batch:
                self._answer(connection, answer)
            return
        for connection, rows in batch:
            self._answer(connection, orjson.dumps({"first": first}))
            first += len(rows)

    def _commit(self, rows: list[list[Any]]) -> int:
        """Inserts the rows in one committed transaction; returns the first id."""
        self.transactions += 1
        self.last_commit = time.monotonic()
        with self.lock.held(self.db.sqlite_path()):
            return insert_sqlite_rows(self.db, rows)[0]

    def _answer(self, connection: socket.socket, answer: bytes) -> None:
        """Sends an answer; a worker gone meanwhile only loses its connection."""
        try:
            connection.sendall(frame(answer))
        except OSError:
            self._close(connection)


class EventLoopWriterClient:
    """A worker's side: its requests share one connection to the writer, without blocking the loop.

    Requests are pipelined: each sends its frame and waits for its answer, and the writer answers a
    connection's requests in the order it received them, so the answers are matched in that order.
    When the writer cannot be reached (not started yet, restarting), or a request has too many rows to
    share a commit, the worker writes the rows itself, in a thread, through its own HistoryWriter.
    """

    def __init__(self, db: Database, socket_path: str, timeout_s: float) -> None:
        self.db = db
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self.local = HistoryWriter(db)
        self.connection: PipelinedConnection | None = None
        self.connecting = LoopLock()

    async def record(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Commits the rows and returns their ids in order; raises HistoryUnavailable if they were not."""
        sent = await self._sent(rows) if len(rows) <= SHARED_COMMIT_MAX_ROWS else None
        if sent is None:
            return await asyncio.get_running_loop().run_in_executor(None, self.local.record, rows)
        connection, pending_answer = sent
        try:
            reply = await asyncio.wait_for(pending_answer, self.timeout_s)
        except TimeoutError as exc:
            # A writer silent this long is hung: the requests waiting behind this one are refused
            # now (their rows' fate unknown, as for a writer that died), not each after its timeout.
            connection.close(exc)
            raise not_recorded("the history writer did not answer in time") from exc
        except ConnectionError as exc:
            raise not_recorded(f"the history writer did not answer ({exc})") from exc
        return ids_from(reply, len(rows))

    async def _sent(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[PipelinedConnection, asyncio.Future[dict[str, Any]]] | None:
        """Sends the rows to the writer: the connection and its answer to come; None if not taken."""
        connection = await self._connection()
        if connection is None:
            return None
        try:
            return connection, connection.send(stored_values(rows, self.db.bound_engine().dialect))
        except ConnectionError:  # the writer went away before taking the rows: they are ours to write
            return None

    async def _connection(self) -> PipelinedConnection | None:
        """The loop's open connection to the writer, opened if needed; None if it cannot be reached."""
        if self.connection is not None and self.connection.usable:
            return self.connection
        async with self.connecting():  # one connection, however many requests find it closed at once
            if self.connection is None or not self.connection.usable:
                try:
                    reader, writer = await asyncio.open_unix_connection(self.socket_path)
                except OSError:
                    return None
                self.connection = PipelinedConnection(reader, writer)
        return self.connection


class PipelinedConnection:
    """One connection to the writer: frames sent in order, answers handed out in that order."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: deque[asyncio.Future[dict[str, Any]]] = deque()
        self.open = True
        self.reading = asyncio.get_running_loop().create_task(self._read_answers(reader))

    @property
    def usable(self) -> bool:
        """Whether requests may still be sent: not closed by us, nor by the writer going away.

        The transport closes as soon as the writer is gone, an iteration of the loop before the
        reading task sees the end; writing to it then would raise (uvloop) rather than fail the request.
        """
        return self.open and not self.writer.is_closing()

    def send(self, rows: list[list[Any]]) -> asyncio.Future[dict[str, Any]]:
        """Sends one request's rows; returns the future of its answer; ConnectionError if not sent."""
        if not self.usable:
            raise ConnectionError("the connection to the history writer is closed")
        request = frame(orjson.dumps(rows))  # built first: a waiter must never be queued without its frame
        pending_answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        try:
            self.writer.write(request)
        except (OSError, RuntimeError) as exc:  # uvloop: "the handler is closed"
            self.close(exc)
            raise ConnectionError(f"the history writer's connection failed: {exc}") from exc
        self.waiting.append(pending_answer)
        return pending_answer

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        """Hands each answer to the oldest request waiting; on EOF or garbage, fails those left."""
        try:
            while True:
                (size,) = LENGTH.unpack(await reader.readexactly(LENGTH.size))
                answer = orjson.loads(await reader.readexactly(size))
                waiter = self.waiting.popleft()
                if not waiter.done():  # a request that timed out or was cancelled left its place
                    waiter.set_result(answer)
        except (OSError, EOFError, ValueError, IndexError) as exc:  # IncompleteReadError is an EOFError
            self.close(ConnectionError(f"the connection ended: {type(exc).__name__}"))

    def close(self, reason: BaseException) -> None:
        """Closes the connection, failing every request still waiting with `reason`."""
        self.open = False
        self.writer.close()
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectionError(str(reason) or type(reason).__name__))


class HostWriterProcess:
    """Runs the writer process beside gunicorn: started before the workers, restarted if it dies.

    The workers inherit the write end of the writer's stdin, so the writer reads EOF, and stops, only
    once the server and every worker are gone: no worker can be left without it at shutdown.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        # A private folder (0700): only this user may reach the socket, and so write the history.
        self.folder = Path(tempfile.mkdtemp(prefix="flight-delay-writer-"))
        self.socket_path = str(self.folder / "writer.sock")
        self.command = [
            sys.executable,
            "-m",
            "flight_delay.history.host_writer",
            self.socket_path,
            config["DATABASE_URL"],
            f"--busy-timeout-ms={config['SQLITE_BUSY_TIMEOUT_MS']}",
            f"--synchronous={config['SQLITE_SYNCHRONOUS']}",
            f"--commit-interval-ms={config['SQLITE_COMMIT_INTERVAL_MS']}",
            f"--log-level={config['LOG_LEVEL']}",
        ]
        self.owner = os.getpid()  # forked workers inherit this object; only the server may stop it
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.backoff_s = 0.0
        self.restart_at: float | None = None

    def start(self, ready_within_s: float = 30.0) -> None:
        """Starts the writer; waits at most `ready_within_s` until it listens (workers write meanwhile)."""
        Path(self.socket_path).unlink(missing_ok=True)  # one left by a writer that was killed
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE)  # noqa: S603 (our own command)
        self.started_at = time.monotonic()
        deadline = self.started_at + ready_within_s
        while not os.path.exists(self.socket_path) and time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        if ready_within_s and not os.path.exists(self.socket_path):
            log.error("the history writer is not listening: each worker writes the history itself")

    def ensure_running(self) -> None:
        """Restarts a writer that stopped, without waiting for it, backing off while it keeps failing."""
        if self.process is None or self.process.poll() is None:
            return
        now = time.monotonic()
        if self.restart_at is None:
            # (Its exit status is gunicorn's: the arbiter reaps every child it has.)
            died_young = now - self.started_at < 10
            self.backoff_s = min(60.0, max(1.0, self.backoff_s * 2)) if died_young else 0.0
            self.restart_at = now + self.backoff_s
            log.error("the history writer stopped; restarting it in %.0f s", self.backoff_s)
        if now >= self.restart_at:
            self.restart_at = None
            self.start(ready_within_s=0)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stops the writer, from the server only: with its stdin closed it ends once the workers are gone."""
        if os.getpid() != self.owner:  # a worker leaving serve() through SystemExit
            return
        if self.process is not None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the writer process (started by HostWriterProcess; stops when its stdin closes)."""
    parser = argparse.ArgumentParser(description="The host's history writer (started by flight-delay serve).")
    parser.add_argument("socket_path")
    parser.add_argument("database_url")
    parser.add_argument("--busy-timeout-ms", type=int, default=5000)
    parser.add_argument("--synchronous", default="FULL")
    parser.add_argument("--commit-interval-ms", type=float, default=0.0)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s [history writer %(process)d] %(message)s")
    # The server's signals are for gunicorn: the writer stays until the workers are gone (stdin closes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    db = Database().bind(
        args.database_url, busy_timeout_ms=args.busy_timeout_ms, synchronous=args.synchronous
    )
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.socket_path + ".new")
    listener.listen(256)
    os.replace(args.socket_path + ".new", args.socket_path)  # appears only once it listens
    log.info("listening on %s", args.socket_path)
    server = HostWriterServer(db, listener, args.commit_interval_ms / 1000)
    try:
        server.serve(sys.stdin.fileno())
    finally:
        log.info("stopping: %d requests recorded in %d transactions", server.requests, server.transactions)
        listener.close()
        Path(args.socket_path).unlink(missing_ok=True)
        db.dispose()


if __name__ == "__main__":
    main()
