"""The database under test: SQLite files by default, a PostgreSQL server when TEST_DATABASE_URL is set.

`scripts/with_postgres.sh` starts a throwaway server and sets TEST_DATABASE_URL; each test then
gets a database of its own on that server, created before it and dropped after it.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "")


def backend_under_test() -> str:
    """Names the backend the suite runs on: `sqlite`, or the server's (e.g. `postgresql`)."""
    return make_url(SERVER_URL).get_backend_name() if SERVER_URL else "sqlite"


def connect_server(url: str) -> Engine:
    """Opens an engine on the server's own database for CREATE/DROP DATABASE (which refuse transactions)."""
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)


def create_database(server: Engine) -> str:
    """Creates an empty database with a unique name on the server and returns its URL."""
    name = f"test_{uuid.uuid4().hex[:20]}"
    with server.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    return server.url.set(database=name).render_as_string(hide_password=False)


def drop_database(server: Engine, url: str) -> None:
    """Drops a test's database, ending the connections its app or servers left open."""
    name = make_url(url).database
    with server.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def refuse_inserts(session: Session, table: str, message: str) -> None:
    """Makes every INSERT into `table` fail with `message`, the way a full disk would."""
    if session.get_bind().dialect.name == "sqlite":
        raise_error = f"SELECT RAISE(ABORT, '{message}');"
        session.execute(text(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} BEGIN {raise_error} END"))
        return
    raise_error = f"BEGIN RAISE EXCEPTION '{message}'; END"
    session.execute(text(f"CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ {raise_error} $$"))
    session.execute(
        text(f"CREATE TRIGGER refuse BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION refuse()")
    )


@contextmanager
def write_lock(url: str, table: str) -> Iterator[None]:
    """Keeps every other connection from writing `table` until the block ends, as a stuck writer would."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # SQLite locks the whole file: one immediate transaction keeps all other writers out.
        connection = sqlite3.connect(parsed.database, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield
            connection.execute("ROLLBACK")
        finally:
            connection.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            # EXCLUSIVE lets others read the table but not write it.
            connection.execute(text(f"LOCK TABLE {table} IN EXCLUSIVE MODE"))
            yield
            transaction.rollback()
    finally:
        engine.dispose()
