"""The engine's per-backend settings, read back from the database itself."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from flight_delay.history.database import make_engine


def show(url: str, setting: str, **options: int) -> str:
    """Returns a PostgreSQL setting as a new connection of make_engine's engine sees it."""
    engine = make_engine(url, **options)
    try:
        with engine.connect() as connection:
            return connection.execute(text(f"SHOW {setting}")).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.postgresql_only
def test_postgres_connections_wait_for_a_lock_no_longer_than_configured(database_url: str) -> None:
    assert show(database_url, "lock_timeout", lock_timeout_ms=1234) == "1234ms"


@pytest.mark.postgresql_only
def test_postgres_options_in_the_url_win(database_url: str) -> None:
    url = make_url(database_url).update_query_dict({"options": "-c lock_timeout=777"})

    assert show(url.render_as_string(hide_password=False), "lock_timeout", lock_timeout_ms=1234) == "777ms"
