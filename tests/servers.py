"""Starts `flight-delay serve` as a user would, on a free loopback port, and stops it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from tests.factories import ADMIN_HEADERS, ADMIN_TOKEN

HOST_WRITER_MODULE = "flight_delay.history.host_writer"
SANDBOX_MODULE = "flight_delay.serving.sandbox_server"
ROLLUP_JOB_MODULE = "flight_delay.monitoring.rollup_job"


def free_port() -> int:
    """Asks the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    """A running gunicorn: its base URL and the file its logs go to."""

    url: str
    log_path: Path
    process: subprocess.Popen

    def log(self) -> str:
        """Returns everything the server logged so far."""
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> set[int]:
        """Lists the gunicorn workers: the master's children (of the process started) but its helpers."""
        return child_pids(self.process.pid) - self.writer_pids() - self.sandbox_pids() - self.rollup_pids()

    def writer_pids(self) -> set[int]:
        """Lists the host's history writer: the master's child running host_writer."""
        return {pid for pid in child_pids(self.process.pid) if HOST_WRITER_MODULE in command_line(pid)}

    def sandbox_pids(self) -> set[int]:
        """Lists the model sandbox process: the master's child running sandbox_server."""
        return {pid for pid in child_pids(self.process.pid) if SANDBOX_MODULE in command_line(pid)}

    def rollup_pids(self) -> set[int]:
        """Lists monitoring's roll-up job: the master's child running rollup_job."""
        return {pid for pid in child_pids(self.process.pid) if ROLLUP_JOB_MODULE in command_line(pid)}


def command_line(pid: int) -> str:
    """A process's command line, arguments joined by spaces ("" once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def child_pids(parent: int) -> set[int]:
    """Finds the processes whose parent is `parent`, from /proc (Linux)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[1]) == parent:
            children.add(int(stat.parent.name))
    return children


def wait_healthy(url: str, process: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    """Polls /health/ until it answers, failing early if the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if requests.get(f"{url}/health/", timeout=2).status_code in (200, 503):
                return
        except (requests.ConnectionError, requests.Timeout):
            pass  # not listening yet, or its workers are still booting on a busy machine
        time.sleep(0.2)
    raise TimeoutError(f"server not healthy in {timeout}s:\n{log_path.read_text()}")


@contextmanager
def serve(
    data_dir: Path,
    database_url: str,
    workers: int = 2,
    before_exec: Callable[[], None] | None = None,
    **env: str,
) -> Iterator[RunningServer]:
    """Runs `flight-delay serve` over data_dir and the given database on a free port until the block ends.

    before_exec runs in the child just before the server starts (e.g. to drop privileges).
    """
    server = start(data_dir, database_url, workers, before_exec, **env)
    try:
        wait_started(server, workers)
        yield server
    finally:
        stop(server)


@contextmanager
def replicas(
    count: int, root: Path, database_url: str, workers: int = 1, **env: str
) -> Iterator[list[RunningServer]]:
    """Starts `count` servers at once over one database, each with a data folder (model cache) of its own."""
    servers = []
    try:
        for number in range(count):
            servers.append(start(root / f"replica-{number}", database_url, workers, **env))
        for server in servers:
            wait_started(server, workers)
        yield servers
    finally:
        for server in servers:
            stop(server)


def start(
    data_dir: Path,
    database_url: str,
    workers: int = 2,
    before_exec: Callable[[], None] | None = None,
    **env: str,
) -> RunningServer:
    """Starts `flight-delay serve` on a free port, in a session of its own (killpg ends it all)."""
    port = free_port()
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "ML_API_HOST": "127.0.0.1",
        "ML_API_PORT": str(port),
        "ML_API_WORKERS": str(workers),
        "ML_API_ADMIN_TOKEN": ADMIN_TOKEN,
        "ML_API_PUBLIC_READ": "true",  # as conftest.app_config: tests/test_access*.py set it back
        # The backend under test (the `database_url` fixture), never one the environment names.
        "DATABASE_URL": database_url,
        **env,
    }
    command = [str(Path(sys.executable).parent / "flight-delay"), "serve"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=before_exec,
            start_new_session=True,
        )
    return RunningServer(url=f"http://127.0.0.1:{port}", log_path=log_path, process=process)


def wait_started(server: RunningServer, workers: int) -> None:
    """Waits until the server answers /health/ and all its workers are forked."""
    wait_healthy(server.url, server.process, server.log_path)
    # One worker answering is not all forked: gunicorn spawns them one after another.
    deadline = time.monotonic() + 60
    while len(server.worker_pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.05)


def stop(server: RunningServer) -> None:
    """Stops a server with SIGTERM, SIGKILL to its whole session after 30 s or if its master is gone."""
    if server.process.poll() is not None:
        with contextlib.suppress(ProcessLookupError):  # orphaned workers of a killed master
            os.killpg(server.process.pid, signal.SIGKILL)
        return
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


def upload_model(url: str, path: Path) -> str:
    """Loads a model file through POST /model/load/ (multipart, as an operator) and returns its version."""
    with path.open("rb") as handle:
        response = requests.post(
            f"{url}/model/load/", files={"file": handle}, headers=ADMIN_HEADERS, timeout=60
        )
    assert response.status_code == 201, response.text
    return response.json()["version"]


@contextmanager
def serve_with_model(
    data_dir: Path, database_url: str, model_path: Path, workers: int = 2, **env: str
) -> Iterator[RunningServer]:
    """Runs a server as `serve` does, with the model at model_path loaded over HTTP."""
    with serve(data_dir, database_url, workers=workers, **env) as server:
        upload_model(server.url, model_path)
        yield server
