"""GET /health/: status, database, model, version."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from flight_delay import __version__
from flight_delay.api import create_app


def test_health_without_a_model(client: FlaskClient) -> None:
    response = client.get("/health/")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "no_model"
    assert body["version"] == __version__
    assert body["database"] == {"ok": True, "backend": "sqlite"}
    assert body["model"]["loaded"] is False
    assert "/model/load/" in body["model"]["reason"]


def test_health_with_a_model(loaded_client: FlaskClient) -> None:
    body = loaded_client.get("/health/").get_json()
    version = loaded_client.get("/model/").get_json()["version"]

    assert body["status"] == "ok"
    assert body["model"] == {"loaded": True, "version": version, "kind": "flight-delay/lightgbm"}


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
