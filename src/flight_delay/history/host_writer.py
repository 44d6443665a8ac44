"""One history writer per host for a SQLite history: gunicorn's workers hand it their rows over a Unix socket.

Each worker committing its own requests paid SQLite's fixed cost per transaction (BEGIN IMMEDIATE,
the WAL frames, fsync, the page cache the other worker's commit invalidated) for about two requests.
One process holding the only write connection commits every worker's waiting requests in one
transaction, through the same group commit as each worker's loop (writer.GroupCommit): while it
commits, the next requests queue in their sockets and are the next batch.

A request still returns only after its own rows are committed: the worker waits for the writer's
answer (sqlite_writer.SqliteBackend). The frames are sqlite_writer's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import uvloop

from flight_delay.children import end_child
from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import Database
from flight_delay.history.sqlite_writer import SqliteCommitter, frame, read_frame
from flight_delay.history.writer import GroupCommit

log = logging.getLogger(__name__)


class BlockingSqlite:
    """The writer's backend: commits on the loop itself, blocking it on purpose.

    While a commit runs, the workers' next frames wait in their sockets; the loop reads them all
    right after, and they are the next batch. The writer process does nothing else.
    """

    def __init__(self, db: Database) -> None:
        self.committer = SqliteCommitter(db)

    async def commit(self, rows: list[list[Any]]) -> list[int]:
        """Inserts the stored values in one committed transaction; their ids."""
        return self.committer.commit_now(rows)

    def close(self) -> None:
        """Nothing to let go of: the engine's connections close with the process."""


class HostWriterServer:
    """The writer process: takes workers' connections and commits their rows in shared transactions."""

    def __init__(self, db: Database, interval_s: float = 0.0) -> None:
        self.engine = GroupCommit(BlockingSqlite(db), interval_s)
        self.requests = 0
        self.connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def serve(self, listener: socket.socket, parent: int) -> None:
        """Serves until the parent closes its end of the pipe `parent` (the server has stopped)."""
        server = await asyncio.start_unix_server(self.connection, sock=listener)
        parent_gone = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_reader(parent, lambda: os.read(parent, 1) or parent_gone.set())
        try:
            await parent_gone.wait()
        finally:
            loop.remove_reader(parent)
            server.close()
            await self._hang_up()

    async def _hang_up(self) -> None:
        """Closes the workers' connections and waits for their handlers to end (nothing left pending)."""
        for writer in self.connections.values():
            writer.close()
        await asyncio.gather(*self.connections, return_exceptions=True)

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers one worker's frames in order until it goes; garbage closes the connection."""
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = writer
        try:
            while True:
                payload = await read_frame(reader)
                writer.write(frame(orjson.dumps(await self.answer(orjson.loads(payload)))))
        except (OSError, EOFError, ValueError) as exc:  # IncompleteReadError is an EOFError
            if not isinstance(exc, asyncio.IncompleteReadError) or exc.partial:
                log.warning("history writer: dropping a connection: %s", exc)
        finally:
            del self.connections[task]
            writer.close()

    async def answer(self, rows: list[list[Any]]) -> dict[str, Any]:
        """Commits one request's rows with the others waiting; the first id, or why not."""
        self.requests += 1
        try:
            ids = await self.engine.record(rows)
        except HistoryUnavailable as exc:
            return {"error": exc.message}
        except Exception as exc:  # answered whatever it is: the writer must outlive any one request
            log.error("history writer: a request failed", exc_info=exc)
            return {"error": f"the history writer failed ({type(exc).__name__})"}
        return {"first": ids[0]} if ids else {"error": "no rows"}


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
            end_child(self.process, timeout_s)
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
    server = HostWriterServer(db, args.commit_interval_ms / 1000)
    try:
        uvloop.run(server.serve(listener, sys.stdin.fileno()))  # the workers' loop: far less per frame
    finally:
        log.info("stopping: %d requests recorded in %d transactions", server.requests, server.engine.commits)
        listener.close()
        Path(args.socket_path).unlink(missing_ok=True)
        db.dispose()


if __name__ == "__main__":
    main()
