"""The PostgreSQL backend of the history writer: its connection to the server, lost and found again."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text

from flight_delay.config import load_config
from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import Database
from flight_delay.history.postgres_writer import PostgresBackend
from flight_delay.history.writer import LoopHistoryWriter
from flight_delay.services import history_writer
from tests.databases import refuse_inserts, write_lock
from tests.writers import WAIT_SECONDS, migrated, rows, stored

pytestmark = pytest.mark.postgresql_only


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database with the model version the rows name."""
    database = migrated(database_url, lock_timeout_ms=20_000)
    yield database
    database.dispose()


@pytest.fixture
def writer(database_url: str, db: Database) -> Iterator[LoopHistoryWriter]:
    """The writer a worker of this database records through."""
    made = history_writer(load_config({}, DATABASE_URL=database_url), db)
    yield made
    made.close()


@pytest.fixture
def admin(database_url: str) -> Iterator[Engine]:
    """Another connection to the database: to look at, and end, the writer's."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def backend_pid(writer: LoopHistoryWriter) -> int:
    """The server process of the running loop's connection."""
    backend = writer.engine().backend
    assert isinstance(backend, PostgresBackend)
    assert backend.connection is not None
    return backend.connection.info.backend_pid


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


def test_requests_waiting_together_share_one_statement(writer: LoopHistoryWriter, db: Database) -> None:
    requests = [rows(f"together-{i}", count=1 + i % 3) for i in range(50)]

    async def together() -> list[list[int]]:
        answers = await asyncio.gather(*(writer.record(batch) for batch in requests))
        assert writer.engine().commits == 1
        return answers

    answers = asyncio.run(together())

    found = stored(db)
    for batch, ids in zip(requests, answers, strict=True):
        assert [found[i].request_id for i in ids] == [row["request_id"] for row in batch]


def test_a_history_refusing_the_write_refuses_the_request_and_stores_nothing(
    writer: LoopHistoryWriter, db: Database
) -> None:
    with db.transaction() as session:
        refuse_inserts(session, "predictions", "disk is full")

    with pytest.raises(HistoryUnavailable, match=r"so it is not served: disk is full\.$"):
        asyncio.run(writer.record(rows("refused")))

    assert stored(db) == {}


def test_an_unreachable_server_refuses_the_request(writer: LoopHistoryWriter) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    real = writer.make_backend()
    assert isinstance(real, PostgresBackend)
    nowhere = {**real.connect_args, "host": "127.0.0.1", "port": port, "connect_timeout": 2}
    unreachable = LoopHistoryWriter(lambda: PostgresBackend(nowhere, real.dialect))

    with pytest.raises(HistoryUnavailable, match="not served: connection"):
        asyncio.run(unreachable.record(rows("nowhere")))


def test_a_connection_the_server_ended_while_idle_is_replaced_unnoticed(
    writer: LoopHistoryWriter, db: Database, admin: Engine
) -> None:
    """A server restart, or pg_terminate_backend, between requests: the next one still succeeds."""

    async def across_the_end() -> tuple[int, int, list[int]]:
        await writer.record(rows("before"))
        first = backend_pid(writer)
        await terminate(admin, first)
        ids = await writer.record(rows("after"))
        return first, backend_pid(writer), ids

    first, second, [history_id] = asyncio.run(across_the_end())

    assert second != first
    assert stored(db)[history_id].request_id == "after"


def test_a_connection_ended_mid_statement_refuses_its_requests_and_the_next_reconnects(
    writer: LoopHistoryWriter, db: Database, admin: Engine, database_url: str
) -> None:
    async def ended_mid_statement() -> tuple[BaseException | list[int], list[int]]:
        await writer.record(rows("warm"))
        pid = backend_pid(writer)
        with write_lock(database_url, "predictions"):
            waiting = asyncio.ensure_future(writer.record(rows("cut-short")))
            await until(admin, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid", pid)
            await terminate(admin, pid)
            outcome = (await asyncio.gather(waiting, return_exceptions=True))[0]
        return outcome, await writer.record(rows("next"))

    outcome, [next_id] = asyncio.run(ended_mid_statement())

    assert isinstance(outcome, HistoryUnavailable)
    assert "could not be recorded" in str(outcome)
    found = stored(db)
    assert sorted(row.request_id for row in found.values()) == ["next", "warm"]
    assert found[next_id].request_id == "next"
