"""Alembic environment: migrates the database named by the configuration (or DATABASE_URL)."""

import os

from alembic import context
from sqlalchemy import create_engine

import flight_delay.context.tables  # noqa: F401 - the context store's tables, on the same metadata
from flight_delay.history.models import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    """Returns the URL set by flight_delay.history.migrate, or DATABASE_URL for the alembic CLI."""
    return config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"]


def run_migrations_offline() -> None:
    """Emits SQL without a connection (alembic upgrade --sql)."""
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Applies migrations over a live connection; batch mode lets SQLite alter tables."""
    engine = create_engine(database_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
