"""The registry's active model: read from the database, re-read on SQLite only when ACTIVE changes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade
from flight_delay.serving.registry import ACTIVE_STAMP, ModelRegistry


@contextmanager
def counted_statements(db: Database) -> Iterator[list[str]]:
    """Collects the SQL statements the database runs inside the block."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


@pytest.fixture
def workers(tmp_path: Path, database_url: str) -> Iterator[tuple[ModelRegistry, ModelRegistry]]:
    """Two registries over one store and one database, as two gunicorn workers have."""
    upgrade(database_url)
    databases = [Database().bind(database_url), Database().bind(database_url)]
    yield tuple(ModelRegistry().configure(tmp_path / "store", db) for db in databases)  # type: ignore[misc]
    for db in databases:
        db.dispose()


@pytest.mark.sqlite_only
def test_sqlite_worker_reads_the_database_again_only_when_active_changes(
    workers: tuple[ModelRegistry, ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    first, second = workers
    version_a = first.activate_upload(model_files(0).read_bytes(), "a.pkl").version
    assert second.active().version == version_a

    with counted_statements(second.db) as statements:
        for _ in range(20):
            assert second.active().version == version_a
    assert statements == []

    version_b = first.activate_upload(model_files(1).read_bytes(), "b.pkl").version
    with counted_statements(second.db) as statements:
        assert second.active().version == version_b
    assert statements  # the changed ACTIVE file sent it back to the database


@pytest.mark.sqlite_only
def test_without_the_active_file_every_call_asks_the_database(
    workers: tuple[ModelRegistry, ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    first, second = workers
    version = first.activate_upload(model_files(0).read_bytes(), "a.pkl").version
    (first.store_dir / ACTIVE_STAMP).unlink()

    with counted_statements(second.db) as statements:
        assert second.active().version == version
        assert second.active().version == version
    assert len([s for s in statements if "model_activations" in s]) == 2


@pytest.mark.postgresql_only
def test_on_a_server_database_every_call_asks_the_database(
    workers: tuple[ModelRegistry, ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    first, second = workers
    version = first.activate_upload(model_files(0).read_bytes(), "a.pkl").version

    with counted_statements(second.db) as statements:
        for _ in range(3):
            assert second.active().version == version
    assert len([s for s in statements if "model_activations" in s]) == 3
