"""GET never writes: monitoring answers from a database it cannot write (a read-only file or replica)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from flight_delay.api import create_app
from flight_delay.api.services import services_of
from flight_delay.config import load_config
from flight_delay.history.database import sqlite_file
from flight_delay.monitoring.rollup import Rollup
from flight_delay.server import prepare
from tests.databases import backend_under_test
from tests.factories import minimal_flight, synthetic_flights
from tests.monitoring_helpers import flights_of, post_actuals, report, serve
from tests.servers import serve as serve_http
from tests.test_database_faults import database_files, obey_file_modes


def read_only_url(url: str) -> str:
    """The same database, opened so that nothing can be written (PostgreSQL: read-only transactions)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"sqlite:///file:{parsed.database}?mode=ro&uri=true"
    return parsed.update_query_dict({"options": "-c default_transaction_read_only=on"}).render_as_string(
        hide_password=False
    )


def test_a_read_only_sqlite_uri_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "flight_delay.db"

    assert sqlite_file(read_only_url(f"sqlite:///{path}")) == path  # no folder "file:" made anywhere


def filled(app: Flask, client: FlaskClient) -> dict[str, Any]:
    """Serves flights with actuals, rolls them up (all but what came after the mark) and reports."""
    served = serve(client, flights_of(synthetic_flights(200, seed=4)))
    post_actuals(client, [{"history_id": p["history_id"], "arr_delay": 3.0} for p in served[:50]])
    Rollup(services_of(app).db, grace=timedelta(0)).run_once()
    serve(client, [minimal_flight()] * 5)  # after the mark: counted from the history by the report
    return report(client)


def test_monitoring_answers_from_a_read_only_database(
    app: Flask, loaded_client: FlaskClient, app_config: dict[str, Any]
) -> None:
    expected = filled(app, loaded_client)

    read_only = create_app({**app_config, "DATABASE_URL": read_only_url(app_config["DATABASE_URL"])})
    client = read_only.test_client()
    answered = report(client)
    metrics = client.get("/metrics")
    refused = client.post("/model/predict/", json=minimal_flight())

    assert {**answered, "freshness": None} == {**expected, "freshness": None}
    assert answered["predictions"] == 205
    assert metrics.status_code == 200
    assert "flight_delay_drift_psi{" in metrics.get_data(as_text=True)
    assert refused.status_code == 503  # the database really refuses writes
    assert backend_under_test() in ("sqlite", "postgresql")


@pytest.mark.slow
@pytest.mark.sqlite_only
def test_monitoring_answers_from_a_read_only_file(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    data_dir = tmp_path / "data"
    prepare(
        load_config(
            {"DATA_DIR": str(data_dir), "DATABASE_URL": database_url}, DEFAULT_MODEL_PATH=model_files(0)
        )
    )
    with serve_http(data_dir, database_url) as server:
        for _ in range(3):
            assert requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=30).ok
    for path in database_files(database_url):
        path.chmod(0o444)

    try:
        with serve_http(data_dir, database_url, before_exec=obey_file_modes) as server:
            body = requests.get(f"{server.url}/model/monitoring/", timeout=30)
            metrics = requests.get(f"{server.url}/metrics", timeout=30)
            health = requests.get(f"{server.url}/health/", timeout=30)
    finally:
        for path in database_files(database_url):
            path.chmod(0o644)

    assert body.status_code == 200, body.text
    assert body.json()["predictions"] == 3
    assert metrics.status_code == 200
    assert "flight_delay_live_actuals{" in metrics.text
    assert health.json()["database"]["reason"] == "attempt to write a readonly database"
