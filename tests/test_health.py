"""GET /health/ (status, database, model, version), /health/live and /health/ready."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, delete, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from flight_delay import __version__
from flight_delay.api import create_app
from flight_delay.api.services import services_of
from flight_delay.history import service as service_module
from flight_delay.history.models import Heartbeat
from tests.databases import drop_database


def test_health_without_a_model(client: FlaskClient, database_url: str) -> None:
    response = client.get("/health/")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"  # the process and its database answer; the model has its own field
    assert body["version"] == __version__
    assert body["database"] == {"ok": True, "backend": make_url(database_url).get_backend_name()}
    assert body["model"]["loaded"] is False
    assert "/model/load/" in body["model"]["reason"]


def test_live_answers_without_a_model(client: FlaskClient) -> None:
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_not_ready_without_a_model(client: FlaskClient) -> None:
    response = client.get("/health/ready")

    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "not_ready"
    assert body["status"] == 503
    assert "/model/load/" in body["message"]


def test_ready_once_a_model_is_loaded(loaded_client: FlaskClient) -> None:
    version = loaded_client.get("/model/").get_json()["version"]

    response = loaded_client.get("/health/ready")

    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["model_version"] == version
    assert body["database"]["ok"] is True


def test_not_ready_when_the_model_stops_scoring(loaded_client: FlaskClient, monkeypatch: Any) -> None:
    model = services_of(loaded_client.application).registry.active().model
    monkeypatch.setattr(model, "predict", lambda rows: [float("nan")] * len(rows))

    response = loaded_client.get("/health/ready")

    assert response.status_code == 503
    assert response.get_json()["code"] == "not_ready"
    assert "finite" in response.get_json()["message"]


@pytest.mark.sqlite_only
def test_not_ready_when_the_database_refuses_writes(loaded_client: FlaskClient, database_url: str) -> None:
    path = make_url(database_url).database
    with sqlite3.connect(path) as connection:  # as a full disk would, every heartbeat write fails
        connection.execute(
            "CREATE TRIGGER refuse BEFORE UPDATE ON heartbeat BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )

    response = loaded_client.get("/health/ready")

    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "not_ready"
    assert "disk full" in body["message"]


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
    assert body["database"]["reason"] == "unable to open database file"
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
    assert body["database"]["ok"] is False
    assert body["database"]["backend"] == "postgresql"
    # The worker still holds the model it serves; without a database it is not ready to serve it.
    assert body["model"]["loaded"] is True
    ready = loaded_client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.get_json()["code"] == "not_ready"


def heartbeat_at(database_url: str) -> datetime:
    """Reads when the health probe last wrote the heartbeat row."""
    engine = create_engine(database_url)
    try:
        with Session(engine) as session:
            return session.execute(select(Heartbeat.beat_at)).scalar_one()
    finally:
        engine.dispose()


def test_health_proves_the_database_takes_a_write(client: FlaskClient, database_url: str) -> None:
    before = heartbeat_at(database_url)

    response = client.get("/health/")

    assert response.status_code == 200
    assert heartbeat_at(database_url) > before


def test_health_recreates_a_deleted_heartbeat_row(client: FlaskClient, database_url: str) -> None:
    with services_of(client.application).db.transaction() as session:
        session.execute(delete(Heartbeat))
    deleted_at = datetime.now(UTC)

    response = client.get("/health/")

    assert response.status_code == 200
    assert heartbeat_at(database_url) >= deleted_at, "the probe wrote the row again"


@pytest.mark.sqlite_only
def test_health_reports_a_database_that_refuses_writes(loaded_client: FlaskClient) -> None:
    with services_of(loaded_client.application).db.transaction() as session:
        session.execute(
            text(
                "CREATE TRIGGER refuse BEFORE UPDATE ON heartbeat "
                "BEGIN SELECT RAISE(ABORT, 'no writes today'); END"
            )
        )

    response = loaded_client.get("/health/")

    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable"
    assert body["database"] == {"ok": False, "backend": "sqlite", "reason": "no writes today"}
    assert body["model"]["loaded"] is True, "reads still work: the model is known"


def read_only_error() -> OperationalError:
    """What SQLAlchemy raises when a connection SQLite opened read-only is asked to write."""
    driver_error = sqlite3.OperationalError("attempt to write a readonly database")
    driver_error.sqlite_errorname = "SQLITE_READONLY"  # type: ignore[attr-defined]
    return OperationalError("UPDATE heartbeat ...", {}, driver_error)


@pytest.mark.parametrize(("failures", "ok"), [(1, True), (2, False)])
def test_a_connection_left_read_only_gets_one_more_try(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, failures: int, ok: bool
) -> None:
    """The file is writable again but a pooled connection still is not: health tries once afresh."""
    calls = []
    real_beat = service_module.beat

    def beat(session: Session, now: datetime) -> None:
        calls.append(now)
        if len(calls) <= failures:
            raise read_only_error()
        real_beat(session, now)

    monkeypatch.setattr(service_module, "beat", beat)

    response = client.get("/health/")

    assert response.get_json()["database"]["ok"] is ok
    assert response.status_code == (200 if ok else 503)
    assert len(calls) == 2
