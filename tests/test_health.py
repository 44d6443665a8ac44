"""GET /health/: status, database, model, version."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from flight_delay import __version__
from flight_delay.api import create_app
from tests.databases import drop_database


def test_health_without_a_model(client: FlaskClient, database_url: str) -> None:
    response = client.get("/health/")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "no_model"
    assert body["version"] == __version__
    assert body["database"] == {"ok": True, "backend": make_url(database_url).get_backend_name()}
    assert body["model"]["loaded"] is False
    assert "/model/load/" in body["model"]["reason"]


def test_health_with_a_model(loaded_client: FlaskClient) -> None:
    body = loaded_client.get("/health/").get_json()
    version = loaded_client.get("/model/").get_json()["version"]

    assert body["status"] == "ok"
    assert body["model"] == {"loaded": True, "version": version, "kind": "flight-delay/lightgbm"}


@pytest.mark.sqlite_only
def test_health_reports_an_unreachable_database(app_config: dict, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be")
    config = {**app_config, "DATABASE_URL": f"sqlite:///{tmp_path / 'missing' / 'x.db'}"}
    app = create_app(config)
    (tmp_path / "missing").rmdir()
    (tmp_path / "missing").write_text("now a file: the database cannot be opened")

    response = app.test_client().get("/health/")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"]["ok"] is False
    assert body["model"]["loaded"] is False


@pytest.mark.postgresql_only
def test_health_reports_a_database_dropped_under_the_app(
    loaded_client: FlaskClient, database_server: Engine, database_url: str
) -> None:
    assert loaded_client.get("/health/").status_code == 200
    drop_database(database_server, database_url)  # ends the app's pooled connections too

    response = loaded_client.get("/health/")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"] == {"ok": False, "backend": "postgresql"}
    assert body["model"] == {"loaded": False, "reason": "The database is unavailable."}
