"""The registry: artifacts kept in the database, a verified local cache per replica, the active model
re-read at most every MODEL_REFRESH_MS."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from flight_delay.errors import ModelNotLoaded
from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade
from flight_delay.history.models import ModelArtifact, ModelVersion, utcnow
from flight_delay.serving.registry import ModelRegistry


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
def replicas(tmp_path: Path, database_url: str) -> Iterator[Callable[..., ModelRegistry]]:
    """Makes registries over one database, each with a model cache of its own (as replicas have)."""
    upgrade(database_url)
    databases: list[Database] = []

    def make(name: str, refresh_ms: int = 250) -> ModelRegistry:
        databases.append(Database().bind(database_url))
        return ModelRegistry().configure(tmp_path / name / "models", databases[-1], refresh_ms)

    yield make
    for db in databases:
        db.dispose()


def test_a_worker_asks_the_database_at_most_once_per_interval(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    first, second = replicas("a"), replicas("b", refresh_ms=200)
    version_a = first.activate_upload(model_files(0).read_bytes(), "a.pkl").version
    assert second.active().version == version_a

    with counted_statements(second.db) as statements:
        for _ in range(20):
            assert second.active().version == version_a
    assert statements == []

    version_b = first.activate_upload(model_files(1).read_bytes(), "b.pkl").version
    time.sleep(0.25)
    with counted_statements(second.db) as statements:
        assert second.active().version == version_b
    assert any("model_activations" in s for s in statements)


def test_with_no_interval_every_call_asks(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    first, second = replicas("a"), replicas("b", refresh_ms=0)
    version = first.activate_upload(model_files(0).read_bytes(), "a.pkl").version

    with counted_statements(second.db) as statements:
        for _ in range(3):
            assert second.active().version == version
    assert len([s for s in statements if "model_activations" in s]) == 3


def test_the_activating_worker_serves_the_new_model_at_once(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    registry = replicas("a", refresh_ms=60_000)
    registry.activate_upload(model_files(0).read_bytes(), "a.pkl")
    version_b = registry.activate_upload(model_files(1).read_bytes(), "b.pkl").version

    assert registry.active().version == version_b


def test_a_replica_with_an_empty_cache_fetches_the_artifact_from_the_database(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    data = model_files(0).read_bytes()
    version = replicas("a").activate_upload(data, "a.pkl").version
    other = replicas("b")

    assert other.active().version == version
    assert other.store.cache_path(version).read_bytes() == data
    with other.db.transaction() as session:
        assert session.scalar(select(ModelArtifact.size_bytes)) == len(data)


def test_a_corrupted_cached_artifact_is_detected_and_fetched_again(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path], caplog: Any
) -> None:
    data = model_files(0).read_bytes()
    version = replicas("a").activate_upload(data, "a.pkl").version
    other = replicas("b")
    cached = other.store.cache_path(version)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit flipped

    assert other.active().version == version
    assert cached.read_bytes() == data
    assert "does not match its sha256" in caplog.text


def test_an_artifact_stored_nowhere_is_a_clear_503(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    registry = replicas("a")
    version = registry.activate_upload(model_files(0).read_bytes(), "a.pkl").version
    with registry.db.transaction() as session:
        session.execute(ModelArtifact.__table__.delete())
    fresh = replicas("b")

    with pytest.raises(ModelNotLoaded, match=f"artifact of model {version} is not stored"):
        fresh.active()


def test_the_same_artifact_activated_by_replicas_at_once_is_one_version(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    data = model_files(0).read_bytes()
    registries = [replicas(f"r{i}") for i in range(4)]
    barrier = threading.Barrier(len(registries))
    outcomes: list[Any] = []

    def activate(registry: ModelRegistry) -> None:
        barrier.wait()
        try:
            outcomes.append(registry.activate_upload(data, "same.pkl").version)
        except Exception as exc:  # collected: the test names any failure
            outcomes.append(exc)

    threads = [threading.Thread(target=activate, args=(r,)) for r in registries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(set(outcomes)) == 1, outcomes
    assert isinstance(outcomes[0], str), outcomes
    with registries[0].db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ModelVersion)) == 1
        assert session.scalar(select(func.count()).select_from(ModelArtifact)) == 1


def test_start_up_copies_legacy_local_artifacts_into_the_database(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    data = model_files(0).read_bytes()
    registry = replicas("a")
    version = registry.activate_upload(data, "a.pkl").version
    with registry.db.transaction() as session:  # as a database migrated from revision 0002 holds it
        session.execute(ModelArtifact.__table__.delete())
    registry.store.cache_path(version).rename(registry.store.cache_dir / f"{version}.pkl")

    assert registry.bootstrap(None) == version
    with registry.db.transaction() as session:
        assert session.get(ModelArtifact, version).content == data
    assert replicas("b").active().version == version


def test_bootstrap_keeps_the_active_model(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    registry = replicas("a")
    version = registry.activate_upload(model_files(0).read_bytes(), "a.pkl").version

    assert registry.bootstrap(model_files(1)) == version
    with registry.db.transaction() as session:
        assert session.get(ModelVersion, version).created_at <= utcnow()
