"""Three replicas (separate `serve` processes, data folders and model caches) over one database."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select

from flight_delay.history.models import ModelActivation, ModelArtifact, ModelVersion
from tests.factories import minimal_flight
from tests.servers import RunningServer, replicas, upload_model
from tests.traffic import Traffic, recorded_predictions

pytestmark = pytest.mark.slow

REPLICAS = 3


def get(server: RunningServer, path: str) -> requests.Response:
    """GETs a path of one replica."""
    return requests.get(f"{server.url}{path}", timeout=10)


def row_counts(database_url: str) -> dict[str, int]:
    """How many model versions, artifacts and activations the database holds."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return {
                model.__tablename__: connection.scalar(select(func.count()).select_from(model))
                for model in (ModelVersion, ModelArtifact, ModelActivation)
            }
    finally:
        engine.dispose()


def native_of(database_url: str, version: str) -> str:
    """The sha256 of the native form the model sandbox wrote of a version (what workers load)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(
                select(ModelVersion.native_sha256).where(ModelVersion.version == version)
            )
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], Any], timeout: float) -> float:
    """Polls condition until true; returns the seconds it took, or fails after timeout."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not true within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started


def test_replicas_started_at_once_on_a_fresh_database_all_come_up_with_one_start_up_model(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    start_up = model_files(0)
    version = hashlib.sha256(start_up.read_bytes()).hexdigest()

    with replicas(REPLICAS, tmp_path, database_url, DEFAULT_MODEL_PATH=str(start_up)) as servers:
        for server in servers:
            ready = get(server, "/health/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["model_version"] == version

    # One version; its artifacts: the upload and the native form the model sandbox wrote of it.
    assert row_counts(database_url) == {"model_versions": 1, "model_artifacts": 2, "model_activations": 1}


def test_a_model_uploaded_to_one_replica_is_served_by_all_and_readiness_follows(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with replicas(REPLICAS, tmp_path, database_url) as servers:
        for server in servers:
            assert get(server, "/health/live").status_code == 200
            not_ready = get(server, "/health/ready")
            assert not_ready.status_code == 503
            assert not_ready.json()["code"] == "not_ready"

        version = upload_model(servers[0].url, model_files(1))

        for number, server in enumerate(servers):
            seconds = wait_until(lambda s=server: get(s, "/model/").json().get("version") == version, 2.0)
            print(f"replica {number} serves {version[:12]} after {seconds:.2f} s")
            assert get(server, "/health/ready").status_code == 200
            answer = requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_version"] == version
            # Each replica fetched the native form from the database into its own cache, none shared.
            assert (tmp_path / f"replica-{number}" / "models" / native_of(database_url, version)).is_file()


def test_a_replica_killed_under_load_loses_no_answered_prediction(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with replicas(REPLICAS, tmp_path, database_url, workers=2) as servers:
        upload_model(servers[0].url, model_files(0))
        for server in servers:
            wait_until(lambda s=server: get(s, "/health/ready").status_code == 200, 5.0)
        victim = servers[1]

        def kill_midway(traffic: Traffic) -> None:
            """SIGKILLs one replica (master, workers, history writer) once a third was answered."""
            traffic.wait_for_answers(traffic.total // 3)
            os.killpg(victim.process.pid, signal.SIGKILL)
            traffic.mark("killed")

        traffic = Traffic([s.url for s in servers], total=1_500, clients=6, prefix="replicas")
        traffic.run(kill_midway)
        survivors_ready = [get(s, "/health/ready").status_code for s in servers if s is not victim]

    kinds = traffic.kinds()
    print(f"\n{traffic.total} predictions over {REPLICAS} replicas, one killed: {kinds}")
    assert survivors_ready == [200, 200]
    assert set(kinds) <= {"served", "dropped", "locked", "writer lost"}
    assert kinds["served"] >= traffic.total // 3
    assert any(o.status == 200 for o in traffic.outcomes if "killed" in o.marks_before_send)
    served = traffic.served()
    recorded = recorded_predictions(database_url)
    assert {i: recorded.get(i) for i in served} == served


def test_a_model_loaded_by_a_one_off_task_is_served_by_every_replica(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with replicas(2, tmp_path, database_url) as servers:
        task = load_task(model_files(2), database_url, tmp_path / "task")
        assert task.returncode == 0, task.stdout + task.stderr
        version = json.loads(task.stdout.splitlines()[-1])["version"]

        for server in servers:
            wait_until(lambda s=server: get(s, "/model/").json().get("version") == version, 2.0)


def test_a_one_off_task_refuses_a_model_over_max_model_bytes(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    task = load_task(model_files(0), database_url, tmp_path / "task", MAX_MODEL_BYTES="1000")

    assert task.returncode != 0
    assert "larger than MAX_MODEL_BYTES (1000 bytes)" in task.stderr
    assert not (tmp_path / "task" / "models").exists()


def load_task(model: Path, database_url: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess:
    """Runs `flight-delay load MODEL` as a one-off task would: its own data folder, the shared database."""
    environment = {**os.environ, "DATABASE_URL": database_url, "DATA_DIR": str(data_dir), **env}
    command = [str(Path(sys.executable).parent / "flight-delay"), "load", str(model)]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120, check=False)
