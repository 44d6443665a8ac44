"""Runs the committed Alembic migrations, one process at a time across every replica of a database."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from flight_delay.history.database import prepare_sqlite_path, sqlite_file

log = logging.getLogger(__name__)

# pg_advisory_lock's key: any constant the service's other locks do not use ("flightdl" in ASCII).
STARTUP_LOCK_KEY = 0x666C6967_6874646C
STARTUP_LOCK_POLL_S = 0.2


def migrations_dir() -> Path:
    """Finds `migrations/`: MIGRATIONS_DIR, else the source checkout's, else the working folder's."""
    candidates = [
        os.environ.get("MIGRATIONS_DIR"),
        Path(__file__).resolve().parents[3] / "migrations",
        Path.cwd() / "migrations",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "env.py").is_file():
            return Path(candidate)
    raise FileNotFoundError("cannot find the migrations folder: set MIGRATIONS_DIR")


def alembic_config(database_url: str) -> AlembicConfig:
    """Builds an Alembic configuration pointing at our migrations and the given database."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Brings the database schema up to `revision`, under the start-up lock."""
    with startup_lock(database_url):
        command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Takes the database schema down to `revision`, under the start-up lock."""
    with startup_lock(database_url):
        command.downgrade(alembic_config(database_url), revision)


def pending_revision(database_url: str) -> str | None:
    """Names the head revision when the database is not at it (None when it is up to date)."""
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    prepare_sqlite_path(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
    return None if current == head else head


@contextmanager
def startup_lock(database_url: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Holds the database's start-up lock: migrations and the start-up model, one replica at a time.

    PostgreSQL: a session-level advisory lock, so replicas on different hosts exclude each other.
    SQLite (one host): an flock on a file beside the database. Other backends: no lock.
    """
    prepare_sqlite_path(database_url)
    path = sqlite_file(database_url)
    if path is not None:
        with _file_lock(path.with_name(path.name + ".startup-lock"), timeout_s):
            yield
    elif make_url(database_url).get_backend_name() == "postgresql":
        with _advisory_lock(database_url, timeout_s):
            yield
    else:
        yield


@contextmanager
def _file_lock(path: Path, timeout_s: float) -> Iterator[None]:
    """Holds an exclusive flock on `path`, waiting up to timeout_s for another process to let go."""
    with path.open("a") as handle:
        _wait_for(lambda: _try_flock(handle.fileno()), timeout_s, str(path))
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _try_flock(fd: int) -> bool:
    """Takes the flock if it is free; False when another process holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def _advisory_lock(database_url: str, timeout_s: float) -> Iterator[None]:
    """Holds PostgreSQL's advisory lock STARTUP_LOCK_KEY on a connection of its own."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _wait_for(lambda: _try_advisory(connection), timeout_s, "the PostgreSQL start-up lock")
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": STARTUP_LOCK_KEY})
    finally:
        engine.dispose()


def _try_advisory(connection: Connection) -> bool:
    """Takes the advisory lock if it is free (pg_try_advisory_lock never waits)."""
    statement = text("SELECT pg_try_advisory_lock(:key)")
    return bool(connection.execute(statement, {"key": STARTUP_LOCK_KEY}).scalar())


def _wait_for(take: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Calls take() until it returns True, logging once that another process holds the lock."""
    deadline = time.monotonic() + timeout_s
    if take():
        return
    log.info("waiting for %s: another process is migrating or activating the start-up model", what)
    while time.monotonic() < deadline:
        time.sleep(STARTUP_LOCK_POLL_S)
        if take():
            return
    raise TimeoutError(f"{what} was held for more than {timeout_s:.0f} s")
