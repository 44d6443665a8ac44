"""Runs the committed Alembic migrations programmatically (once, before gunicorn forks)."""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig

from flight_delay.history.database import prepare_sqlite_path


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
    """Brings the database schema up to `revision`."""
    prepare_sqlite_path(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    """Takes the database schema down to `revision`."""
    command.downgrade(alembic_config(database_url), revision)
