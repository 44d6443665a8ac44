"""The database extension: one engine per process, short sessions, SQLite tuned for concurrent workers."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite database URL; None for an in-memory database or another backend.

    A URI filename (`sqlite:///file:/path/db?mode=ro&uri=true`, e.g. a read-only replica) names its path.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    if parsed.query.get("uri") == "true" and parsed.database.startswith("file:"):
        return Path(parsed.database.removeprefix("file:").split("?", 1)[0])
    return Path(parsed.database)


def prepare_sqlite_path(url: str) -> None:
    """Creates the folder of a SQLite database file so that the first connection can create it."""
    path = sqlite_file(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


def engine_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Picks make_engine's options from the app configuration."""
    return {
        "busy_timeout_ms": config["SQLITE_BUSY_TIMEOUT_MS"],
        "synchronous": config["SQLITE_SYNCHRONOUS"],
        "lock_timeout_ms": config["POSTGRES_LOCK_TIMEOUT_MS"],
        "connect_timeout_s": config["POSTGRES_CONNECT_TIMEOUT_S"],
        "statement_timeout_ms": config["POSTGRES_STATEMENT_TIMEOUT_MS"],
    }


def postgres_connect_args(
    url: URL, lock_timeout_ms: int, connect_timeout_s: int, statement_timeout_ms: int = 30_000
) -> dict[str, Any]:
    """Bounds how long connecting, a lock or a statement can hold a request; the URL's own settings win."""
    args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        args["connect_timeout"] = connect_timeout_s
    if "options" not in url.query:
        args["options"] = (
            f"-c lock_timeout={int(lock_timeout_ms)} -c statement_timeout={int(statement_timeout_ms)}"
        )
    return args


def database_error_reason(exc: BaseException) -> str:
    """Says in one line why the database failed: the driver's message, without the SQL or its values."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__


def refused_read_only(driver_error: BaseException | None) -> bool:
    """Tells whether SQLite refused a write because its connection is read-only (SQLITE_READONLY_*)."""
    return getattr(driver_error, "sqlite_errorname", "").startswith("SQLITE_READONLY")


def json_text(value: Any) -> str:
    """Serializes a JSON column's value with orjson, or json.dumps for what orjson refuses."""
    # orjson first: far cheaper than json.dumps per stored flight (bench/PROFILE.md). It refuses integers
    # beyond 64 bits and non-string keys, which json.dumps takes; either text reads back as the same value.
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int = 5000,
    synchronous: str = "FULL",
    lock_timeout_ms: int = 5000,
    connect_timeout_s: int = 5,
    statement_timeout_ms: int = 30_000,
) -> Engine:
    """Creates an engine; SQLite gets WAL, a busy timeout and foreign keys, PostgreSQL a lock timeout."""
    prepare_sqlite_path(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        connect_args = postgres_connect_args(parsed, lock_timeout_ms, connect_timeout_s, statement_timeout_ms)
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args, json_serializer=json_text)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000}, json_serializer=json_text)
    event.listen(engine, "connect", sqlite_tuner(busy_timeout_ms, synchronous))
    event.listen(engine, "handle_error", discard_read_only_connections)
    return engine


def sqlite_tuner(busy_timeout_ms: int, synchronous: str) -> Callable[[Any, Any], None]:
    """The connect listener setting the pragmas that let several gunicorn workers share one file safely."""

    def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
        """Sets WAL, the busy timeout, the synchronous level and foreign keys on a new connection."""
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return _tune_sqlite


def discard_read_only_connections(context: ExceptionContext) -> None:
    """Treats a read-only SQLite connection as dead, so the pool reopens it once the file is writable.

    SQLite opens a file it cannot write read-only and keeps that connection read-only for good:
    without this, a worker would refuse every prediction until restarted.
    """
    if not refused_read_only(context.original_exception):
        return
    # SQLAlchemy leaves a dead connection's cursor open; the traceback keeps it alive, and an open
    # statement would keep the closed connection's read-only -shm shared with every new one.
    cursor = getattr(context.execution_context, "cursor", None)
    if cursor is not None:
        cursor.close()
    context.is_disconnect = True


class Database:
    """Holds the engine and session factory; created unbound, bound by `bind`."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._sqlite_path: Path | None = None

    def bind(self, url: str, **options: Any) -> Database:
        """Creates the engine and session factory for a database URL."""
        self.engine = make_engine(url, **options)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._sqlite_path = sqlite_file(url)
        return self

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yields a session inside one transaction: committed on success, rolled back on error."""
        if self._sessions is None:
            raise RuntimeError("Database is not bound: call bind first")
        with self._sessions() as session, session.begin():
            yield session

    def bound_engine(self) -> Engine:
        """Returns the engine, refusing to go on before bind."""
        if self.engine is None:
            raise RuntimeError("Database is not bound: call bind first")
        return self.engine

    @contextmanager
    def sqlite_writing(self) -> Iterator[sqlite3.Connection]:
        """Yields the SQLite driver's connection holding the write lock (BEGIN IMMEDIATE); commits on success.

        The hot write path calls the driver directly: SQLAlchemy's execution layer cost more than the
        statements. Driver errors still come out as SQLAlchemy's (OperationalError, IntegrityError...),
        and the connection is discarded, so that one opened read-only is reopened once the file is writable.
        """
        engine = self.bound_engine()
        try:
            pooled = engine.raw_connection()
        except sqlite3.Error as exc:  # opening a connection (its pragmas) can fail too: a full disk
            raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
        try:
            driver = pooled.driver_connection
            try:
                driver.execute("BEGIN IMMEDIATE")
                yield driver
                driver.commit()
            except sqlite3.Error as exc:
                pooled.invalidate(exc)
                raise DBAPIError.instance(None, None, exc, sqlite3.Error) from exc
        finally:
            pooled.close()  # back to the pool, rolled back if the block failed

    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None for another database or an in-memory one."""
        return self._sqlite_path

    def dispose(self) -> None:
        """Closes pooled connections (after a fork or at shutdown)."""
        if self.engine is not None:
            self.engine.dispose()


def insert_absent(session: Session, table: type[Any], values: Mapping[str, Any]) -> None:
    """Inserts a row unless one with its primary key exists: safe when replicas insert it at once."""
    if session.get_bind().dialect.name == "postgresql":
        statement = postgresql_insert(table).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite_insert(table).values(**values).on_conflict_do_nothing()
    session.execute(statement)
