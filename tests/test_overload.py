"""Slow clients and overload, against real servers on 127.0.0.1: bodies read on the event loop under a
deadline (ML_API_BODY_TIMEOUT_S, 408), requests in flight capped per worker (ML_API_MAX_CONCURRENT, 503).

A stalled client here sends a predict head, half of its body, and stops. Most send `Expect:
100-continue` and wait for the interim 100 answer first: the server sends it once it reads the
body, so the request is known to be in flight. Bounds on time are generous: the machine is shared.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from flight_delay.config import load_config
from flight_delay.transport.http import LOOP_BODY_MAX_BYTES
from tests.contracts import assert_error_shape, assert_security_headers
from tests.factories import minimal_flight
from tests.raw_http import read_answers
from tests.servers import RunningServer, serve_with_model

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Well within any stall below (a stalled client waits until the test resumes it, or 30 s).
PROMPT_S = 5.0
BATCH_FLIGHTS = 500
STALLED = 6  # more than the 2 threads of the server they stall


def batch(flights: int) -> bytes:
    """A valid predict body: one flight, or a batch of `flights`."""
    if flights == 1:
        return json.dumps(minimal_flight()).encode()
    return json.dumps({"flights": [minimal_flight(dep_delay=float(i % 90)) for i in range(flights)]}).encode()


def framed(part: bytes, chunked: bool, last: bool = False) -> bytes:
    """Body bytes as sent on the wire: as they are, or as one chunk (and the last chunk, if `last`)."""
    if not chunked:
        return part
    return b"%x\r\n%s\r\n" % (len(part), part) + (b"0\r\n\r\n" if last else b"")


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    """Reads `size` bytes, or less if the server closes first."""
    data = b""
    while len(data) < size and (chunk := connection.recv(size - len(data))):
        data += chunk
    return data


def stall(
    server: RunningServer,
    body: bytes,
    chunked: bool = False,
    request_id: str = "stalled",
    expect: bool = True,
) -> socket.socket:
    """Starts a predict request (waiting until the server reads its body if `expect`), sends half the body."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    expectation = "Expect: 100-continue\r\n" if expect else ""
    head = (
        f"POST /model/predict/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}\r\n"
        f"{expectation}X-Request-ID: {request_id}\r\nConnection: close\r\n\r\n"
    )
    host, port = server.url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=30)
    connection.sendall(head.encode())
    if expect and (interim := receive_exactly(connection, len(CONTINUE))) != CONTINUE:
        connection.close()
        raise NotRead(interim)
    connection.sendall(framed(body[: len(body) // 2], chunked))
    return connection


class NotRead(AssertionError):
    """The server answered a stalling request (with what it began with) instead of reading its body."""


def stall_once_admitted(server: RunningServer, body: bytes, within_s: float = 10) -> socket.socket:
    """Stalls a request as `stall` does, retried while the worker is full.

    A request is in flight until Flask's teardown ends, which may be just after its client has the
    answer: right after earlier requests, a worker with a small cap may still count them.
    """
    deadline = time.monotonic() + within_s
    while True:
        try:
            return stall(server, body)
        except NotRead as refused:
            if not refused.args[0].startswith(b"HTTP/1.1 503 ") or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def finish(
    connection: socket.socket, body: bytes, chunked: bool = False
) -> tuple[int, dict[str, str], bytes]:
    """Sends the rest of a stalled body; returns the one answer."""
    with connection:
        connection.sendall(framed(body[len(body) // 2 :], chunked, last=True))
        [answer] = read_answers(connection)
    return answer


def answered_promptly(method: str, url: str, **kwargs: object) -> requests.Response:
    """Sends a request with `requests`, asserting the answer came within PROMPT_S."""
    started = time.monotonic()
    response = requests.request(method, url, timeout=30, **kwargs)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert elapsed < PROMPT_S, f"{method} {url} took {elapsed:.1f} s"
    return response


def history_total(server: RunningServer) -> int:
    """How many predictions the history holds."""
    return requests.get(f"{server.url}/model/history/", timeout=30).json()["total"]


@pytest.mark.parametrize("name", ["ML_API_BODY_TIMEOUT_S", "ML_API_MAX_CONCURRENT"])
def test_the_settings_must_be_positive(name: str) -> None:
    assert load_config({name: "1"})[name] == 1
    with pytest.raises(ValueError, match=name):
        load_config({name: "0"})


def test_the_settings_default_to_30_s_and_64_requests() -> None:
    config = load_config({})

    assert (config["ML_API_BODY_TIMEOUT_S"], config["ML_API_MAX_CONCURRENT"]) == (30, 64)


@pytest.mark.slow
def test_clients_stalling_mid_body_hold_no_thread(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    body = batch(BATCH_FLIGHTS)
    assert len(body) > LOOP_BODY_MAX_BYTES  # a batch: Flask's threads answer it
    chunked = [i % 2 == 1 for i in range(STALLED)]
    env = {"ML_API_THREADS": "2"}
    with serve_with_model(tmp_path / "data", database_url, model_files(0), workers=1, **env) as server:
        with ExitStack() as stack:
            # The first half as a plain slow client would; the last ones' 100s say all are being read.
            stalled = [
                stack.enter_context(stall(server, body, chunk, expect=i >= STALLED // 2))
                for i, chunk in enumerate(chunked)
            ]
            for path in ("/health/", "/model/", "/model/history/"):
                assert answered_promptly("GET", server.url + path).status_code == 200, path
            single = answered_promptly("POST", f"{server.url}/model/predict/", json=minimal_flight())
            assert single.status_code == 200, single.text
            answers = [
                finish(connection, body, chunk) for connection, chunk in zip(stalled, chunked, strict=True)
            ]
        total = history_total(server)

    for status, _, answer in answers:  # resumed, each is served whole
        assert status == 200, answer[:300]
        assert len(json.loads(answer)["predictions"]) == BATCH_FLIGHTS
    assert total == STALLED * BATCH_FLIGHTS + 1


@pytest.fixture(scope="module")
def impatient_server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """A real server whose bodies must arrive within 1 s."""
    data_dir = tmp_path_factory.mktemp("impatient") / "data"
    env = {"ML_API_BODY_TIMEOUT_S": "1"}
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=1, **env) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flights", "chunked"),
    [(1, False), (BATCH_FLIGHTS, False), (BATCH_FLIGHTS, True)],
    ids=["one flight", "a batch", "a chunked batch"],
)
def test_a_body_not_whole_within_the_deadline_is_a_408(
    impatient_server: RunningServer, flights: int, chunked: bool
) -> None:
    started = time.monotonic()
    with stall(impatient_server, batch(flights), chunked, request_id="late-1") as connection:
        [(status, headers, answer)] = read_answers(connection)

    assert time.monotonic() - started < 15, "answered long after the 1 s deadline"
    assert status == 408
    error = json.loads(answer)
    assert_error_shape(408, error)
    assert (error["code"], error["request_id"]) == ("request_timeout", "late-1")
    assert error["message"] == "The request body did not arrive within 1 s."
    assert (headers["x-request-id"], headers["connection"]) == ("late-1", "close")
    assert_security_headers(headers)
    assert history_total(impatient_server) == 0


def assert_overloaded(response: requests.Response) -> None:
    """Checks a 503 `overloaded` in the error shape, with Retry-After and the security headers."""
    assert response.status_code == 503, response.text[:300]
    error = response.json()
    assert_error_shape(503, error)
    assert error["code"] == "overloaded"
    assert response.headers["Retry-After"] == "1"
    assert_security_headers(response.headers)


def eventually_ok(url: str, within_s: float = 10) -> requests.Response:
    """GETs url until it answers 200 or time is up (see stall_once_admitted); returns the last answer."""
    deadline = time.monotonic() + within_s
    while (response := requests.get(url, timeout=30)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    return response


@pytest.mark.slow
def test_beyond_the_cap_requests_get_a_503_and_health_checks_are_still_answered(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    body = batch(BATCH_FLIGHTS)
    env = {"ML_API_MAX_CONCURRENT": "2"}
    server_running = serve_with_model(tmp_path / "data", database_url, model_files(0), workers=1, **env)
    with server_running as server, ExitStack() as stack:
        first, _second = [stack.enter_context(stall_once_admitted(server, body)) for _ in range(2)]
        assert_overloaded(answered_promptly("GET", f"{server.url}/model/"))
        assert_overloaded(answered_promptly("POST", f"{server.url}/model/predict/", json=minimal_flight()))
        for path in ("/health/", "/health", "/health/live", "/health/ready"):
            assert answered_promptly("GET", server.url + path).status_code == 200, path
        status, _, answer = finish(first, body)
        assert status == 200, answer[:300]
        history = eventually_ok(f"{server.url}/model/history/")  # a place is free again
        assert history.status_code == 200, history.text[:300]
        assert history.json()["total"] == BATCH_FLIGHTS  # the refused prediction was not recorded
