"""The host's history writer: workers' rows committed together, each request answered with its own ids."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import uvloop

from flight_delay.errors import HistoryUnavailable
from flight_delay.history import host_writer
from flight_delay.history.database import Database
from flight_delay.history.host_writer import (
    MAX_FRAME_BYTES,
    READ_SIZE,
    EventLoopWriterClient,
    FrameReader,
    HostWriterServer,
    frame,
)
from flight_delay.history.migrate import upgrade
from flight_delay.history.models import ModelVersion
from tests.databases import write_lock
from tests.factories import minimal_flight
from tests.servers import command_line, serve, upload_model
from tests.test_history_writer import (
    VERSION,
    WAIT_SECONDS,
    Requests,
    record_from_threads,
    rows,
    stored,
    wait_until,
)

pytestmark = pytest.mark.sqlite_only  # the host writer serves SQLite files only


def migrated(database_url: str, busy_timeout_ms: int) -> Database:
    """A migrated database with the model version the rows name."""
    upgrade(database_url)
    db = Database().bind(database_url, busy_timeout_ms=busy_timeout_ms)
    with db.transaction() as session:
        session.add(ModelVersion(version=VERSION, kind="test", filename=None, size_bytes=1, details={}))
    return db


class LoopClient:
    """A worker's EventLoopWriterClient on an event loop of its own, called from any thread like requests."""

    def __init__(self, db: Database, socket_path: str) -> None:
        self.client = EventLoopWriterClient(db, socket_path, WAIT_SECONDS)
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def record(self, rows: list[dict[str, Any]]) -> list[int]:
        """Records the rows on the client's loop and waits for their ids (or its exception)."""
        return asyncio.run_coroutine_threadsafe(self.client.record(rows), self.loop).result(2 * WAIT_SECONDS)

    def waiting(self) -> int:
        """How many requests sent on the connection wait for their answer."""
        connection = self.client.connection
        return 0 if connection is None else len(connection.waiting)

    def connected(self) -> bool:
        """Whether the client holds a connection it would send on."""
        return self.client.connection is not None and self.client.connection.usable

    def close(self) -> None:
        """Stops the loop and its thread."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT_SECONDS)
        self.loop.close()


@pytest.fixture
def loop_client(db: Database, socket_path: str) -> Iterator[LoopClient]:
    """A client of the writer at `socket_path` (started or not), on its own event loop."""
    client = LoopClient(db, socket_path)
    yield client
    client.close()


def read_frame(connection: socket.socket) -> bytes:
    """Reads one whole frame from a blocking socket, as a raw client of the writer."""
    reader = FrameReader()
    while True:
        data = connection.recv(READ_SIZE)
        assert data, "the writer closed the connection"
        frames = reader.feed(data)
        if frames:
            return frames[0]


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The database the writer and the clients share, with a long lock wait."""
    database = migrated(database_url, busy_timeout_ms=20_000)
    yield database
    database.dispose()


@pytest.fixture
def socket_path() -> Iterator[str]:
    """A socket path in a short private folder (a Unix socket's path must fit in 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="writer-")
    yield os.path.join(folder, "writer.sock")
    shutil.rmtree(folder)


@contextmanager
def writer_serving(db: Database, socket_path: str) -> Iterator[HostWriterServer]:
    """Runs a writer on `socket_path` in a thread until the block ends."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    server = HostWriterServer(db, listener)
    stop_reading, stop_writing = os.pipe()
    thread = threading.Thread(target=server.serve, args=(stop_reading,))
    thread.start()
    try:
        yield server
    finally:
        os.close(stop_writing)  # what the server's exit does to the real writer's stdin
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive(), "the writer did not stop when its pipe closed"
        os.close(stop_reading)
        listener.close()


