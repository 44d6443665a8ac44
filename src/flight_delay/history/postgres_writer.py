"""The PostgreSQL backend of the history writer: one psycopg AsyncConnection per event loop.

The group commit (writer.py) hands it the rows of every waiting request at once; it inserts them in
one statement in autocommit mode (`INSERT ... SELECT ... FROM json_array_elements(...) WITH
ORDINALITY ... RETURNING id`: the rows as one JSON parameter, the same text for any number of rows,
so it is prepared once), and returns the ids in the rows' order. Several workers and replicas each
write this way at once; the sequence numbers their rows.

A connection the server ended while idle (restart, pg_terminate_backend) has something to read: it
is replaced before the next statement is sent, so no request fails for it. One ended in the middle
of a statement fails that statement's requests (their rows' fate unknown), and the next reconnects.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Mapping
from typing import Any

import psycopg
from sqlalchemy import Dialect

from flight_delay.history.database import Database, postgres_connect_args
from flight_delay.history.repository import POSTGRES_INSERT, postgres_rows

log = logging.getLogger(__name__)


def postgres_connect_kwargs(config: Mapping[str, Any], db: Database) -> dict[str, Any] | None:
    """psycopg.connect's arguments for the history's PostgreSQL (psycopg) database; None for another."""
    engine = db.bound_engine()
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None
    # SQLAlchemy's own arguments for psycopg.connect, bounded as make_engine bounds its connections.
    _, connect_args = engine.dialect.create_connect_args(engine.url)
    # The statement's bound is the write's: past it the client has given up on the rows already.
    write_ms = int(config["HISTORY_WRITE_TIMEOUT_S"] * 1000)
    limits = postgres_connect_args(
        engine.url, config["POSTGRES_LOCK_TIMEOUT_MS"], config["POSTGRES_CONNECT_TIMEOUT_S"], write_ms
    )
    return {**connect_args, **limits}


def ended_while_idle(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection is closed or has something to read (the server's goodbye, or EOF)."""
    if connection.closed:
        return True
    readable, _, _ = select.select([connection.fileno()], [], [], 0)
    return bool(readable)


class PostgresBackend:
    """Commits rows in one autocommit INSERT on this loop's connection; their ids in order."""

    def __init__(self, connect_args: Mapping[str, Any], dialect: Dialect) -> None:
        self.connect_args = dict(connect_args)
        self.dialect = dialect
        self.connection: psycopg.AsyncConnection[Any] | None = None

    async def commit(self, rows: list[Mapping[str, Any]]) -> list[int]:
        """Inserts the rows in one statement, its own transaction; returns their ids in order."""
        connection = await self._connected()
        try:
            cursor = await connection.execute(POSTGRES_INSERT, (postgres_rows(rows, self.dialect),))
            returned = await cursor.fetchall()
        except psycopg.Error:
            if connection.broken:
                self.close()
            raise
        except BaseException:  # cancelled mid-statement (its deadline): the connection's state is unknown
            self.close()
            raise
        return sorted(row[0] for row in returned)  # numbered in the rows' order (ORDER BY position)

    async def _connected(self) -> psycopg.AsyncConnection[Any]:
        """The loop's connection: a new one if there is none or the server ended it while it was idle."""
        if self.connection is not None and ended_while_idle(self.connection):
            log.info("the history connection was closed by the server: reconnecting")
            self.close()
        if self.connection is None:
            self.connection = await psycopg.AsyncConnection.connect(autocommit=True, **self.connect_args)
        return self.connection

    def close(self) -> None:
        """Closes the connection at once, if any (its socket: nothing is awaited)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.pgconn.finish()
