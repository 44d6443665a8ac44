"""Hostile bodies against a real server: refused before they cost, the worker's memory bounded.

Clients send `Expect: 100-continue`, as curl does for a large body: the server tells them to send it
only once it took the request (its token, its room in the worker's body budget); every other
answer comes before a byte of the body.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.factories import minimal_flight
from tests.raw_http import read_answers
from tests.servers import RunningServer, serve_with_model
from tests.test_overload import CONTINUE, receive_exactly

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
CLIENTS = 40
# Far above what a health check takes (bench/hostile.py measures it), far below a hung worker's silence.
NEVER_A_HANG_S = 10.0


def post_expecting(
    server: RunningServer, path: str, body: bytes, **headers: str
) -> tuple[int, dict[str, str]]:
    """POSTs with `Expect: 100-continue`; the body goes only if the server says 100. The final answer."""
    host, port = server.url.removeprefix("http://").split(":")
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n{extra}Connection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=120) as connection:
        connection.sendall(head.encode())
        interim = receive_exactly(connection, len(CONTINUE))
        if interim == CONTINUE:
            connection.sendall(body)
            interim = b""
        [(status, answer_headers, _)] = read_answers_after(connection, interim)
    return status, answer_headers


def read_answers_after(connection: socket.socket, first: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers of a connection whose first bytes were already read."""

    class Prefixed:
        """The connection, its first bytes given back first."""

        def __init__(self) -> None:
            self.pending = first

        def recv(self, size: int) -> bytes:
            if self.pending:
                data, self.pending = self.pending, b""
                return data
            return connection.recv(size)

    return read_answers(Prefixed())  # type: ignore[arg-type]


def worker_rss_mib(pid: int) -> float:
    """A process's resident memory, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak:
    """Samples a process's resident memory until stopped; keeps the highest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.highest = worker_rss_mib(pid)
        self.running = True
        self.thread = threading.Thread(target=self._sample)
        self.thread.start()

    def _sample(self) -> None:
        while self.running:
            self.highest = max(self.highest, worker_rss_mib(self.pid))
            time.sleep(0.02)

    def stop(self) -> float:
        """Stops sampling; the highest resident memory seen, MiB."""
        self.running = False
        self.thread.join(10)
        return self.highest


def test_an_admin_route_without_its_token_never_asks_for_the_body(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    body = json.dumps({"actuals": [{}] * 100_000}).encode()
    with serve_with_model(tmp_path / "data", database_url, model_files(0), workers=1) as server:
        status, _ = post_expecting(server, "/model/actuals/", body)
        wrong, _ = post_expecting(
            server, "/model/actuals/", body, Authorization="Bearer not-the-token-at-all"
        )

    assert (status, wrong) == (401, 401)


def test_forty_clients_of_large_bodies_leave_the_worker_bounded_and_answering(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    # 45,000 flights (~11 MB): under MAX_REQUEST_BYTES and the count of JSON values parsed at most,
    # so that each taken body is parsed whole before its batch is refused for its size.
    body = json.dumps({"flights": [minimal_flight(dep_delay=float(i % 90)) for i in range(45_000)]}).encode()
    with serve_with_model(tmp_path / "data", database_url, model_files(0), workers=1) as server:
        [worker] = server.worker_pids()
        before, peak = worker_rss_mib(worker), Peak(worker)
        answers: list[tuple[int, dict[str, str]]] = []
        clients = [
            threading.Thread(target=lambda: answers.append(post_expecting(server, "/model/predict/", body)))
            for _ in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        started = time.monotonic()
        health = requests.get(f"{server.url}/health/live", timeout=30)
        health_s = time.monotonic() - started
        for client in clients:
            client.join(300)
        grown = peak.stop() - before

    statuses = sorted({status for status, _ in answers})
    assert len(answers) == CLIENTS
    assert set(statuses) <= {422, 503}, statuses
    assert all("retry-after" in headers for status, headers in answers if status == 503)
    assert health.status_code == 200
    assert health_s < NEVER_A_HANG_S  # how long it takes on a quiet machine: bench/hostile.py
    assert grown < 512, f"the worker grew by {grown:.0f} MiB"
