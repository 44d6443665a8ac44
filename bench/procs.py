"""Starts our service and MLServer on 127.0.0.1, each in its own process group, and always stops them."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

HOST = "127.0.0.1"
STOP_GRACE_SECONDS = 20


def free_port() -> int:
    """Asks the kernel for a free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running server: its base URL, its process (leader of its group) and its log file."""

    name: str
    url: str
    process: subprocess.Popen
    log_path: Path
    admin_token: str | None = None  # ours: what its admin posts carry

    def log_tail(self, lines: int = 40) -> str:
        """Returns the end of the server's log, for error messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def stop_group(process: subprocess.Popen) -> None:
    """Stops a process and everything in its group: SIGTERM, then SIGKILL after a grace period."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_GRACE_SECONDS)
    # Workers (gunicorn's, MLServer's inference pool) may outlive their leader: end the group.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def communicate_or_kill(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Waits for a process's output; past the timeout kills it, reaps it and re-raises the timeout."""
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of a process group."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def process_group(command: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> Iterator[Server]:
    """Runs a command in a new session (its own process group) until the block ends, logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield Server(name=Path(command[0]).name, url="", process=process, log_path=log_path)
    finally:
        stop_group(process)


def bearer(token: str) -> dict[str, str]:
    """The Authorization header of our service's token (production reads need one too: issue 26)."""
    return {"Authorization": f"Bearer {token}"}


def wait_ready(
    server: Server, path: str, timeout: float = 120, headers: dict[str, str] | None = None
) -> None:
    """Polls a URL of the server until it answers 200, failing early if the server exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(server.url + path, headers=headers, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or a worker still loading the model
        time.sleep(0.25)
    raise TimeoutError(f"{server.name} not ready in {timeout:.0f}s:\n{server.log_tail()}")


@contextmanager
def our_service(
    bin_dir: Path,
    data_dir: Path,
    model_path: Path,
    workdir: Path,
    database_url: str | None = None,
    admin_token: str | None = None,
) -> Iterator[Server]:
    """Runs `flight-delay serve` with production settings, its history in database_url or SQLite (FULL)."""
    port = free_port()
    # Production refuses to start without one; a run that changes the traffic split passes its own.
    token = admin_token or secrets.token_hex(32)
    env = {
        **os.environ,
        "FLIGHT_DELAY_ENV": "production",
        "ML_API_ADMIN_TOKEN": token,
        "DATA_DIR": str(data_dir),
        "DEFAULT_MODEL_PATH": str(model_path),
        "ML_API_HOST": HOST,
        "ML_API_PORT": str(port),
        "SQLITE_SYNCHRONOUS": "FULL",
        "LOG_LEVEL": "INFO",
    }
    # The production defaults (2 workers x 4 threads, SQLite under DATA_DIR) are what we measure.
    for name in ("DATABASE_URL", "MODEL_STORE_DIR", "ML_API_WORKERS", "ML_API_THREADS"):
        env.pop(name, None)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    command = [str(bin_dir / "flight-delay"), "serve"]
    with process_group(command, env, data_dir / "server.log", workdir) as server:
        server.name, server.url, server.admin_token = "flight-delay", f"http://{HOST}:{port}", token
        wait_ready(server, "/model/", headers=bearer(token))
        yield server


@contextmanager
def stack_ceiling(bin_dir: Path, log_dir: Path, workdir: Path) -> Iterator[Server]:
    """Runs bench/ceiling_app.py (no Flask, model or database) under gunicorn with our worker class."""
    port = free_port()
    command = [
        str(bin_dir / "gunicorn"),
        f"--bind={HOST}:{port}",
        "--workers=2",
        "--worker-class=flight_delay.server.FlightDelayWorker",
        "--keep-alive=5",
        "--no-control-socket",  # the default socket is one path per user: servers would collide
        "bench.ceiling_app:app",
    ]
    with process_group(command, dict(os.environ), log_dir / "ceiling.log", workdir) as server:
        server.name, server.url = "stack-ceiling", f"http://{HOST}:{port}"
        wait_ready(server, "/health/")
        yield server


def write_mlserver_settings(repo_dir: Path, parallel_workers: int) -> tuple[int, Path]:
    """Writes MLServer's settings.json (every port on 127.0.0.1) and returns the HTTP port and folder."""
    http_port = free_port()
    settings = {
        "host": HOST,
        "http_port": http_port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "parallel_workers": parallel_workers,
        # Its fastest configuration: no access log, no Prometheus middleware or metrics server.
        "debug": False,
        "metrics_endpoint": None,
    }
    (repo_dir / "settings.json").write_text(json.dumps(settings, indent=2))
    return http_port, repo_dir


@contextmanager
def mlserver(
    mlserver_bin: Path, repo_dir: Path, model_name: str, parallel_workers: int, omp_threads: int
) -> Iterator[Server]:
    """Runs `mlserver start` over a model repository folder with the given parallel_workers.

    omp_threads > 0 sets OMP_NUM_THREADS: mlserver-lightgbm calls booster.predict without
    num_threads, so LightGBM uses OpenMP on every core, which costs more than it gives on one row.
    """
    port, folder = write_mlserver_settings(repo_dir, parallel_workers)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER_", "OMP_"))}
    if omp_threads > 0:
        env["OMP_NUM_THREADS"] = str(omp_threads)
    command = [str(mlserver_bin), "start", str(folder)]
    log_path = repo_dir / f"mlserver-pw{parallel_workers}.log"
    with process_group(command, env, log_path, folder) as server:
        server.name, server.url = f"mlserver(parallel_workers={parallel_workers})", f"http://{HOST}:{port}"
        wait_ready(server, f"/v2/models/{model_name}/ready")
        yield server
