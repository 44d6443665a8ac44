"""PostgresLoopWriter: PostgreSQL group commit from the event loop, committed before the ids return."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, select, text

from flight_delay.errors import HistoryUnavailable
from flight_delay.extensions import db
from flight_delay.history.host_writer import EventLoopWriterClient
from flight_delay.history.models import ModelVersion, Prediction
from flight_delay.history.pg_loop_writer import PostgresLoopWriter, postgres_loop_writer
from flight_delay.history.writer import EventLoopWriter
from tests.databases import refuse_inserts, write_lock
from tests.factories import minimal_flight

pytestmark = pytest.mark.postgresql_only

WAIT_SECONDS = 30


@pytest.fixture
def version(loaded_client: FlaskClient) -> str:
    """The version of the model loaded: history rows must name one that exists."""
    with db.transaction() as session:
        return session.scalars(select(ModelVersion.version)).one()


@pytest.fixture
def writer(app: Flask, version: str) -> Iterator[PostgresLoopWriter]:
    """A worker's loop writer on the test's database."""
    made = postgres_loop_writer(app.config, db)
    assert isinstance(made, PostgresLoopWriter)
    yield made
    made.close()


@pytest.fixture
def admin(app: Flask) -> Iterator[Engine]:
    """Another connection to the database: to look at, and end, the writer's."""
    engine = create_engine(app.config["DATABASE_URL"], isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def rows_for(version: str, request_id: str, count: int = 1) -> list[dict[str, Any]]:
    """A request's history rows, as PredictionService.score builds them."""
    created_at = datetime.now(UTC)
    return [
        {
            "created_at": created_at,
            "request_id": request_id,
            "model_version": version,
            "input": minimal_flight(dep_delay=float(i)),
            "arr_delay": float(i) + 0.5,
            "latency_ms": 1.25,
        }
        for i in range(count)
    ]


def stored() -> dict[int, Prediction]:
    """Every row of the history, by id."""
    with db.transaction() as session:
        return {row.id: row for row in session.scalars(select(Prediction))}


def backend_pid(writer: PostgresLoopWriter) -> int:
    """The server process of the writer's connection."""
    assert writer.connection is not None
    return writer.connection.info.backend_pid


async def terminate(admin: Engine, pid: int) -> None:
    """Ends a backend as a server restart would (pg_terminate_backend), and waits until it is gone."""
    with admin.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    await until(admin, "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid", pid)


async def until(admin: Engine, query: str, pid: int) -> None:
    """Waits, yielding to the loop, until a query about backend `pid` answers true."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        with admin.connect() as connection:
            if connection.execute(text(query), {"pid": pid}).scalar():
                return
        await asyncio.sleep(0.02)
    raise TimeoutError(query)


def test_it_is_an_event_loop_writer_like_the_host_writers_client(writer: PostgresLoopWriter) -> None:
    assert isinstance(writer, EventLoopWriter)
    assert isinstance(EventLoopWriterClient(db, "unused.sock", 1.0), EventLoopWriter)


def test_rows_are_committed_before_their_ids_return(writer: PostgresLoopWriter, version: str) -> None:
    rows = rows_for(version, "pg-loop-1", count=3)

    async def record_then_look() -> tuple[list[int], dict[int, Prediction]]:
        ids = await writer.record(rows)
        return ids, stored()  # another connection, at once: committed, not merely sent

    ids, found = asyncio.run(record_then_look())

    assert len(ids) == 3
    assert ids == sorted(ids)
    for row, history_id in zip(rows, ids, strict=True):
        written = found[history_id]
        assert (written.request_id, written.model_version, written.input) == (
            row["request_id"],
            version,
            row["input"],
        )
        assert (written.arr_delay, written.latency_ms, written.created_at) == (
            row["arr_delay"],
            row["latency_ms"],
            row["created_at"],
        )


def test_requests_waiting_together_share_one_statement_and_get_their_own_ids(
    writer: PostgresLoopWriter, version: str
) -> None:
    requests = [rows_for(version, f"together-{i}", count=1 + i % 3) for i in range(50)]

    async def together() -> list[list[int]]:
        return await asyncio.gather(*(writer.record(rows) for rows in requests))

    answers = asyncio.run(together())

    assert writer.statements == 1
    found = stored()
    assert len(found) == sum(len(rows) for rows in requests)
    for rows, ids in zip(requests, answers, strict=True):
        assert [(found[i].request_id, found[i].input) for i in ids] == [
            (row["request_id"], row["input"]) for row in rows
        ]


def test_several_workers_write_at_once_and_every_id_is_its_own(app: Flask, version: str) -> None:
    """Three workers (or replicas), each its loop and connection, each batching its own requests."""
    writers = [postgres_loop_writer(app.config, db) for _ in range(3)]
    results: dict[int, list[list[int]]] = {}

    def worker(number: int) -> None:
        async def requests() -> list[list[int]]:
            writer = writers[number]
            assert writer is not None
            batches = [writer.record(rows_for(version, f"w{number}-{i}")) for i in range(40)]
            return await asyncio.gather(*batches)

        results[number] = asyncio.run(requests())

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    for writer in writers:
        assert writer is not None
        writer.close()

    found = stored()
    assert len(found) == 120
    for number, answers in results.items():
        for i, [history_id] in enumerate(answers):
            assert found[history_id].request_id == f"w{number}-{i}"


def test_a_history_refusing_the_write_refuses_the_request_and_stores_nothing(
    writer: PostgresLoopWriter, version: str
) -> None:
    with db.transaction() as session:
        refuse_inserts(session, "predictions", "disk is full")

    with pytest.raises(HistoryUnavailable, match=r"so it is not served: disk is full\.$"):
        asyncio.run(writer.record(rows_for(version, "refused")))

    assert stored() == {}


def test_a_request_whose_rows_are_refused_does_not_refuse_the_others(
    writer: PostgresLoopWriter, version: str
) -> None:
    async def together() -> list[Any]:
        requests = [rows_for(version, "good-1"), rows_for("unknown", "bad"), rows_for(version, "good-2")]
        return await asyncio.gather(*(writer.record(rows) for rows in requests), return_exceptions=True)

    good_1, bad, good_2 = asyncio.run(together())

    assert isinstance(bad, HistoryUnavailable)
    assert "foreign key" in str(bad)
    found = stored()
    assert [found[i].request_id for i in (*good_1, *good_2)] == ["good-1", "good-2"]
    assert writer.statements == 4  # the shared one, refused, then each request alone


def test_an_unreachable_server_refuses_the_request(writer: PostgresLoopWriter, version: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    nowhere = PostgresLoopWriter(
        {**writer.connect_args, "host": "127.0.0.1", "port": port, "connect_timeout": 2}, writer.dialect
    )

    with pytest.raises(HistoryUnavailable, match="not served: connection"):
        asyncio.run(nowhere.record(rows_for(version, "nowhere")))


def test_a_connection_the_server_ended_while_idle_is_replaced_unnoticed(
    writer: PostgresLoopWriter, version: str, admin: Engine
) -> None:
    """A server restart, or pg_terminate_backend, between requests: the next one still succeeds."""

    async def across_the_end() -> tuple[int, int, list[int]]:
        await writer.record(rows_for(version, "before"))
        first = backend_pid(writer)
        await terminate(admin, first)
        ids = await writer.record(rows_for(version, "after"))
        return first, backend_pid(writer), ids

    first, second, [history_id] = asyncio.run(across_the_end())

    assert second != first
    assert stored()[history_id].request_id == "after"


def test_a_connection_ended_mid_statement_refuses_its_requests_and_the_next_reconnect(
    writer: PostgresLoopWriter, version: str, admin: Engine, app: Flask
) -> None:
    async def ended_mid_statement() -> tuple[BaseException | list[int], list[int]]:
        await writer.record(rows_for(version, "warm"))
        pid = backend_pid(writer)
        with write_lock(app.config["DATABASE_URL"], "predictions"):
            waiting = asyncio.ensure_future(writer.record(rows_for(version, "cut-short")))
            await until(admin, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid", pid)
            await terminate(admin, pid)
            outcome = (await asyncio.gather(waiting, return_exceptions=True))[0]
        return outcome, await writer.record(rows_for(version, "next"))

    outcome, [next_id] = asyncio.run(ended_mid_statement())

    assert isinstance(outcome, HistoryUnavailable)
    assert "could not be recorded" in str(outcome)
    found = stored()
    assert sorted(row.request_id for row in found.values()) == ["next", "warm"]
    assert found[next_id].request_id == "next"
