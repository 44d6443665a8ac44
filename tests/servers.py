"""Starts `flight-delay serve` as a user would, on a free loopback port, and stops it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests


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
            pass  # not listening yet, or listening while the workers still boot (slow under load)
        time.sleep(0.2)
    raise TimeoutError(f"server not healthy in {timeout}s:\n{log_path.read_text()}")


@contextmanager
def serve(data_dir: Path, workers: int = 2, **env: str) -> Iterator[RunningServer]:
    """Runs `flight-delay serve` over data_dir on a free port until the block ends."""
    port = free_port()
    log_path = data_dir / f"server-{port}.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    environment = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "ML_API_HOST": "127.0.0.1",
        "ML_API_PORT": str(port),
        "ML_API_WORKERS": str(workers),
        **env,
    }
    if "DATABASE_URL" not in env:
        environment.pop("DATABASE_URL", None)  # the server's SQLite file lives in data_dir
    command = [str(Path(sys.executable).parent / "flight-delay"), "serve"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log_path)
        yield RunningServer(url=url, log_path=log_path, process=process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
