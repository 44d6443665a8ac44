"""Group commit of the history: concurrent requests share a transaction, each recorded before it returns."""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from flight_delay.errors import HistoryUnavailable
from flight_delay.history import writer as writer_module
from flight_delay.history.database import Database, json_text
from flight_delay.history.migrate import upgrade
from flight_delay.history.models import ModelVersion, Prediction
from flight_delay.history.repository import insert_predictions
from flight_delay.history.writer import WRITE_LOCK_SUFFIX, HistoryWriter
from tests.databases import write_lock
from tests.factories import minimal_flight

VERSION = "a" * 64
WAIT_SECONDS = 30


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database with one model version to record predictions of, and a short lock wait."""
    upgrade(database_url)
    database = Database().bind(database_url, busy_timeout_ms=20_000, lock_timeout_ms=20_000)
    with database.transaction() as session:
        session.add(ModelVersion(version=VERSION, kind="test", filename=None, size_bytes=1, details={}))
    yield database
    database.dispose()


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
        }
        for position in range(count)
    ]


@pytest.fixture
def transactions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the writers' transactions from now on: the rows each one inserted."""
    sizes: list[int] = []

    def counted(db: Database, rows: list[dict[str, Any]]) -> list[int]:
        sizes.append(len(rows))
        return insert_predictions(db, rows)

    monkeypatch.setattr(writer_module, "insert_predictions", counted)
    return sizes


def wait_until(condition: Any, what: str) -> None:
    """Polls until condition() holds, failing after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


class Requests:
    """Records from several threads at once, keeping each request's ids or error."""

    def __init__(self, writer: HistoryWriter) -> None:
        self.writer = writer
        self.results: dict[str, list[int] | BaseException] = {}
        self.threads: list[threading.Thread] = []

    def start(self, request_id: str, batch: list[dict[str, Any]]) -> None:
        """Starts a thread recording one request's rows."""

        def run() -> None:
            try:
                self.results[request_id] = self.writer.record(batch)
            except Exception as exc:
                self.results[request_id] = exc

        thread = threading.Thread(target=run)
        self.threads.append(thread)
        thread.start()

    def join(self) -> dict[str, list[int] | BaseException]:
        """Waits for every thread and returns what each request got."""
        for thread in self.threads:
            thread.join(WAIT_SECONDS)
            assert not thread.is_alive(), "a request never returned"
        return self.results


def queued(writer: HistoryWriter) -> int:
    """How many requests wait behind the transaction in flight."""
    with writer._changed:
        return len(writer._queue)


def stored(db: Database) -> dict[int, Prediction]:
    """Every recorded prediction by id."""
    with db.transaction() as session:
        return {p.id: p for p in session.scalars(select(Prediction))}


def test_rows_read_back_as_recorded_with_ids_in_order(db: Database) -> None:
    """Ids come back in the rows' order, and every column reads back as given (UTC time, JSON input)."""
    given = rows("r1", count=3)
    ids = HistoryWriter(db).record(given)
    found = stored(db)
    assert sorted(found) == ids
    assert len(set(ids)) == 3
    for row_id, row in zip(ids, given, strict=True):
        prediction = found[row_id]
        assert prediction.created_at == row["created_at"]
        assert prediction.created_at.tzinfo is not None
        assert (prediction.request_id, prediction.model_version) == ("r1", VERSION)
        assert prediction.input == row["input"]
        assert (prediction.arr_delay, prediction.latency_ms) == (row["arr_delay"], 1.25)


def test_requests_that_wait_share_the_next_transaction(
    database_url: str, db: Database, transactions: list[int]
) -> None:
    """While one commit waits for the lock, five requests queue; they are then written in one commit."""
    writer = HistoryWriter(db)
    sent = Requests(writer)
    with write_lock(database_url, "predictions"):
        sent.start("first", rows("first"))
        wait_until(lambda: writer._writing, "the first request leads a transaction")
        for n in range(5):
            sent.start(f"queued-{n}", rows(f"queued-{n}", count=n + 1))
        wait_until(lambda: queued(writer) == 5, "five requests queue behind it")
    results = sent.join()
    assert transactions == [1, 15]  # the first request's row, then the five queued requests' rows
    found = stored(db)
    assert len(found) == 1 + sum(range(1, 6))
    for request_id, ids in results.items():
        assert isinstance(ids, list), ids
        assert {found[i].request_id for i in ids} == {request_id}
        assert [found[i].input["flight"] for i in ids] == list(range(len(ids)))


