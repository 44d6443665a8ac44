"""MAX_REQUEST_BYTES: a body up to the limit is read whole, one byte more is a 413 in the error shape.

Against the real server too, because bodies sent chunked (no Content-Length) are the server's to
frame: Werkzeug alone cuts them at the limit without an error. The server also bounds the request
head (REQUEST_HEAD_MAX_BYTES: 431), and answers what it cannot parse with a 400, in the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from urllib3.filepost import encode_multipart_formdata

from flight_delay.api import create_app
from flight_delay.compat.uvicorn_protocol import REQUEST_HEAD_MAX_BYTES
from tests.conftest import upload
from tests.contracts import assert_error_shape, assert_security_headers
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.raw_http import answers
from tests.servers import RunningServer, serve_with_model

LIMIT = 64 * 1024
JSON = {"Content-Type": "application/json"}


def batch_of_size(size: int) -> bytes:
    """A valid batch of three flights, padded with trailing spaces (still JSON) to exactly `size` bytes."""
    body = json.dumps({"flights": [minimal_flight(dep_delay=float(d)) for d in (0, 30, 90)]}).encode()
    return body.ljust(size)


def chunked(body: bytes) -> Iterator[bytes]:
    """Yields the body in pieces, so requests sends it chunked, without Content-Length."""
    for start in range(0, len(body), 8192):
        yield body[start : start + 8192]


def assert_too_large(response: Any) -> None:
    """Checks a 413 in the one error shape, with the security headers."""
    assert response.status_code == 413, response.text[:300]
    assert_error_shape(413, response.json())
    assert_security_headers(response.headers)


@pytest.fixture
def limited_client(app_config: dict[str, Any], model_files: Callable[[int], Path]) -> FlaskClient:
    """A client of an app whose body limit is LIMIT, serving the tiny model."""
    client = create_app({**app_config, "MAX_CONTENT_LENGTH": LIMIT}).test_client()
    assert upload(client, model_files(0)).status_code == 201
    return client


def test_a_json_body_at_the_limit_is_read(limited_client: FlaskClient) -> None:
    response = limited_client.post("/model/predict/", data=batch_of_size(LIMIT), headers=JSON)

    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == 3


def test_a_json_body_over_the_limit_is_a_413(limited_client: FlaskClient) -> None:
    response = limited_client.post("/model/predict/", data=batch_of_size(LIMIT + 1), headers=JSON)

    assert response.status_code == 413
    assert_error_shape(413, response.get_json())
    assert_security_headers(response.headers)
    assert limited_client.get("/model/history/").get_json()["total"] == 0


@pytest.fixture(scope="module")
def limited_server(
    tmp_path_factory: pytest.TempPathFactory,
    module_database_url: str,
    model_files: Callable[[int], Path],
) -> Iterator[RunningServer]:
    """A real server with MAX_REQUEST_BYTES=MAX_MODEL_BYTES=LIMIT, serving the tiny model."""
    data_dir = tmp_path_factory.mktemp("limits") / "data"
    env = {"MAX_REQUEST_BYTES": str(LIMIT), "MAX_MODEL_BYTES": str(LIMIT)}
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=1, **env) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize("send", [bytes, chunked], ids=["content-length", "chunked"])
def test_the_server_reads_a_body_at_the_limit_whole(
    limited_server: RunningServer, send: Callable[[bytes], Any]
) -> None:
    response = requests.post(
        f"{limited_server.url}/model/predict/", data=send(batch_of_size(LIMIT)), headers=JSON, timeout=60
    )

    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["predictions"]) == 3


@pytest.mark.slow
@pytest.mark.parametrize("send", [bytes, chunked], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [LIMIT + 1, 3 * LIMIT])
def test_the_server_answers_a_json_body_over_the_limit_with_a_413(
    limited_server: RunningServer, send: Callable[[bytes], Any], size: int
) -> None:
    response = requests.post(
        f"{limited_server.url}/model/predict/", data=send(batch_of_size(size)), headers=JSON, timeout=60
    )

    assert_too_large(response)


@pytest.mark.slow
def test_the_server_refuses_a_chunked_model_upload_over_the_limit_whole(
    limited_server: RunningServer,
) -> None:
    # Cut at the limit, this upload used to reach the loader truncated (400 "could not be unpickled").
    response = requests.post(
        f"{limited_server.url}/model/load/",
        data=chunked(b"\x80\x04" + b"\x00" * 3 * LIMIT),
        headers={**ADMIN_HEADERS, "Content-Type": "application/octet-stream"},
        timeout=60,
    )

    assert_too_large(response)


@pytest.mark.slow
def test_the_server_refuses_a_chunked_multipart_upload_over_the_limit(limited_server: RunningServer) -> None:
    body, content_type = encode_multipart_formdata({"file": ("model.pkl", b"\x80\x04" + b"\x00" * 3 * LIMIT)})
    response = requests.post(
        f"{limited_server.url}/model/load/",
        data=chunked(body),
        headers={**ADMIN_HEADERS, "Content-Type": content_type},
        timeout=60,
    )

    assert_too_large(response)


@pytest.mark.slow
def test_the_server_takes_a_model_upload_over_the_request_limit_within_its_own(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    # Bodies are read before Flask sees them: an upload's bound is MAX_MODEL_BYTES, not MAX_REQUEST_BYTES.
    artifact = model_files(0).read_bytes()
    assert len(artifact) > 1024
    env = {"MAX_REQUEST_BYTES": "1024"}
    # serve_with_model uploads it as multipart, with a Content-Length, and checks the 201.
    with serve_with_model(tmp_path / "data", database_url, model_files(0), workers=1, **env) as server:
        streamed = requests.post(
            f"{server.url}/model/load/",
            data=chunked(artifact),
            headers={**ADMIN_HEADERS, "Content-Type": "application/octet-stream"},
            timeout=60,
        )
        predicted = requests.post(
            f"{server.url}/model/predict/", data=batch_of_size(1025), headers=JSON, timeout=60
        )

    assert streamed.status_code == 201, streamed.text[:300]
    assert_too_large(predicted)


def raw_exchange(server: RunningServer, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Sends raw bytes on one connection; returns the one answer (the server closes after it)."""
    host, port = server.url.removeprefix("http://").split(":")
    [answer] = answers((host, int(port)), request)
    return answer


