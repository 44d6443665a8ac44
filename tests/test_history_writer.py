"""The history writer on the backend under test: requests waiting together share one commit, each
request gets its own ids once its rows are committed, and a fault refuses only what it touched."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from flight_delay.config import load_config
from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import Database, json_text
from flight_delay.history.models import Prediction
from flight_delay.history.writer import HistoryWriter, LoopHistoryWriter
from flight_delay.services import history_writer
from tests.databases import write_lock
from tests.factories import minimal_flight
from tests.writers import WAIT_SECONDS, LoopThread, gate, migrated, rows, stored, wait_until


def writer_for(database_url: str, db: Database) -> LoopHistoryWriter:
    """The writer the composition root builds for this database (no host writer: SQLite commits here)."""
    return history_writer(load_config({}, DATABASE_URL=database_url), db)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database with one model version to record predictions of, and a long lock wait."""
    database = migrated(database_url, busy_timeout_ms=20_000, lock_timeout_ms=20_000)
    yield database
    database.dispose()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    """A worker's event loop, in a thread."""
    running = LoopThread()
    yield running
    running.close()


def test_the_writer_is_the_one_interface(database_url: str, db: Database) -> None:
    assert isinstance(writer_for(database_url, db), HistoryWriter)


def test_rows_read_back_as_recorded_with_ids_in_order(database_url: str, db: Database) -> None:
    """Ids come back in the rows' order, and every column reads back as given (UTC time, JSON input)."""
    given = rows("r1", count=3)
    ids = asyncio.run(writer_for(database_url, db).record(given))
    found = stored(db)
    assert sorted(found) == ids
    for row_id, row in zip(ids, given, strict=True):
        prediction = found[row_id]
        assert prediction.created_at == row["created_at"]
        assert prediction.created_at.tzinfo is not None
        assert (prediction.request_id, prediction.model_version, prediction.protocol) == (
            "r1",
            "a" * 64,
            "native",
        )
        assert prediction.input == row["input"]
        assert (prediction.arr_delay, prediction.latency_ms) == (row["arr_delay"], 1.25)


def test_requests_that_wait_share_the_next_commit(database_url: str, db: Database, loop: LoopThread) -> None:
    """While one commit is held, five requests queue; they are then written in one commit."""
    writer = writer_for(database_url, db)
    held = gate(writer)
    first = loop.start(writer.record(rows("first")))
    assert held.entered.wait(WAIT_SECONDS)
    queued = {f"queued-{n}": loop.start(writer.record(rows(f"queued-{n}", count=n + 1))) for n in range(5)}
    wait_until(lambda: sum(len(w.queue) for w in writer.engines.values()) == 5, "five requests queue")
    held.release.set()
    results = {"first": first.result(WAIT_SECONDS)} | {k: f.result(WAIT_SECONDS) for k, f in queued.items()}
    assert held.sizes == [1, 15]
    found = stored(db)
    for request_id, ids in results.items():
        assert {found[i].request_id for i in ids} == {request_id}
        assert [found[i].input["flight"] for i in ids] == list(range(len(ids)))


def test_a_request_whose_rows_fail_does_not_refuse_the_others(
    database_url: str, db: Database, loop: LoopThread
) -> None:
    """A row naming an unknown model breaks its own request only; the others of its commit are recorded."""
    writer = writer_for(database_url, db)
    held = gate(writer)
    first = loop.start(writer.record(rows("first")))
    assert held.entered.wait(WAIT_SECONDS)
    sent = {name: loop.start(writer.record(rows(name, version=v))) for name, v in GOOD_AND_BAD}
    wait_until(lambda: sum(len(w.queue) for w in writer.engines.values()) == 3, "three requests queue")
    held.release.set()
    assert len(first.result(WAIT_SECONDS)) == 1
    assert len(sent["good-1"].result(WAIT_SECONDS)) == len(sent["good-2"].result(WAIT_SECONDS)) == 1
    with pytest.raises(HistoryUnavailable, match="could not be recorded") as refused:
        sent["bad"].result(WAIT_SECONDS)
    assert "FOREIGN KEY" in refused.value.message or "foreign key" in refused.value.message
    assert {p.request_id for p in stored(db).values()} == {"first", "good-1", "good-2"}


GOOD_AND_BAD = [("good-1", "a" * 64), ("bad", "b" * 64), ("good-2", "a" * 64)]


def test_a_locked_database_refuses_every_waiting_request_then_recovers(database_url: str) -> None:
    """Past the lock wait, each request gets HistoryUnavailable, nothing is half-written, none restarts."""
    db = migrated(database_url, busy_timeout_ms=300, lock_timeout_ms=300)
    writer = writer_for(database_url, db)

    async def many() -> list[Any]:
        sent = [writer.record(rows(f"r{n}", count=2)) for n in range(4)]
        return await asyncio.gather(*sent, return_exceptions=True)

    try:
        with write_lock(database_url, "predictions"):
            results = asyncio.run(many())
        assert all(isinstance(r, HistoryUnavailable) for r in results), results
        assert stored(db) == {}
        assert len(asyncio.run(writer.record(rows("after")))) == 1
    finally:
        db.dispose()


def test_many_concurrent_requests_each_get_their_own_rows(database_url: str, db: Database) -> None:
    """320 requests at once on one loop: every id distinct and pointing at the request that got it."""
    writer = writer_for(database_url, db)

    async def many() -> dict[str, list[int]]:
        names = [f"c{n}" for n in range(320)]
        ids = await asyncio.gather(
            *(writer.record(rows(name, count=1 + n % 3)) for n, name in enumerate(names))
        )
        return dict(zip(names, ids, strict=True))

    results = asyncio.run(many())
    found = stored(db)
    assert sum(len(ids) for ids in results.values()) == len(found)
    for request_id, ids in results.items():
        assert {found[i].request_id for i in ids} == {request_id}
    [engine] = writer.engines.values()
    assert engine.commits < 320, "requests waiting together shared commits"


def record_in_child(url: str, prefix: str, count: int) -> None:
    """A worker process: records `count` requests through its own writer (its own connection, lock file)."""
    db = Database().bind(url, busy_timeout_ms=20_000, lock_timeout_ms=20_000)
    writer = writer_for(url, db)

    async def record() -> None:
        for n in range(count):
            await writer.record(rows(f"{prefix}-{n}"))

    asyncio.run(record())
    db.dispose()


def test_worker_processes_write_at_once_without_losing_a_row(database_url: str, db: Database) -> None:
    """Two forked processes (as gunicorn workers are) and this one write at once: every row recorded once."""
    asyncio.run(writer_for(database_url, db).record(rows("parent-before-fork")))
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