def test_a_request_whose_rows_fail_does_not_refuse_the_others(database_url: str, db: Database) -> None:
    """A row naming an unknown model breaks its own request only; the batch's other requests are recorded."""
    writer = HistoryWriter(db)
    sent = Requests(writer)
    with write_lock(database_url, "predictions"):
        sent.start("first", rows("first"))
        wait_until(lambda: writer._writing, "the first request leads a transaction")
        sent.start("good-1", rows("good-1", count=2))
        sent.start("bad", rows("bad", version="b" * 64))
        sent.start("good-2", rows("good-2"))
        wait_until(lambda: queued(writer) == 3, "three requests queue")
    results = sent.join()
    assert isinstance(results["bad"], HistoryUnavailable)
    assert "could not be recorded" in results["bad"].message
    recorded = {p.request_id for p in stored(db).values()}
    assert recorded == {"first", "good-1", "good-2"}


def test_a_locked_database_refuses_every_waiting_request_then_recovers(database_url: str) -> None:
    """Past the lock wait, each request of the batch gets HistoryUnavailable, nothing is half-written."""
    upgrade(database_url)
    db = Database().bind(database_url, busy_timeout_ms=300, lock_timeout_ms=300)
    try:
        with db.transaction() as session:
            session.add(ModelVersion(version=VERSION, kind="test", filename=None, size_bytes=1, details={}))
        writer = HistoryWriter(db)
        sent = Requests(writer)
        with write_lock(database_url, "predictions"):
            for n in range(4):
                sent.start(f"r{n}", rows(f"r{n}", count=2))
            results = sent.join()
        assert all(isinstance(r, HistoryUnavailable) for r in results.values()), results
        assert stored(db) == {}
        assert len(writer.record(rows("after"))) == 1  # no restart needed
    finally:
        db.dispose()


def record_from_threads(
    writer: Any, db: Database, threads: int = 16, requests: int = 20
) -> dict[str, list[int]]:
    """Records from `threads` threads of `requests` requests each (1-3 rows); checks each got its own rows."""
    results: dict[str, list[int]] = {}

    def client(thread: int) -> None:
        for n in range(requests):
            request_id = f"t{thread}-{n}"
            results[request_id] = writer.record(rows(request_id, count=1 + n % 3))

    pool = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(WAIT_SECONDS)
    found = stored(db)
    assert len(results) == threads * requests
    assert sum(len(ids) for ids in results.values()) == len(found)
    for request_id, ids in results.items():
        assert {found[i].request_id for i in ids} == {request_id}
    return results


def test_many_threads_each_get_their_own_rows(db: Database, transactions: list[int]) -> None:
    """Sixteen threads of twenty requests: every id distinct and pointing at the request that got it."""
    record_from_threads(HistoryWriter(db), db)
    found = stored(db)
    assert sum(transactions) == len(found)


def record_in_child(url: str, prefix: str, count: int) -> None:
    """A worker process: records `count` requests through its own writer (and its own lock file)."""
    db = Database().bind(url, busy_timeout_ms=20_000, lock_timeout_ms=20_000)
    writer = HistoryWriter(db)
    for n in range(count):
        writer.record(rows(f"{prefix}-{n}"))
    db.dispose()


def test_worker_processes_write_one_file_without_losing_a_row(database_url: str, db: Database) -> None:
    """Two forked processes (as gunicorn workers are) and this one write at once: every row recorded once."""
    HistoryWriter(db).record(rows("parent-before-fork"))  # the parent's lock file is open before forking
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=record_in_child, args=(database_url, f"p{i}", 100)) for i in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(WAIT_SECONDS * 2)
        assert child.exitcode == 0
    with db.transaction() as session:
        request_ids = list(session.scalars(select(Prediction.request_id)))
        assert session.scalar(select(func.count(func.distinct(Prediction.id)))) == 201
    assert sorted(request_ids) == sorted(
        ["parent-before-fork"] + [f"p{i}-{n}" for i in range(2) for n in range(100)]
    )
    if db.sqlite_path() is not None:
        assert db.sqlite_path().with_name(db.sqlite_path().name + WRITE_LOCK_SUFFIX).is_file()


@pytest.mark.parametrize(
    "value",
    [
        minimal_flight(),
        {"text": 'Zürich ✈ "quoted"', "tiny": 5e-324, "huge": 1.7976931348623157e308, "neg": -0.0},
        {"beyond 64 bits": 2**70, "nested": [1, [2.5, None], {"k": True}]},
    ],
)
def test_json_columns_read_back_as_given(value: dict[str, Any]) -> None:
    """The JSON column's text (orjson, or json.dumps beyond what orjson takes) parses to the value given."""
    assert json.loads(json_text(value)) == value
