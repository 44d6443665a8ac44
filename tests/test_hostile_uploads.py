"""Issue 27's hostile uploads against a real server: each a 4xx, no worker dies, the model served stays.

One server for the module (2 workers, the backend under test) serving the tiny model of seed 0, and a
thread predicting all along: every prediction made while the uploads come must be answered, by that
model. How long each upload takes and how much a worker grows is measured by bench/uploads.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests import hostile
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.servers import RunningServer, serve_with_model

pytestmark = pytest.mark.slow


class Predicting:
    """A thread predicting one flight every few milliseconds, recording each answer's status and model."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        """Predicts until stopped."""
        with requests.Session() as session:
            while not self.stop.is_set():
                try:
                    answer = session.post(f"{self.url}/model/predict/", json=minimal_flight(), timeout=30)
                    self.answers.append((answer.status_code, answer.json().get("model_version")))
                except requests.RequestException as exc:
                    self.answers.append((0, type(exc).__name__))
                time.sleep(0.005)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """A real server with 2 workers serving the tiny model of seed 0."""
    data_dir = tmp_path_factory.mktemp("hostile-uploads")
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=2) as running:
        yield running


@pytest.fixture(scope="module")
def served_version(server: RunningServer) -> str:
    """The version the server serves before any hostile upload."""
    return requests.get(f"{server.url}/model/", timeout=30).json()["version"]


@pytest.fixture(scope="module")
def predicting(server: RunningServer) -> Iterator[Predicting]:
    """Predictions made all along the module's uploads."""
    running = Predicting(server.url)
    running.thread.start()
    yield running
    running.stop.set()
    running.thread.join(60)


@pytest.fixture(scope="module")
def reproductions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The hostile uploads issue 27 reproduced."""
    return hostile.issue_27_reproductions(tmp_path_factory.mktemp("reproductions"))


def upload(server: RunningServer, data: bytes) -> requests.Response:
    """Uploads bytes as multipart `file` with the admin token."""
    return requests.post(
        f"{server.url}/model/load/", files={"file": ("model", data)}, headers=ADMIN_HEADERS, timeout=120
    )


def still_serving(server: RunningServer, version: str, workers: set[int]) -> None:
    """Asserts no worker died and every worker still predicts with `version`."""
    assert server.worker_pids() == workers, f"a worker died:\n{server.log()[-3000:]}"
    for _ in range(8):  # new connections: the kernel spreads them over both workers
        answer = requests.post(
            f"{server.url}/model/predict/", json=minimal_flight(), headers={"Connection": "close"}, timeout=30
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version


@pytest.mark.parametrize("name", hostile.ISSUE_27)
def test_each_reproduction_is_a_4xx_and_the_service_goes_on(
    server: RunningServer,
    served_version: str,
    predicting: Predicting,
    reproductions: dict[str, bytes],
    name: str,
) -> None:
    workers = server.worker_pids()

    answer = upload(server, reproductions[name])

    body: dict[str, Any] = answer.json()
    assert 400 <= answer.status_code < 500, body
    assert body["status"] == answer.status_code
    assert body["code"] in ("invalid_artifact", "unusable_model", "model_check_failed")
    assert body["message"]
    still_serving(server, served_version, workers)
    assert server.sandbox_pids(), "the model sandbox process is gone"


def test_reading_a_path_says_nothing_of_whether_it_exists(server: RunningServer, tmp_path: Path) -> None:
    present = tmp_path / "present.txt"
    present.write_text("not a model\n")

    answers = [
        upload(server, hostile.booster_reading(path)).json() for path in (present, tmp_path / "absent")
    ]

    assert answers[0]["message"] == answers[1]["message"]
    assert str(tmp_path) not in answers[0]["message"]


def test_predictions_made_during_the_uploads_were_all_answered_by_the_model_served(
    server: RunningServer, served_version: str, predicting: Predicting
) -> None:
    time.sleep(0.2)  # a few more after the last upload

    assert len(predicting.answers) > 10
    assert set(predicting.answers) == {(200, served_version)}


def test_a_sandbox_process_killed_is_started_again_by_the_server(
    server: RunningServer, served_version: str
) -> None:
    [sandbox] = server.sandbox_pids()
    os.kill(sandbox, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while not (server.sandbox_pids() - {sandbox}) and time.monotonic() < deadline:
        time.sleep(0.1)

    answer = upload(server, hostile.null_handle_booster())  # waits for it to listen
    assert answer.status_code == 400, answer.text
    assert server.sandbox_pids() - {sandbox}
    still_serving(server, served_version, server.worker_pids())
