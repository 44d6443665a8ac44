"""Alembic migrations, on the backend under test: upgrade, downgrade, and the revisions match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, select

from flight_delay.context.tables import ContextRevision
from flight_delay.history.migrate import downgrade, migrations_dir, upgrade
from flight_delay.history.models import Base, Heartbeat

TABLES = {
    "model_versions",
    "model_artifacts",
    "model_activations",
    "predictions",
    "heartbeat",
    "actuals",
    "monitoring_counts",
    "monitoring_rollups",
    "monitoring_live",
    "context_revisions",
    "context_flights",
    "context_weather",
    "model_traffic",
    "model_audit",
    "replay_jobs",
    "alembic_version",
}
CONTEXT = {"context_revisions", "context_flights", "context_weather"}
LIFECYCLE = {"model_traffic", "model_audit", "replay_jobs"}


def schema(url: str) -> dict[str, set[str]]:
    """Lists the database's tables, indexes and sequences (PostgreSQL's id sequences included)."""
    engine = create_engine(url)
    try:
        inspector = inspect(engine)
        tables = set(inspector.get_table_names())
        indexes = {index["name"] for table in tables for index in inspector.get_indexes(table)}
        # SQLite has no sequences; PostgreSQL's must go with their tables on downgrade.
        sequences = set(inspector.get_sequence_names()) if engine.dialect.supports_sequences else set()
    finally:
        engine.dispose()
    return {"tables": tables, "indexes": indexes, "sequences": sequences}


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    upgrade(database_url)
    at_head = schema(database_url)
    assert at_head["tables"] == TABLES
    assert {
        "ix_predictions_created_at_id",
        "ix_predictions_model_version_created_at_id",
        "ix_predictions_request_id_created_at_id",
    } <= at_head["indexes"]

    downgrade(database_url, "base")
    assert schema(database_url) == {"tables": {"alembic_version"}, "indexes": set(), "sequences": set()}

    upgrade(database_url)
    assert schema(database_url) == at_head


def test_heartbeat_revision_down_and_up(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)

    downgrade(database_url, "0001")
    monitoring = {"actuals", "monitoring_counts", "monitoring_rollups", "monitoring_live"}
    later = {"heartbeat", "model_artifacts", *monitoring, *CONTEXT, *LIFECYCLE}
    assert set(inspect(engine).get_table_names()) == TABLES - later

    upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(select(Heartbeat.id)).scalars().all() == [1]
    engine.dispose()


def test_migrations_match_the_models(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()

    assert differences == []


def test_single_head() -> None:
    heads = ScriptDirectory(str(migrations_dir())).get_heads()

    assert len(heads) == 1


def test_context_revision_down_and_up(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)

    downgrade(database_url, "0005")
    assert set(inspect(engine).get_table_names()) == TABLES - CONTEXT - LIFECYCLE - {"monitoring_live"}

    upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(select(ContextRevision.id, ContextRevision.revision)).all() == [(1, 0)]
    engine.dispose()
