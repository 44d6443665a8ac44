"""The host's history writer (SQLite): workers' rows committed together, each request given its ids."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import uvloop

from flight_delay.config import load_config
from flight_delay.errors import HistoryUnavailable
from flight_delay.history import sqlite_writer
from flight_delay.history.database import Database
from flight_delay.history.host_writer import HostWriterProcess, HostWriterServer
from flight_delay.history.sqlite_writer import MAX_FRAME_BYTES, SHARED_COMMIT_MAX_ROWS, SqliteBackend, frame
from flight_delay.history.writer import LoopHistoryWriter
from tests.databases import write_lock
from tests.factories import minimal_flight
from tests.servers import command_line, serve, upload_model
from tests.writers import WAIT_SECONDS, Gated, LoopThread, migrated, rows, stored, wait_until

pytestmark = pytest.mark.sqlite_only  # the host writer serves SQLite files only


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """The database the writer and the workers share, with a long lock wait."""
    database = migrated(database_url, busy_timeout_ms=20_000)
    yield database
    database.dispose()


@pytest.fixture
def socket_path() -> Iterator[str]:
    """A socket path in a short private folder (a Unix socket's path must fit in 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="writer-")
    yield os.path.join(folder, "writer.sock")
    shutil.rmtree(folder)


def worker_writer(db: Database, socket_path: str, timeout_s: float = WAIT_SECONDS) -> LoopHistoryWriter:
    """A worker's writer: its group commit, sending each batch to the host's writer at `socket_path`."""
    return LoopHistoryWriter(lambda: SqliteBackend(db, socket_path, timeout_s))


@pytest.fixture
def worker(db: Database, socket_path: str) -> Iterator[tuple[LoopHistoryWriter, LoopThread]]:
    """A worker's writer and its event loop (in a thread)."""
    loop = LoopThread()
    writer = worker_writer(db, socket_path)
    yield writer, loop
    loop.run(_closed(writer))
    loop.close()


async def _closed(writer: LoopHistoryWriter) -> None:
    """Closes the writer's connections on its own loop."""
    writer.close()


def listening(socket_path: str, backlog: int = 1) -> socket.socket:
    """A Unix socket listening on `socket_path`: where a worker finds its host writer (or a fake one)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(backlog)
    return listener


@contextmanager
def writer_serving(db: Database, socket_path: str) -> Iterator[HostWriterServer]:
    """Runs a host writer on `socket_path` in a thread until the block ends."""
    listener = listening(socket_path, 64)
    server = HostWriterServer(db)
    stop_reading, stop_writing = os.pipe()
    thread = threading.Thread(target=uvloop.run, args=(server.serve(listener, stop_reading),))  # as served
    thread.start()
    try:
        yield server
    finally:
        os.close(stop_writing)  # what the server's exit does to the real writer's stdin
        thread.join(WAIT_SECONDS)
        assert not thread.is_alive(), "the writer did not stop when its pipe closed"
        os.close(stop_reading)
        listener.close()


def raw_exchange(socket_path: str, payload: bytes) -> bytes:
    """Sends one frame to the writer as a raw client and returns the payload of its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(socket_path)
        raw.sendall(frame(payload))
        data = b""
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            chunk = raw.recv(65536)
            assert chunk, "the writer closed the connection"
            data += chunk
    return data[4:]


def test_frames_are_cut_whole_whatever_the_pieces_they_arrive_in() -> None:
    async def read_all(data: bytes) -> list[bytes]:
        reader = asyncio.StreamReader()
        for i in range(len(data)):
            reader.feed_data(data[i : i + 1])
        reader.feed_eof()
        return [await sqlite_writer.read_frame(reader) for _ in range(3)]

    data = frame(b"[1]") + frame(b"") + frame(b'{"first":7}')
    assert asyncio.run(read_all(data)) == [b"[1]", b"", b'{"first":7}']
    with pytest.raises(ValueError, match="frame of"):
        asyncio.run(read_all((MAX_FRAME_BYTES + 1).to_bytes(4, "big")))


def test_rows_come_back_with_their_ids_and_read_as_recorded(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    writer, loop = worker
    given = rows("r1", count=3)
    with writer_serving(db, socket_path) as server:
        ids = loop.run(writer.record(given))
    assert server.requests == 1
    found = stored(db)
    assert sorted(found) == ids
    for row_id, row in zip(ids, given, strict=True):
        assert found[row_id].created_at == row["created_at"]
        assert (found[row_id].request_id, found[row_id].arr_delay) == ("r1", row["arr_delay"])


def test_workers_waiting_on_a_commit_share_the_next_one(db: Database, socket_path: str) -> None:
    """Three workers' requests that arrive while the writer commits: all in its next transaction."""
    loops = [LoopThread() for _ in range(4)]
    writers = [worker_writer(db, socket_path) for _ in loops]
    try:
        with writer_serving(db, socket_path) as server:
            held = Gated(server.engine.backend)
            server.engine.backend = held
            first = loops[0].start(writers[0].record(rows("first")))
            assert held.entered.wait(WAIT_SECONDS)
            others = zip(loops[1:], writers[1:], strict=True)
            later = [loop.start(w.record(rows(f"w{n}", count=n + 1))) for n, (loop, w) in enumerate(others)]
            wait_until(lambda: len(server.engine.queue) == 3, "three workers' requests queue at the writer")
            held.release.set()
            answers = [first.result(WAIT_SECONDS)] + [f.result(WAIT_SECONDS) for f in later]
    finally:
        for loop in loops:
            loop.close()
    assert held.sizes == [1, 6]
    found = stored(db)
    for request_id, ids in zip(["first", "w0", "w1", "w2"], answers, strict=True):
        assert {found[i].request_id for i in ids} == {request_id}


def test_a_request_whose_rows_fail_does_not_refuse_the_others(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    writer, loop = worker
    other, third = LoopThread(), LoopThread()
    try:
        with writer_serving(db, socket_path) as server:
            held = Gated(server.engine.backend)
            server.engine.backend = held
            first = loop.start(writer.record(rows("first")))
            assert held.entered.wait(WAIT_SECONDS)
            bad = other.start(worker_writer(db, socket_path).record(rows("bad", version="b" * 64)))
            good = third.start(worker_writer(db, socket_path).record(rows("good")))
            wait_until(lambda: len(server.engine.queue) == 2, "two more requests queue")
            held.release.set()
            assert len(first.result(WAIT_SECONDS)) == len(good.result(WAIT_SECONDS)) == 1
            with pytest.raises(HistoryUnavailable) as refused:
                bad.result(WAIT_SECONDS)
    finally:
        other.close()
        third.close()
    assert refused.value.message.endswith("so it is not served: FOREIGN KEY constraint failed.")
    assert {p.request_id for p in stored(db).values()} == {"first", "good"}


def test_a_locked_database_refuses_the_waiting_requests_then_recovers(
    database_url: str, socket_path: str
) -> None:
    db = migrated(database_url, busy_timeout_ms=300)
    loop = LoopThread()
    writer = worker_writer(db, socket_path)

    async def many() -> list[object]:
        return await asyncio.gather(
            *(writer.record(rows(f"r{n}", count=2)) for n in range(4)), return_exceptions=True
        )

    try:
        with writer_serving(db, socket_path):
            with write_lock(database_url, "predictions"):
                results = loop.run(many())
            after = loop.run(writer.record(rows("after")))
        for result in results:
            assert isinstance(result, HistoryUnavailable), result
            assert result.message.endswith("so it is not served: database is locked.")
        assert [p.request_id for p in stored(db).values()] == ["after"]
        assert len(after) == 1
    finally:
        loop.close()
        db.dispose()


def test_without_a_writer_the_worker_writes_itself(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    writer, loop = worker
    before = loop.run(writer.record(rows("no writer yet")))
    with writer_serving(db, socket_path) as server:
        during = loop.run(writer.record(rows("writer up")))
    after = loop.run(writer.record(rows("writer gone")))  # no writer to reach: written here, once

    assert server.requests == 1
    found = stored(db)
    assert [found[i].request_id for i in before + during + after] == [
        "no writer yet",
        "writer up",
        "writer gone",
    ]
    assert len(found) == 3


def test_a_writer_that_takes_the_rows_and_dies_refuses_them(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    """The rows may or may not be committed: not served, and not written a second time here."""
    writer, loop = worker
    listener = listening(socket_path)

    def take_and_die() -> None:
        connection, _ = listener.accept()
        connection.recv(1024)
        connection.close()

    dying = threading.Thread(target=take_and_die)
    dying.start()
    try:
        with pytest.raises(HistoryUnavailable, match="the history writer did not answer"):
            loop.run(writer.record(rows("lost")))
    finally:
        dying.join(WAIT_SECONDS)
        listener.close()
    assert stored(db) == {}


def test_a_writer_gone_silent_refuses_the_request_within_its_timeout(db: Database, socket_path: str) -> None:
    listener = listening(socket_path)
    loop = LoopThread()
    try:
        with pytest.raises(HistoryUnavailable, match="did not answer in time"):
            loop.run(worker_writer(db, socket_path, timeout_s=0.2).record(rows("silence")))
    finally:
        loop.close()
        listener.close()


def test_a_garbled_answer_refuses_the_request_and_the_next_one_reconnects(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    writer, loop = worker
    garbling = listening(socket_path)

    def garble() -> None:
        connection, _ = garbling.accept()
        connection.recv(1024 * 1024)
        connection.sendall(frame(b"not json"))
        connection.close()

    thread = threading.Thread(target=garble)
    thread.start()
    with pytest.raises(HistoryUnavailable):
        loop.run(writer.record(rows("garbled")))
    thread.join(WAIT_SECONDS)
    garbling.close()
    os.unlink(socket_path)
    with writer_serving(db, socket_path):
        ids = loop.run(writer.record(rows("next")))
    assert [stored(db)[i].request_id for i in ids] == ["next"]


def test_a_commit_cancelled_while_its_answer_is_due_leaves_no_answer_for_the_next(
    db: Database, socket_path: str
) -> None:
    """The group commit's deadline cancels the exchange: the connection is dropped, so the next
    request reads its own answer on a new one, not the late answer of the one cancelled."""
    slow = listening(socket_path, 2)

    def answer_late_then_promptly() -> None:
        first, _ = slow.accept()
        first.recv(1024 * 1024)
        time.sleep(0.3)  # the first request has been refused by now
        with contextlib.suppress(OSError):
            first.sendall(frame(b'{"first": 1}'))
        second, _ = slow.accept()
        second.recv(1024 * 1024)
        second.sendall(frame(b'{"first": 100}'))
        first.close()
        second.close()

    thread = threading.Thread(target=answer_late_then_promptly)
    thread.start()
    loop = LoopThread()
    writer = LoopHistoryWriter(lambda: SqliteBackend(db, socket_path, WAIT_SECONDS), commit_timeout_s=0.1)
    try:
        with pytest.raises(HistoryUnavailable, match="did not answer within 0.1 s"):
            loop.run(writer.record(rows("given up")))
        time.sleep(0.4)  # the late answer has reached the first connection
        assert loop.run(writer.record(rows("next"))) == [100]
    finally:
        loop.run(_closed(writer))
        loop.close()
        thread.join(WAIT_SECONDS)
        slow.close()


def test_a_request_the_writer_cannot_take_is_refused_and_the_writer_goes_on(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    writer, loop = worker
    with writer_serving(db, socket_path) as server:
        answer = raw_exchange(socket_path, b"[1]")  # JSON, but not rows
        ids = loop.run(writer.record(rows("after")))
    assert answer.startswith(b'{"error":')
    assert server.requests == 2
    assert [p.request_id for p in stored(db).values()] == ["after"]
    assert ids == list(stored(db))


def test_a_large_request_commits_its_own_rows(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    writer, loop = worker
    with writer_serving(db, socket_path) as server:
        shared = loop.run(writer.record(rows("shared", count=SHARED_COMMIT_MAX_ROWS)))
        alone = loop.run(writer.record(rows("alone", count=SHARED_COMMIT_MAX_ROWS + 1)))
    assert server.requests == 1  # the first only
    found = stored(db)
    assert {found[i].request_id for i in shared} == {"shared"}
    assert {found[i].request_id for i in alone} == {"alone"}


def test_rows_a_closed_connection_could_not_send_are_written_by_the_worker(
    db: Database, socket_path: str, worker: tuple[LoopHistoryWriter, LoopThread]
) -> None:
    """uvloop raises on a write once the writer's end has closed, a loop iteration before EOF is read."""
    writer, loop = worker

    def closed(data: bytes) -> None:
        raise RuntimeError(
            "unable to perform operation on <UnixTransport closed=True>; the handler is closed"
        )

    async def record_across_a_lost_connection() -> list[list[int]]:
        first = await writer.record(rows("before"))
        backend = writer.engine().backend
        assert isinstance(backend, SqliteBackend)
        assert backend.streams is not None
        backend.streams[1].write = closed  # type: ignore[method-assign]
        after = await writer.record(rows("after"))  # not sent: written by the worker, in a thread
        again = await writer.record(rows("again"))  # a new connection to the writer
        return [first, after, again]

    with writer_serving(db, socket_path) as server:
        recorded = loop.run(record_across_a_lost_connection())

    found = stored(db)
    assert [[found[i].request_id for i in ids] for ids in recorded] == [["before"], ["after"], ["again"]]
    assert server.requests == 2


def test_the_writer_process_listens_then_stops_when_its_stdin_closes(
    database_url: str, db: Database, tmp_path: Path
) -> None:
    process = HostWriterProcess(load_config({}, DATABASE_URL=database_url, DATA_DIR=tmp_path))
    process.start()
    loop = LoopThread()
    try:
        assert os.path.exists(process.socket_path)
        ids = loop.run(worker_writer(db, process.socket_path).record(rows("through the process")))
    finally:
        loop.close()
        process.stop()
    assert process.process is not None
    assert process.process.returncode == 0
    assert not process.folder.exists()
    assert [stored(db)[i].request_id for i in ids] == ["through the process"]


def test_a_writer_that_keeps_dying_is_restarted_later_each_time(tmp_path: Path) -> None:
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
        wait_until(
            lambda: victim not in server.worker_pids() and bool(server.worker_pids() - workers),
            "gunicorn replaces the worker",
        )
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
