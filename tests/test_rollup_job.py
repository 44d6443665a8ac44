"""`flight-delay serve` runs the roll-up job beside its workers; their gauges follow the active model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, select

from flight_delay.history.migrate import upgrade
from flight_delay.history.models import RollupMark
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.servers import RunningServer, serve, upload_model

pytestmark = pytest.mark.slow

GAUGES = ("flight_delay_live_", "flight_delay_drift_psi", "flight_delay_monitoring_lag_seconds")


def scrapes(server: RunningServer, count: int) -> list[str]:
    """Scrapes /metrics on fresh connections, so that the workers share them."""
    answers = []
    for _ in range(count):
        response = requests.get(f"{server.url}/metrics", headers={"Connection": "close"}, timeout=30)
        assert response.status_code == 200
        answers.append(response.text)
    return answers


def gauge_versions(text: str) -> set[str]:
    """The model versions the monitoring gauges of one scrape are labelled with."""
    lines = [line for line in text.splitlines() if line.startswith(GAUGES)]
    return {line.split('model_version="')[1].split('"')[0] for line in lines if 'model_version="' in line}


def marked(database_url: str) -> dict[str, object]:
    """The roll-up marks stored: model version -> rolled until."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return dict(connection.execute(select(RollupMark.model_version, RollupMark.rolled_until)).all())
    finally:
        engine.dispose()


def wait_for(check: Callable[[], bool], timeout_s: float = 60) -> None:
    """Polls until check() holds."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_job_runs_beside_the_workers_and_the_gauges_follow_the_model(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    env = {"MONITORING_ROLLUP_INTERVAL_S": "1", "MONITORING_REFRESH_S": "3600"}
    with serve(tmp_path / "data", database_url, workers=2, **env) as server:
        first = upload_model(server.url, model_files(0))
        for _ in range(4):
            assert requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=30).ok
        assert all(gauge_versions(text) == {first} for text in scrapes(server, 6))
        job = server.rollup_pids()
        assert len(job) == 1
        wait_for(lambda: first in marked(database_url))  # the job rolled the model up, nobody asked

        second = upload_model(server.url, model_files(1))
        assert requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=30).ok
        seen = scrapes(server, 8)  # hours before the refresh interval ends: the swap alone renews them

        assert {version for text in seen for version in gauge_versions(text)} == {second}
        assert requests.get(f"{server.url}/model/monitoring/", headers=ADMIN_HEADERS, timeout=30).ok

    assert not any(os.path.exists(f"/proc/{pid}") for pid in job)  # stopped with the server
    assert "Traceback" not in server.log()


def test_the_cli_job_stops_cleanly_on_sigterm(database_url: str) -> None:
    upgrade(database_url)
    job = subprocess.Popen(
        [str(Path(sys.executable).parent / "flight-delay"), "rollup", "--every", "1"],
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(3)  # a pass or two
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=30) == 0
    finally:
        if job.poll() is None:
            job.kill()
    assert "stopping after the current chunk" in job.stdout.read()
