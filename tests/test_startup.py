"""Start-up beside other replicas: migrations under the start-up lock, and `serve --no-migrate`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from flight_delay.history.migrate import pending_revision, startup_lock, upgrade
from tests.factories import ADMIN_TOKEN
from tests.servers import serve

FLIGHT_DELAY = str(Path(sys.executable).parent / "flight-delay")


def run_cli(*args: str, database_url: str, **env: str) -> subprocess.Popen:
    """Starts a flight-delay command on the given database."""
    environment = {**os.environ, "DATABASE_URL": database_url, **env}
    return subprocess.Popen(
        [FLIGHT_DELAY, *args], env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_migrations_started_at_once_all_succeed(database_url: str) -> None:
    processes = [run_cli("migrate", database_url=database_url) for _ in range(4)]
    outputs = [process.communicate(timeout=120)[0] for process in processes]

    assert [process.returncode for process in processes] == [0] * 4, outputs
    assert pending_revision(database_url) is None


def test_the_start_up_lock_excludes_a_second_holder(database_url: str) -> None:
    upgrade(database_url)
    order: list[str] = []

    def second() -> None:
        with startup_lock(database_url):
            order.append("second")

    with startup_lock(database_url):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        order.append("first done")
    thread.join(10)

    assert order == ["first done", "second"]


def test_serve_without_migrating_refuses_a_database_behind_the_code(
    database_url: str, tmp_path: Path
) -> None:
    process = run_cli(
        "serve",
        "--no-migrate",
        database_url=database_url,
        DATA_DIR=str(tmp_path),
        ML_API_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    output = process.communicate(timeout=60)[0]

    assert process.returncode != 0
    assert "run `flight-delay migrate`" in output


@pytest.mark.slow
def test_serve_without_migrating_after_the_release_step(database_url: str, tmp_path: Path) -> None:
    migrate = run_cli("migrate", database_url=database_url)
    assert migrate.wait(timeout=120) == 0, migrate.communicate()[0]

    with serve(tmp_path / "data", database_url, workers=1, MIGRATE_AT_START="false") as server:
        assert requests.get(f"{server.url}/health/live", timeout=10).status_code == 200
        assert "upgraded" not in server.log().lower()