@pytest.mark.slow
@pytest.mark.parametrize(
    "head",
    [
        b"GET /health/ HTTP/1.1\r\nHost: x\r\nX-Padding: "
        + b"a" * (REQUEST_HEAD_MAX_BYTES + 1)
        + b"\r\n\r\n",
        b"GET /health/ HTTP/1.1\r\nHost: x\r\n" + b"X-Many: header-of-a-thousand\r\n" * 4000 + b"\r\n",
        b"GET /health/ HTTP/1.1\r\nHost: x\r\nX-Endless: " + b"a" * 20_000_000,
    ],
    ids=["one long header", "many headers", "a header that never ends"],
)
def test_the_server_refuses_a_request_head_over_the_limit_with_a_431(
    limited_server: RunningServer, head: bytes
) -> None:
    status, headers, body = raw_exchange(limited_server, head)

    assert status == 431
    assert_error_shape(431, json.loads(body))
    assert_security_headers(headers)
    assert headers["connection"] == "close"
    assert requests.get(f"{limited_server.url}/health/", timeout=30).status_code == 200


@pytest.mark.slow
def test_the_server_reads_a_head_under_the_limit_and_a_large_body_after_it(
    limited_server: RunningServer,
) -> None:
    body = batch_of_size(LIMIT)
    head = (
        "POST /model/predict/ HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {LIMIT}\r\n"
    )
    padding = b"X-Padding: " + b"a" * (REQUEST_HEAD_MAX_BYTES - len(head) - 1000) + b"\r\n"

    status, _, answer = raw_exchange(
        limited_server, head.encode() + padding + b"Connection: close\r\n\r\n" + body
    )

    assert status == 200, answer[:300]
    assert len(json.loads(answer)["predictions"]) == 3


@pytest.mark.slow
def test_the_server_answers_an_unparseable_request_with_a_400_in_the_error_shape(
    limited_server: RunningServer,
) -> None:
    status, headers, body = raw_exchange(limited_server, b"NOT HTTP AT ALL\r\n\r\n")

    assert status == 400
    assert_error_shape(400, json.loads(body))
    assert_security_headers(headers)
