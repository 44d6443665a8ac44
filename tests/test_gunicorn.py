"""`flight-delay serve` under gunicorn: several workers, one model, a history that matches."""

from __future__ import annotations

import asyncio
import gc
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from flight_delay.config import load_config
from flight_delay.server import GunicornServer
from flight_delay.transport.middleware import AccessLog, ObservedResponse, access_line
from tests.factories import minimal_flight
from tests.servers import serve, upload_model

pytestmark = pytest.mark.slow


def test_a_model_loaded_through_one_worker_is_served_by_all(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with serve(tmp_path / "data", database_url, workers=2, MODEL_REFRESH_MS="100") as server:
        version_a = upload_model(server.url, model_files(0))
        version_b = upload_model(server.url, model_files(1))
        assert version_a != version_b
        time.sleep(0.5)  # the other worker asks which model is active at least every MODEL_REFRESH_MS

        served = []
        for i in range(50):
            response = requests.post(
                f"{server.url}/model/predict/",
                json=minimal_flight(dep_delay=float(i)),
                headers={"X-Request-ID": f"after-b-{i}", "Connection": "close"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            served.append(response.json())

        assert {body["model_version"] for body in served} == {version_b}
        history = requests.get(f"{server.url}/model/history/?page_size=50", timeout=30).json()
        assert history["total"] == 50
        assert [item["request_id"] for item in history["items"]] == [
            f"after-b-{i}" for i in reversed(range(50))
        ]
        assert {item["model_version"] for item in history["items"]} == {version_b}
        by_id = {item["id"]: item for item in history["items"]}
        for body in served:
            [prediction] = body["predictions"]
            assert by_id[prediction["history_id"]]["arr_delay"] == prediction["arr_delay"]

        pids = set(
            re.findall(
                r'"POST /model/predict/ HTTP/1.1" 200 .* pid=<(\d+)> request_id=after-b-',
                server.log(),
            )
        )
        assert len(pids) == 2, "both workers must have served predictions after the load"


def test_restart_keeps_the_model_and_history(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with serve(tmp_path / "data", database_url, workers=2) as server:
        version = upload_model(server.url, model_files(1))
        requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=30).raise_for_status()

    with serve(tmp_path / "data", database_url, workers=2) as server:
        health = requests.get(f"{server.url}/health/", timeout=30).json()
        history = requests.get(f"{server.url}/model/history/", timeout=30).json()

    assert health["status"] == "ok"
    assert health["model"]["version"] == version
    assert history["total"] == 1


def test_start_activates_the_default_model_when_none_is_active(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    default = tmp_path / "default.pkl"
    default.write_bytes(model_files(0).read_bytes())

    with serve(tmp_path / "data", database_url, workers=1, DEFAULT_MODEL_PATH=str(default)) as server:
        health = requests.get(f"{server.url}/health/", timeout=30).json()

    assert health["status"] == "ok"
    assert health["model"]["loaded"] is True


def test_operator_load_command_switches_the_running_server(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    import os
    import subprocess
    import sys

    with serve(tmp_path / "data", database_url, workers=2) as server:
        version_a = upload_model(server.url, model_files(0))
        command = [str(Path(sys.executable).parent / "flight-delay"), "load", str(model_files(1))]
        env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url}
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
        version_b = done.stdout.strip().splitlines()[-1]
        body = requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=30).json()

    assert version_a not in version_b
    assert body["model_version"] in version_b


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected"),
    [
        (200, b"x" * 187, [(b"content-type", b"application/json"), (b"X-Request-ID", b'abc"1')], "200 187"),
        (503, None, [(b"x-request-id", b"lower")], "503 -"),
        (404, b"", [], "404 0"),
        (500, None, [], "500 -"),
    ],
)
def test_the_access_log_line_names_the_request_its_worker_and_its_id(
    status: int, body: bytes | None, headers: list[tuple[bytes, bytes]], expected: str
) -> None:
    """The line gunicorn's access log held under the threaded worker, now written by the ASGI app."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/model/predict/",
        "raw_path": b"/model/predict/",
        "query_string": b"a=1",
        "http_version": "1.1",
        "client": ("127.0.0.1", 50000),
    }
    response = ObservedResponse(lambda message: asyncio.sleep(0))
    asyncio.run(response.send({"type": "http.response.start", "status": status, "headers": headers}))
    if body is not None:
        asyncio.run(response.send({"type": "http.response.body", "body": body}))
    request_id = {k.lower(): v for k, v in headers}.get(b"x-request-id", b"-").decode()

    line = access_line(scope, response, elapsed_s=1.2345)

    assert line == (
        f'127.0.0.1 "POST /model/predict/?a=1 HTTP/1.1" {expected} 1234ms pid=<{os.getpid()}> '
        f"request_id={request_id}"
    )


def test_a_worker_freezes_the_objects_its_app_starts_with(
    app_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's app-building step ends with gc.freeze(): full collections skip what lives on."""
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    config = load_config(**app_config)

    app = GunicornServer(config).load()

    assert isinstance(app, AccessLog)  # the outermost middleware
    assert frozen == [True]


def test_each_turn_of_the_arbiter_keeps_the_history_writer_running() -> None:
    """The arbiter calls arbiter_turn on each turn of its loop (see compat/gunicorn_internals.py)."""

    class Writer:
        turns = 0

        def ensure_running(self) -> None:
            self.turns += 1

    writer = Writer()
    GunicornServer(load_config({}), writer).arbiter_turn()  # type: ignore[arg-type]
    assert writer.turns == 1
    GunicornServer(load_config({})).arbiter_turn()  # SQLite writes in the workers, or a database server