@pytest.fixture
def held_commits(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Holds the writer's first commit until released; notes the rows per commit."""
    state: dict[str, Any] = {"release": threading.Event(), "entered": threading.Event(), "sizes": []}
    insert = host_writer.insert_sqlite_rows

    def held_insert(db: Database, parameters: list[Any]) -> list[int]:
        state["sizes"].append(len(parameters))
        if len(state["sizes"]) == 1:
            state["entered"].set()
            assert state["release"].wait(WAIT_SECONDS)
        return insert(db, parameters)

    monkeypatch.setattr(host_writer, "insert_sqlite_rows", held_insert)
    yield state
    state["release"].set()


def test_frames_are_cut_whole_whatever_the_pieces_they_arrive_in() -> None:
    reader = FrameReader()
    data = frame(b"[1]") + frame(b"") + frame(b'{"first":7}')
    received = [f for i in range(len(data)) for f in reader.feed(data[i : i + 1])]
    assert received == [b"[1]", b"", b'{"first":7}']
    with pytest.raises(ValueError, match="frame of"):
        FrameReader().feed((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))


def test_rows_come_back_with_their_ids_and_read_as_recorded(
    db: Database, socket_path: str, loop_client: LoopClient
) -> None:
    given = rows("r1", count=3)
    with writer_serving(db, socket_path):
        ids = loop_client.record(given)
    found = stored(db)
    assert sorted(found) == ids
    for row_id, row in zip(ids, given, strict=True):
        assert found[row_id].created_at == row["created_at"]
        assert found[row_id].input == row["input"]
        assert (found[row_id].request_id, found[row_id].arr_delay) == ("r1", row["arr_delay"])


def test_requests_waiting_on_a_commit_share_the_next_one(
    db: Database, socket_path: str, held_commits: dict[str, Any], loop_client: LoopClient
) -> None:
    with writer_serving(db, socket_path) as server:
        sent = Requests(loop_client)  # type: ignore[arg-type]
        sent.start("first", rows("first"))
        assert held_commits["entered"].wait(WAIT_SECONDS)
        for n in range(5):
            sent.start(f"queued-{n}", rows(f"queued-{n}", count=n + 1))
        wait_until(lambda: loop_client.waiting() == 6, "five more requests are sent")
        held_commits["release"].set()
        results = sent.join()
    assert held_commits["sizes"] == [1, 15]
    assert (server.requests, server.transactions) == (6, 2)
    found = stored(db)
    for request_id, ids in results.items():
        assert isinstance(ids, list), ids
        assert {found[i].request_id for i in ids} == {request_id}
        assert [found[i].input["flight"] for i in ids] == list(range(len(ids)))


def test_a_request_whose_rows_fail_does_not_refuse_the_others(
    db: Database, socket_path: str, held_commits: dict[str, Any], loop_client: LoopClient
) -> None:
    with writer_serving(db, socket_path):
        sent = Requests(loop_client)  # type: ignore[arg-type]
        sent.start("first", rows("first"))
        assert held_commits["entered"].wait(WAIT_SECONDS)
        sent.start("good-1", rows("good-1", count=2))
        sent.start("bad", rows("bad", version="b" * 64))  # no such model: the foreign key refuses it
        sent.start("good-2", rows("good-2"))
        wait_until(lambda: loop_client.waiting() == 4, "three more requests are sent")
        held_commits["release"].set()
        results = sent.join()
    assert isinstance(results["bad"], HistoryUnavailable)
    assert results["bad"].message.endswith("so it is not served: FOREIGN KEY constraint failed.")
    assert {p.request_id for p in stored(db).values()} == {"first", "good-1", "good-2"}


def test_a_locked_database_refuses_the_waiting_requests_then_recovers(
    database_url: str, socket_path: str
) -> None:
    db = migrated(database_url, busy_timeout_ms=300)
    client = LoopClient(db, socket_path)
    try:
        with writer_serving(db, socket_path):
            sent = Requests(client)  # type: ignore[arg-type]
            with write_lock(database_url, "predictions"):
                for n in range(4):
                    sent.start(f"r{n}", rows(f"r{n}", count=2))
                results = sent.join()
            after = client.record(rows("after"))
        for result in results.values():
            assert isinstance(result, HistoryUnavailable), result
            assert result.message.endswith("so it is not served: database is locked.")
        assert [p.request_id for p in stored(db).values()] == ["after"]
        assert len(after) == 1
    finally:
        client.close()
        db.dispose()


def test_many_threads_get_their_own_rows(db: Database, socket_path: str, loop_client: LoopClient) -> None:
    with writer_serving(db, socket_path) as server:
        record_from_threads(loop_client, db)
    assert server.requests == 320


def test_without_a_writer_the_worker_writes_itself(
    db: Database, socket_path: str, loop_client: LoopClient
) -> None:
    client = loop_client

    before = client.record(rows("no writer yet"))
    with writer_serving(db, socket_path) as server:
        during = client.record(rows("writer up"))
    wait_until(lambda: not client.connected(), "the client sees its connection end")
    after = client.record(rows("writer gone"))  # no writer to reach: written here, once

    assert server.requests == 1
    found = stored(db)
    assert [found[i].request_id for i in before + during + after] == [
        "no writer yet",
        "writer up",
        "writer gone",
    ]
    assert len(found) == 3


def test_a_writer_that_takes_the_rows_and_dies_refuses_them(
    db: Database, socket_path: str, loop_client: LoopClient
) -> None:
    """The rows may or may not be committed: not served, and not written a second time here."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(1)

    def take_and_die() -> None:
        connection, _ = listener.accept()
        connection.recv(1024)
        connection.close()

    dying = threading.Thread(target=take_and_die)
    dying.start()
    try:
        with pytest.raises(HistoryUnavailable, match="the history writer did not answer"):
            loop_client.record(rows("lost"))
    finally:
        dying.join(WAIT_SECONDS)
        listener.close()
    assert stored(db) == {}


def test_the_writer_process_listens_then_stops_when_its_stdin_closes(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    from flight_delay.config import load_config
    from flight_delay.history.host_writer import HostWriterProcess

    process = HostWriterProcess(load_config({}, DATABASE_URL=database_url, DATA_DIR=tmp_path))
    process.start()
    try:
        assert os.path.exists(process.socket_path)
        client = LoopClient(db, process.socket_path)
        try:
            ids = client.record(rows("through the process"))
        finally:
            client.close()
    finally:
        process.stop()
    assert process.process is not None
    assert process.process.returncode == 0
    assert not process.folder.exists()
    assert [stored(db)[i].request_id for i in ids] == ["through the process"]


def test_a_request_the_writer_cannot_take_is_refused_and_the_writer_goes_on(
    db: Database, socket_path: str, loop_client: LoopClient
) -> None:
    with writer_serving(db, socket_path) as server:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
            raw.connect(socket_path)
            raw.sendall(frame(b"[1]"))  # JSON, but not rows
            answer = read_frame(raw)
        ids = loop_client.record(rows("after"))
    assert answer == b'{"error":"the history writer failed (TypeError)"}'
    assert server.requests == 2
    assert [p.request_id for p in stored(db).values()] == ["after"]
    assert ids == list(stored(db))


def test_a_writer_that_keeps_dying_is_restarted_later_each_time(tmp_path: Path) -> None:
    from flight_delay.config import load_config
    from flight_delay.history.host_writer import HostWriterProcess

    process = HostWriterProcess(load_config({}, DATA_DIR=tmp_path))
    process.command = [sys.executable, "-c", "pass"]  # a writer that exits as soon as it starts
    try:
        process.start(ready_within_s=0)
        first = process.process
        assert first is not None
        first.wait(WAIT_SECONDS)
        process.ensure_running()  # it died young: the restart waits a second
        assert process.process is first
        assert process.backoff_s == 1.0
        wait_until(lambda: (process.ensure_running(), process.process is not first)[1], "it is restarted")
        process.process.wait(WAIT_SECONDS)
        process.ensure_running()
        assert process.backoff_s == 2.0  # and died young again: twice as long
    finally:
        process.stop()


@pytest.mark.slow
def test_a_worker_leaving_leaves_the_writer_running(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with serve(tmp_path / "data", database_url) as server:
        upload_model(server.url, model_files(0))
        [writer] = server.writer_pids()
        socket_file = command_line(writer).split()[3]
        workers = server.worker_pids()
        victim = min(workers)
        os.kill(victim, signal.SIGTERM)  # a graceful exit: uvicorn stops serving, then the worker ends
        try:
            wait_until(
                lambda: victim not in server.worker_pids() and bool(server.worker_pids() - workers),
                "gunicorn replaces the worker",
            )
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; workers {server.worker_pids()}, log:\n{server.log()[-3000:]}"
            ) from exc
        assert os.path.exists(socket_file)
        assert server.writer_pids() == {writer}
        for n in range(6):  # on new connections, so that the new worker takes some
            response = requests.post(
                f"{server.url}/model/predict/",
                json=minimal_flight(),
                headers={"Connection": "close", "X-Request-ID": f"after-{n}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
        log = server.log()
    assert "the history writer" not in log.replace("[history writer", "")  # no restart, no fallback


def test_a_large_request_commits_its_own_rows(
    db: Database, socket_path: str, loop_client: LoopClient
) -> None:
    client = loop_client
    with writer_serving(db, socket_path) as server:
        shared = client.record(rows("shared", count=host_writer.SHARED_COMMIT_MAX_ROWS))
        alone = client.record(rows("alone", count=host_writer.SHARED_COMMIT_MAX_ROWS + 1))
    assert server.requests == 1  # the first only
    found = stored(db)
    assert {found[i].request_id for i in shared} == {"shared"}
    assert {found[i].request_id for i in alone} == {"alone"}
    assert len(found) == 2 * host_writer.SHARED_COMMIT_MAX_ROWS + 1


def test_rows_a_closed_connection_could_not_send_are_written_by_the_worker(
    db: Database, socket_path: str
) -> None:
    """uvloop raises on a write once the writer's end has closed, a loop iteration before EOF is read."""
    client = EventLoopWriterClient(db, socket_path, WAIT_SECONDS)

    def closed(data: bytes) -> None:
        raise RuntimeError(
            "unable to perform operation on <UnixTransport closed=True>; the handler is closed"
        )

    async def record_across_a_lost_connection() -> list[list[int]]:
        first = await client.record(rows("before"))
        assert client.connection is not None
        client.connection.writer.write = closed  # type: ignore[method-assign]
        after = await client.record(rows("after"))  # not sent: written by the worker, in a thread
        again = await client.record(rows("again"))  # a new connection to the writer
        return [first, after, again]

    with writer_serving(db, socket_path) as server:
        recorded = uvloop.run(record_across_a_lost_connection())

    found = stored(db)
    assert [[found[i].request_id for i in ids] for ids in recorded] == [["before"], ["after"], ["again"]]
    assert server.requests == 2
