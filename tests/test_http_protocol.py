"""The server's HTTP protocol: request heads bounded in size and time, refusals in order and in our shape.

A real uvicorn server with LimitedHttpToolsProtocol on 127.0.0.1, in a thread, in front of a small
ASGI app; raw sockets, so pipelining and unfinished heads can be sent as such.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from flight_delay.compat import uvicorn_protocol as http_protocol
from flight_delay.compat.uvicorn_protocol import REQUEST_HEAD_MAX_BYTES, LimitedHttpToolsProtocol
from tests.contracts import assert_error_shape, assert_security_headers
from tests.raw_http import answers


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers after a pause with the path and how many body bytes it read."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await asyncio.sleep(0.2)  # still answering when the next pipelined request arrives
    body = json.dumps({"path": scope["path"], "bytes": size}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    """The protocol served by uvicorn on a free loopback port until the test ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(
        echo, host="127.0.0.1", port=port, http=LimitedHttpToolsProtocol, lifespan="off", log_level="warning"
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield "127.0.0.1", port
    running.should_exit = True
    thread.join(30)


def trickled(address: tuple[str, int], start: bytes, rest: bytes) -> bytes:
    """Sends `start`, then `rest` in small pieces until done or refused; returns all that came back."""
    with socket.create_connection(address, timeout=30) as connection:
        connection.sendall(start)
        try:
            for offset in range(0, len(rest), 4096):
                connection.sendall(rest[offset : offset + 4096])
                time.sleep(0.001)
        except OSError:
            pass  # refused while sending: the answer is still there to read
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    return data


def get(path: str, last: bool = False) -> bytes:
    """A GET of `path`; the last one on its connection asks the server to close it."""
    close = "Connection: close\r\n" if last else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{close}\r\n".encode()


def assert_refusal(answer: tuple[int, dict, bytes], status: int) -> None:
    """Checks a refusal: its status, the error shape, the security headers, the closing."""
    code, headers, body = answer
    assert code == status
    assert_error_shape(status, json.loads(body))
    assert_security_headers(headers)
    assert headers["connection"] == "close"


def test_a_refusal_waits_for_the_answer_to_the_request_before_it(server: tuple[str, int]) -> None:
    first, refused = answers(server, get("/first") + b"NOT HTTP AT ALL\r\n\r\n")

    assert first[0] == 200
    assert json.loads(first[2])["path"] == "/first"
    assert_refusal(refused, 400)


def test_pipelined_requests_after_a_large_body_are_not_taken_for_a_large_head(
    server: tuple[str, int],
) -> None:
    body = b"x" * (3 * REQUEST_HEAD_MAX_BYTES)
    upload = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body

    served = answers(server, upload + get("/after") + get("/last", last=True))

    assert [(status, json.loads(body)) for status, _, body in served] == [
        (200, {"path": "/upload", "bytes": len(body)}),
        (200, {"path": "/after", "bytes": 0}),
        (200, {"path": "/last", "bytes": 0}),
    ]


def test_a_head_sent_in_pieces_is_bounded_too(server: tuple[str, int]) -> None:
    data = trickled(server, b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a" * (2 * REQUEST_HEAD_MAX_BYTES))

    assert data.startswith(b"HTTP/1.1 431 ")


def test_a_head_that_does_not_arrive_in_time_is_a_408(
    server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_protocol, "REQUEST_HEAD_TIMEOUT_SECONDS", 0.5)

    [refused] = answers(server, b"GET /slow HTTP/1.1\r\nHost: x\r\n")

    assert_refusal(refused, 408)


def test_a_connection_that_sends_nothing_is_closed(
    server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_protocol, "REQUEST_HEAD_TIMEOUT_SECONDS", 0.5)
    with socket.create_connection(server, timeout=30) as connection:
        started = time.monotonic()
        assert connection.recv(1024) == b""

    assert time.monotonic() - started < 20


def chunked_post(chunks: list[bytes], trailer: bytes = b"") -> bytes:
    """A chunked POST of the given chunks, then the given trailer lines, asking to close after."""
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
    head = b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    return head + body + b"0\r\n" + trailer + b"\r\n"


def test_a_chunked_body_of_large_chunks_is_read_whole(server: tuple[str, int]) -> None:
    chunks = [b"x" * (2 * REQUEST_HEAD_MAX_BYTES), b"y" * 10, b"z" * REQUEST_HEAD_MAX_BYTES]

    [(status, _, body)] = answers(server, chunked_post(chunks, trailer=b"X-Checksum: 1\r\n"))

    assert status == 200
    assert json.loads(body) == {"path": "/chunked", "bytes": sum(map(len, chunks))}


def test_trailers_are_bounded_like_the_head(server: tuple[str, int]) -> None:
    body_and_last_chunk = chunked_post([b"x" * 100])[: -len(b"\r\n")]
    endless = b"X-Trailer: " + b"a" * (2 * REQUEST_HEAD_MAX_BYTES)

    data = trickled(server, body_and_last_chunk, endless)

    assert data.startswith(b"HTTP/1.1 431 ")


def test_a_target_uvicorn_cannot_read_is_refused_after_the_answer_before_it(server: tuple[str, int]) -> None:
    unreadable = b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n"

    first, refused = answers(server, get("/first") + unreadable)

    assert (first[0], json.loads(first[2])["path"]) == (200, "/first")
    assert_refusal(refused, 400)


def test_a_queued_request_whose_body_is_malformed_is_refused_after_the_answer_before_it(
    server: tuple[str, int],
) -> None:
    malformed = b"POST /second HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot a chunk\r\n"

    first, refused = answers(server, get("/first") + malformed)

    assert (first[0], json.loads(first[2])["path"]) == (200, "/first")
    assert_refusal(refused, 400)


@pytest.mark.parametrize(("count", "status"), [(http_protocol.REQUEST_HEADERS_MAX - 2, 200), (200, 431)])
def test_header_fields_are_counted_as_gunicorn_counted_them(
    server: tuple[str, int], count: int, status: int
) -> None:
    headers = b"".join(b"X-Field-%d: %d\r\n" % (i, i) for i in range(count))

    [(code, _, body)] = answers(
        server, b"GET /fields HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n"
    )

    assert code == status
    if status == 431:
        assert "header fields" in json.loads(body)["message"]


def test_blank_lines_do_not_hold_a_connection_open(
    server: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_protocol, "REQUEST_HEAD_TIMEOUT_SECONDS", 0.5)
    started = time.monotonic()
    with socket.create_connection(server, timeout=30) as connection:
        try:
            while time.monotonic() - started < 20:
                connection.sendall(b"\r\n")
                time.sleep(0.1)
        except OSError:
            pass  # closed by the server
        while connection.recv(65536):
            pass

    assert time.monotonic() - started < 20
