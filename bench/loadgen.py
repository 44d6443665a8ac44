"""Drives a server with wrk: one POST body, fixed connections and duration, a JSON summary from Lua."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import communicate_or_kill

# wrk runs this after the test; it prints one JSON line the harness reads (latencies in microseconds).
REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nBENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"mean_us": %f, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""
MARKER = "BENCH_JSON "


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int
    status_errors: int = 0  # answers wrk counted as completed whose status was 4xx or 5xx

    @property
    def rps(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def answered(self) -> int:
        """Completed requests answered with success (wrk counts a 4xx or 5xx as completed and an error)."""
        return self.requests - self.status_errors


def wrk_path() -> str:
    """Finds wrk on PATH (Debian's package `wrk`; `make bench` installs it when missing)."""
    found = shutil.which("wrk")
    if found is None:
        raise FileNotFoundError("wrk is not installed: apt-get install -y wrk")
    return found


def write_post_script(body: str, path: Path) -> Path:
    """Writes a wrk Lua script that POSTs `body` as JSON and reports a JSON summary."""
    # A Lua long bracket holds the JSON as is; JSON never contains "]==]".
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [==[{body}]==]\n" + REPORT_LUA
    )
    path.write_text(script)
    return path


def parse_report(stdout: str) -> LoadResult:
    """Reads the JSON line the Lua `done` hook printed."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise ValueError(f"wrk printed no summary:\n{stdout}")
    data = json.loads(line[len(MARKER) :])
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        errors=errors,
        status_errors=data["status"],
    )


def wrk_command(url: str, script: Path, connections: int, seconds: float, threads: int) -> list[str]:
    """Builds the wrk command line: kept-alive connections, a fixed duration, a 10 s request timeout."""
    return [
        wrk_path(),
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={script}",
        url,
    ]


def start_wrk(url: str, script: Path, connections: int, seconds: float, threads: int = 2) -> subprocess.Popen:
    """Starts wrk in the background; read its result with finish_wrk."""
    command = wrk_command(url, script, connections, seconds, threads)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_wrk(process: subprocess.Popen, timeout: float) -> LoadResult:
    """Waits for a background wrk (killing it past the timeout) and parses its summary."""
    stdout, stderr = communicate_or_kill(process, timeout)
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr}")
    return parse_report(stdout)


def run_wrk(url: str, script: Path, connections: int, seconds: float, threads: int = 2) -> LoadResult:
    """Runs wrk against url for `seconds` and returns what it measured."""
    return finish_wrk(start_wrk(url, script, connections, seconds, threads), timeout=seconds + 60)
