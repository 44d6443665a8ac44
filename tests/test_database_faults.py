"""A database that cannot be written (read-only file, full disk, lock held): 503s, then recovery.

Each fault is real for the server: the kernel or SQLite refuses its writes; src/ knows nothing of these tests.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url

from flight_delay.config import load_config
from flight_delay.server import prepare
from tests.factories import minimal_flight
from tests.servers import RunningServer, serve, upload_model
from tests.traffic import recorded_predictions

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_only]

REQUESTS = 6  # per phase; each on a new connection, so the server's workers share them
PR_CAPBSET_DROP = 24  # prctl(2)
# The capabilities that let root read and write a file whatever its mode says (capabilities(7)).
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER = 1, 2, 3
# How a prediction is refused. A worker that knows the active model fails its history write; one that
# served nothing yet must first ask the database which model is active, and that read fails instead (which
# worker takes a request is the kernel's choice).
REFUSALS = {
    "history_unavailable": "so it is not served: {reason}.",
    "database_unavailable": "The database is unavailable: {reason}.",
}


def obey_file_modes() -> None:
    """Runs in the server's process before exec: as root, gives up the power to ignore file modes."""
    if os.geteuid() != 0:
        return  # an ordinary user is bound by file modes already
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) needs CAP_SETPCAP")


def predict(url: str, request_id: str) -> requests.Response:
    """Asks for one prediction on a fresh connection (so that any worker may take it)."""
    return requests.post(
        f"{url}/model/predict/",
        json=minimal_flight(),
        headers={"X-Request-ID": request_id, "Connection": "close"},
        timeout=30,
    )


def expect_served(url: str, prefix: str) -> list[str]:
    """Checks that predictions are served and health is ok; returns the request ids served."""
    served = []
    for number in range(REQUESTS):
        response = predict(url, f"{prefix}-{number}")
        assert response.status_code == 200, response.text
        served.append(response.json()["request_id"])
    health = requests.get(f"{url}/health/", timeout=30)
    assert health.status_code == 200, health.text
    assert health.json()["status"] == "ok"
    assert health.json()["database"] == {"ok": True, "backend": "sqlite"}
    return served


def expect_refused(url: str, prefix: str, reason: str) -> list[str]:
    """Checks that predictions are refused with 503 and health reports the database down, for `reason`."""
    refused = []
    for number in range(REQUESTS):
        response = predict(url, f"{prefix}-{number}")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["message"].endswith(REFUSALS[body["code"]].format(reason=reason)), body
        assert "predictions" not in body
        refused.append(body["request_id"])
    health = requests.get(f"{url}/health/", timeout=30)
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "unavailable"
    assert health.json()["database"] == {"ok": False, "backend": "sqlite", "reason": reason}
    return refused


def recorded_request_ids(database_url: str) -> list[str]:
    """The request ids in the history, in the order recorded."""
    rows = recorded_predictions(database_url)
    return [rows[i].request_id for i in sorted(rows)]


def database_files(database_url: str) -> list[Path]:
    """The SQLite file and its -wal and -shm companions, those that exist."""
    path = Path(make_url(database_url).database)
    return [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]


def test_a_read_only_database_file(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    data_dir = tmp_path / "data"
    # The operator's model is active (as after `flight-delay load`), then the file turns read-only.
    environ = {"DATA_DIR": str(data_dir), "DATABASE_URL": database_url}
    prepare(load_config(environ, DEFAULT_MODEL_PATH=model_files(0)))
    for path in database_files(database_url):
        path.chmod(0o444)

    with serve(data_dir, database_url, before_exec=obey_file_modes) as server:
        refused = expect_refused(server.url, "read-only", "attempt to write a readonly database")
        # Lifting the fault covers every file: SQLite gave the -shm it created the database's mode.
        for path in database_files(database_url):
            path.chmod(0o644)
        served = expect_served(server.url, "writable-again")

    assert recorded_request_ids(database_url) == served
    assert not set(refused) & set(served)


@contextmanager
def file_size_limit(server: RunningServer, limit: int) -> Iterator[None]:
    """Lets the server's processes write no file beyond `limit` bytes (a full disk), then lifts it."""
    pids = {server.process.pid, *server.worker_pids(), *server.writer_pids()}
    before = {pid: resource.prlimit(pid, resource.RLIMIT_FSIZE) for pid in pids}
    for pid, (_, hard) in before.items():
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        for pid, limits in before.items():
            resource.prlimit(pid, resource.RLIMIT_FSIZE, limits)


def test_a_full_disk(tmp_path: Path, database_url: str, model_files: Callable[[int], Path]) -> None:
    with serve(tmp_path / "data", database_url) as server:
        upload_model(server.url, model_files(0))
        before = expect_served(server.url, "before")
        # CPython ignores SIGXFSZ, so the server's writes fail with EFBIG, which SQLite reports as I/O.
        with file_size_limit(server, 0):
            refused = expect_refused(server.url, "disk-full", "disk I/O error")
        after = expect_served(server.url, "space-again")

    assert recorded_request_ids(database_url) == before + after
    assert not set(refused) & set(before + after)


@contextmanager
def exclusive_lock(database_url: str) -> Iterator[None]:
    """Holds SQLite's write lock on the database until the block ends."""
    connection = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    try:
        connection.execute("BEGIN EXCLUSIVE")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def test_a_database_locked_past_the_busy_timeout(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with serve(tmp_path / "data", database_url, SQLITE_BUSY_TIMEOUT_MS="200") as server:
        upload_model(server.url, model_files(0))
        before = expect_served(server.url, "before")
        with exclusive_lock(database_url):
            refused = expect_refused(server.url, "locked", "database is locked")
        after = expect_served(server.url, "unlocked")

    assert recorded_request_ids(database_url) == before + after
    assert not set(refused) & set(before + after)
