"""Figures for the service under hostile bodies and a hung database: `python -m bench.hostile`.

1. Forty clients each send an 11 MB predict body (45,000 flights: parsed whole, then refused for the
   batch's size) to one worker, with `Expect: 100-continue`: the worker's resident memory growth,
   GET /health/live's latency while they do (sampled every 50 ms), and the answers (503 `overloaded`
   before a byte is read, once the worker's body budget is full).
2. With the history on a throwaway PostgreSQL server stopped with SIGSTOP for 20 s under a steady
   load: the slowest answer while it is stopped, how long /health/ takes to say `unavailable`, and
   how long after SIGCONT predictions succeed again.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench import payloads, postgres, procs

ROOT = Path(__file__).resolve().parents[1]
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
FLIGHT = payloads.FLIGHT


def post_expecting(url: str, body: bytes) -> int:
    """POSTs a predict body with `Expect: 100-continue` (sent only on 100); the answer's status."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        "POST /model/predict/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=300) as connection:
        connection.sendall(head.encode())
        first = connection.recv(len(CONTINUE))
        if first == CONTINUE:
            connection.sendall(body)
            first = connection.recv(64)
        return int(first.split()[1])


def rss_mib(pid: int) -> float:
    """A process's resident memory, MiB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def sampled(action: Any, sample: Any, every_s: float = 0.05) -> tuple[Any, list[Any]]:
    """Runs `action`, calling `sample` every `every_s` in a thread meanwhile; its result, the samples."""
    samples: list[Any] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            samples.append(sample())
            time.sleep(every_s)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        return action(), samples
    finally:
        done.set()
        thread.join(60)


def timed_get(url: str) -> tuple[float, int]:
    """How long a GET takes, and its status."""
    started = time.monotonic()
    status = requests.get(url, timeout=60).status_code
    return time.monotonic() - started, status


def worker_of(server: procs.Server) -> int:
    """The one worker of a server started with ML_API_WORKERS=1: the master's child that is not the writer."""
    children = [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if stat.read_text().rsplit(")", 1)[1].split()[1] == str(server.process.pid)
    ]
    return next(pid for pid in children if "host_writer" not in Path(f"/proc/{pid}/cmdline").read_text())


def hostile_bodies(work: Path, model: Path) -> dict[str, Any]:
    """Forty 11 MB bodies at once to one worker: its memory, health's latency, the answers."""
    body = json.dumps({"flights": [FLIGHT] * 45_000}).encode()
    os.environ["ML_API_WORKERS"] = "1"
    try:
        with procs.our_service(Path(sys.executable).parent, work / "hostile", model, ROOT) as server:
            worker = worker_of(server)
            before = rss_mib(worker)

            def forty() -> list[int]:
                statuses: list[int] = []
                clients = [
                    threading.Thread(target=lambda: statuses.append(post_expecting(server.url, body)))
                    for _ in range(40)
                ]
                for client in clients:
                    client.start()
                for client in clients:
                    client.join(600)
                return statuses

            statuses, samples = sampled(
                forty, lambda: (rss_mib(worker), timed_get(f"{server.url}/health/live")[0])
            )
    finally:
        os.environ.pop("ML_API_WORKERS", None)
    latencies = [latency for _, latency in samples]
    return {
        "rss_before_mib": before,
        "rss_peak_mib": max(rss for rss, _ in samples),
        "health_p50_s": statistics.median(latencies),
        "health_max_s": max(latencies),
        "answers": {str(s): statuses.count(s) for s in sorted(set(statuses))},
    }


def predicting(url: str, answers: list[tuple[float, float, int]], running: threading.Event) -> None:
    """Predicts in a loop while `running`: (start, seconds taken, status) of each answer."""
    while running.is_set():
        started = time.monotonic()
        try:
            status = requests.post(f"{url}/model/predict/", json=FLIGHT, timeout=60).status_code
        except requests.RequestException:
            status = 0
        answers.append((started, time.monotonic() - started, status))


def hung_database(work: Path, model: Path, stopped_s: float = 20.0) -> dict[str, Any]:
    """PostgreSQL stopped for `stopped_s` under load: answers' latency, health, recovery."""
    with (
        postgres.server() as url,
        procs.our_service(Path(sys.executable).parent, work / "hung", model, ROOT, url) as server,
    ):
        answers: list[tuple[float, float, int]] = []
        running = threading.Event()
        running.set()
        clients = [threading.Thread(target=predicting, args=(server.url, answers, running)) for _ in range(4)]
        for client in clients:
            client.start()
        time.sleep(2)
        with postgres.stopped(url):
            start = time.monotonic()
            time.sleep(2)
            health_s, health_status = timed_get(f"{server.url}/health/")
            time.sleep(max(0.0, stopped_s - (time.monotonic() - start)))
        resumed = time.monotonic()
        time.sleep(10)
        running.clear()
        for client in clients:
            client.join(120)
    during = [(took, status) for at, took, status in answers if start <= at < resumed]
    after = [at + took - resumed for at, took, status in answers if at >= resumed and status == 200]
    return {
        "stopped_s": stopped_s,
        "answers_while_stopped": len(during),
        "slowest_while_stopped_s": max(took for took, _ in during),
        "statuses_while_stopped": sorted({status for _, status in during}),
        "health_while_stopped": {"seconds": health_s, "status": health_status},
        "first_success_after_resume_s": min(after) if after else None,
    }


def main() -> None:
    """Runs both and prints their figures as JSON."""
    work = Path(tempfile.mkdtemp(prefix="flight-delay-hostile-"))
    model = payloads.train_dummy(Path(sys.executable), ROOT / "src" / "model_dummy.py", work / "model.pkl")
    figures = {"hostile_bodies": hostile_bodies(work, model), "hung_database": hung_database(work, model)}
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
