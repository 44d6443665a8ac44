"""The registry: artifacts kept in the database, a verified local cache per replica, the active model
re-read at most every MODEL_REFRESH_MS."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, func, select, update

from flight_delay.errors import ModelNotLoaded
from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade
from flight_delay.history.models import ModelActivation, ModelArtifact, ModelVersion, utcnow
from flight_delay.serving.registry import ModelRegistry
from tests import hostile as hostile_module


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


def native_of(registry: ModelRegistry, version: str) -> tuple[str, bytes]:
    """The sha256 and bytes of the native form the sandbox wrote of a version."""
    with registry.db.transaction() as session:
        native = session.get(ModelVersion, version).native_sha256
        return native, session.get(ModelArtifact, native).content


def test_a_replica_with_an_empty_cache_fetches_the_artifact_from_the_database(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    data = model_files(0).read_bytes()
    version = replicas("a").activate_upload(data, "a.pkl").version
    other = replicas("b")

    assert other.active().version == version
    native, native_bytes = native_of(other, version)
    assert other.store.cache_path(native).read_bytes() == native_bytes  # what workers load
    assert not other.store.cache_path(version).exists()  # the upload itself: never read by a worker
    with other.db.transaction() as session:
        assert session.get(ModelArtifact, version).content == data  # kept: the version is its sha256


def test_a_corrupted_cached_artifact_is_detected_and_fetched_again(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path], caplog: Any
) -> None:
    version = replicas("a").activate_upload(model_files(0).read_bytes(), "a.pkl").version
    other = replicas("b")
    native, native_bytes = native_of(other, version)
    cached = other.store.cache_path(native)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(native_bytes[:-1] + bytes([native_bytes[-1] ^ 1]))  # one bit flipped

    assert other.active().version == version
    assert cached.read_bytes() == native_bytes
    assert "does not match its sha256" in caplog.text


def test_an_artifact_stored_nowhere_is_a_clear_503(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    registry = replicas("a")
    version = registry.activate_upload(model_files(0).read_bytes(), "a.pkl").version
    native, _ = native_of(registry, version)
    with registry.db.transaction() as session:
        session.execute(ModelArtifact.__table__.delete())
    fresh = replicas("b")

    with pytest.raises(ModelNotLoaded, match=f"artifact of model {native} is not stored"):
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
        assert session.scalar(select(func.count()).select_from(ModelArtifact)) == 2  # upload, native


def test_start_up_copies_legacy_local_artifacts_into_the_database(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    data = model_files(0).read_bytes()
    registry = replicas("a")
    version = registry.activate_upload(data, "a.pkl").version
    with registry.db.transaction() as session:  # as a database migrated from revision 0002 holds it
        session.execute(ModelArtifact.__table__.delete())
        session.execute(update(ModelVersion).values(native_sha256=None))
    (registry.store.cache_dir / f"{version}.pkl").write_bytes(data)

    assert registry.bootstrap(None) == version
    with registry.db.transaction() as session:
        assert session.get(ModelArtifact, version).content == data
    assert replicas("b").active().version == version  # checked in the sandbox on the way


def forget_native_forms(registry: ModelRegistry) -> None:
    """Makes the database look as one whose versions were accepted before the model sandbox."""
    with registry.db.transaction() as session:
        natives = select(ModelVersion.native_sha256).where(ModelVersion.native_sha256 != ModelVersion.version)
        session.execute(delete(ModelArtifact).where(ModelArtifact.sha256.in_(natives)))
        session.execute(update(ModelVersion).values(native_sha256=None))


def counted_checks(registry: ModelRegistry) -> list[int]:
    """Counts the uploads a registry's (real) sandbox checks from now on."""
    checks: list[int] = []
    check = registry.sandbox.check

    def counted(data: bytes) -> Any:
        checks.append(len(data))
        return check(data)

    registry.sandbox.check = counted  # type: ignore[method-assign]
    return checks


def test_a_version_stored_before_the_sandbox_is_checked_once_and_its_native_form_stored(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    registry = replicas("a")
    version = registry.activate_upload(model_files(0).read_bytes(), "a.pkl").version
    forget_native_forms(registry)
    second, third = replicas("b"), replicas("c")
    checked_by_second, checked_by_third = counted_checks(second), counted_checks(third)

    assert second.active().version == version
    assert third.active().version == version
    assert native_of(registry, version)[1].startswith(b"{")  # the pickle's native form: a pickle-free bundle
    assert len(checked_by_second) == 1
    assert checked_by_third == []  # it found the native form stored


def test_a_stored_version_the_sandbox_refuses_is_not_served_nor_checked_again(
    replicas: Callable[..., ModelRegistry],
) -> None:
    registry = replicas("a")
    hostile = hostile_module.null_handle_booster()  # accepted by a release without the sandbox
    version = hashlib.sha256(hostile).hexdigest()
    with registry.db.transaction() as session:
        details = {"version": version, "kind": "lightgbm.Booster", "size_bytes": len(hostile), "details": {}}
        session.add(ModelVersion(**details, created_at=utcnow()))
        session.flush()  # the version row before the rows naming it
        session.add(
            ModelArtifact(sha256=version, content=hostile, size_bytes=len(hostile), created_at=utcnow())
        )
        session.add(ModelActivation(version=version, activated_at=utcnow()))
    other = replicas("b", refresh_ms=0)
    checks = counted_checks(other)

    for _ in range(3):
        with pytest.raises(ModelNotLoaded, match="does not pass the model check: A lightgbm Booster"):
            other.active()
    assert len(checks) == 1


def test_bootstrap_keeps_the_active_model(
    replicas: Callable[..., ModelRegistry], model_files: Callable[[int], Path]
) -> None:
    registry = replicas("a")
    version = registry.activate_upload(model_files(0).read_bytes(), "a.pkl").version

    assert registry.bootstrap(model_files(1)) == version
    with registry.db.transaction() as session:
        assert session.get(ModelVersion, version).created_at <= utcnow()
