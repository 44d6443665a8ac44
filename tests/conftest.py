"""Fixtures: a fresh migrated database per test (SQLite or PostgreSQL), the app, its client, tiny models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from flight_delay.api import create_app
from flight_delay.api.services import services_of
from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade
from flight_delay.services import Services
from tests.databases import SERVER_URL, backend_under_test, connect_server, create_database, drop_database
from tests.factories import ADMIN_HEADERS, ADMIN_TOKEN, tiny_model, write_pickle

# A marker naming one backend: its tests exercise that backend itself and run only on it.
# The browser tests read the page, whose API behaves the same on both backends: they run once, on SQLite.
BACKEND_MARKERS = {"sqlite_only": "sqlite", "postgresql_only": "postgresql", "browser": "sqlite"}
# Every database a test can reach comes through this fixture (database_url and module_database_url
# depend on it; tests/servers.py takes the URL they give). A test without it reads no database, so it
# runs once, in the SQLite pass: on another backend it would repeat the same run.
DATABASE_FIXTURE = "database_server"


def pytest_report_header(config: pytest.Config) -> str:
    """Says which database the run uses, at the top of pytest's output."""
    return f"database under test: {backend_under_test()}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skips the tests marked for another backend; off SQLite, leaves out those that read no database."""
    backend = backend_under_test()
    if backend != "sqlite":
        apart = [item for item in items if DATABASE_FIXTURE not in item.fixturenames]
        if apart:
            config.hook.pytest_deselected(items=apart)
            items[:] = [item for item in items if DATABASE_FIXTURE in item.fixturenames]
    for item in items:
        for marker, only in BACKEND_MARKERS.items():
            if item.get_closest_marker(marker) and backend != only:
                item.add_marker(pytest.mark.skip(reason=f"{only} only; this run is on {backend}"))


@pytest.fixture(scope="session")
def database_server() -> Iterator[Engine | None]:
    """An AUTOCOMMIT engine on the database server under test, or None when testing SQLite files."""
    if not SERVER_URL:
        yield None
        return
    server = connect_server(SERVER_URL)
    yield server
    server.dispose()


@pytest.fixture
def database_url(tmp_path: Path, database_server: Engine | None) -> Iterator[str]:
    """A fresh, empty database for one test, on the backend under test (SQLite file by default)."""
    if database_server is None:
        yield f"sqlite:///{tmp_path / 'data' / 'flight_delay.db'}"
        return
    url = create_database(database_server)
    yield url
    drop_database(database_server, url)


@pytest.fixture(scope="module")
def module_database_url(
    tmp_path_factory: pytest.TempPathFactory, database_server: Engine | None
) -> Iterator[str]:
    """A fresh database shared by one module's tests, for a server the module starts once."""
    if database_server is None:
        yield f"sqlite:///{tmp_path_factory.mktemp('module-db') / 'flight_delay.db'}"
        return
    url = create_database(database_server)
    yield url
    drop_database(database_server, url)


@pytest.fixture
def app_config(tmp_path: Path, database_url: str) -> dict[str, Any]:
    """Configuration for one test: its own data folder, migrated database and model store."""
    upgrade(database_url)
    return {
        "ENV": "testing",
        "DATA_DIR": tmp_path / "data",
        "DATABASE_URL": database_url,
        "MODEL_STORE_DIR": tmp_path / "data" / "models",
        "DEFAULT_MODEL_PATH": tmp_path / "data" / "absent.pkl",
        "ML_API_ADMIN_TOKEN": ADMIN_TOKEN,
        # Reading is public in the suite's apps, as it was before issue 26, so that the tests of
        # everything else read without a token; tests/test_access*.py and the fuzzing prove the
        # production default (a reader or admin token) by setting it back to False.
        "ML_API_PUBLIC_READ": True,
    }


@pytest.fixture
def app(app_config: dict[str, Any]) -> Flask:
    """The app over a fresh, migrated database with no model loaded."""
    return create_app(app_config)


@pytest.fixture
def services(app: Flask) -> Services:
    """The app's services (the composition root's)."""
    return services_of(app)


@pytest.fixture
def db(services: Services) -> Database:
    """The app's database."""
    return services.db


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """Writes (once per seed) a tiny project artifact and returns its path."""
    folder = tmp_path_factory.mktemp("models")
    made: dict[int, Path] = {}

    def make(seed: int = 0) -> Path:
        if seed not in made:
            made[seed] = write_pickle(tiny_model(seed), folder / f"model-{seed}.pkl")
        return made[seed]

    return make


def upload(client: FlaskClient, path: Path) -> Any:
    """Loads a model file through /model/load/ as multipart and returns the response."""
    with path.open("rb") as handle:
        return client.post("/model/load/", data={"file": (handle, path.name)}, headers=ADMIN_HEADERS)


@pytest.fixture
def loaded_client(client: FlaskClient, model_files: Callable[[int], Path]) -> FlaskClient:
    """A client whose app serves the tiny model of seed 0."""
    response = upload(client, model_files(0))
    assert response.status_code == 201, response.get_json()
    return client
