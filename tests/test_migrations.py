"""Alembic migrations: upgrade, downgrade, and the committed revisions match the models."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select

from flight_delay.history.migrate import alembic_config, downgrade, upgrade
from flight_delay.history.models import Base, Heartbeat

TABLES = {"model_versions", "model_activations", "predictions", "heartbeat", "alembic_version"}


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested' / 'm.db'}"
    upgrade(url)
    assert set(inspect(create_engine(url)).get_table_names()) == TABLES

    downgrade(url, "base")
    assert set(inspect(create_engine(url)).get_table_names()) == {"alembic_version"}

    upgrade(url)
    assert set(inspect(create_engine(url)).get_table_names()) == TABLES


def test_heartbeat_revision_down_and_up(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)

    downgrade(database_url, "0001")
    assert set(inspect(engine).get_table_names()) == TABLES - {"heartbeat"}

    upgrade(database_url)
    with engine.connect() as connection:
        assert connection.execute(select(Heartbeat.id)).scalars().all() == [1]
    engine.dispose()


def test_migrations_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    with create_engine(url).connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)

    assert differences == []


def test_single_head(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config(f"sqlite:///{tmp_path / 'm.db'}")).get_heads()

    assert len(heads) == 1
    assert command is not None
