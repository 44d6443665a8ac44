"""What costs nothing is checked before what costs: an admin route's token before its body, a body's
room in the worker's budget before it is read, a batch's count before its flights, a body's JSON
values before it is parsed; and large bodies are worked on a few at a time.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flight_delay.api import create_app
from flight_delay.serving.predictions import PredictionService
from flight_delay.transport import native
from flight_delay.transport.asgi import asgi_app
from flight_delay.validation import MAX_BATCH_SIZE
from tests.asgi import Answer, asgi_scope, call, request
from tests.conftest import upload
from tests.factories import ADMIN_HEADERS, minimal_flight

KIB = 1024


class Sent:
    """A request whose body arrives only when the test says, noting whether the app asked for it."""

    def __init__(self, sent: dict[str, Any], body: bytes) -> None:
        self.scope, _ = asgi_scope(sent)
        self.body = body
        self.asked = False
        self.arrive = asyncio.Event()
        self.replies: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        """The body, once it may arrive (the app's first receive() is what asks a client to send it)."""
        self.asked = True
        await self.arrive.wait()
        body, self.body = self.body, b""
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        """Keeps what the app answers."""
        self.replies.append(message)

    def answer(self) -> Answer:
        """What the app answered."""
        headers = [(k.decode(), v.decode()) for k, v in self.replies[0]["headers"]]
        return Answer(
            self.replies[0]["status"], headers, b"".join(m.get("body", b"") for m in self.replies[1:])
        )


def declared(path: str, size: int, **headers: str) -> dict[str, Any]:
    """A POST declaring a JSON body of `size` bytes."""
    return {**request("POST", path, b"", content_type="application/json", **headers), "content_length": size}


@pytest.fixture
def tight(app_config: dict[str, Any], model_files: Callable[[int], Path]) -> Flask:
    """An app with a 200 KiB body budget, 64 KiB bodies, one large body worked on at a time."""
    config = {
        **app_config,
        "MAX_CONTENT_LENGTH": 64 * KIB,
        "MAX_MODEL_BYTES": 64 * KIB,
        "ML_API_BODY_BUDGET_BYTES": 200 * KIB,
        "ML_API_LARGE_CONCURRENT": 1,
    }
    app = create_app(config)
    assert upload(app.test_client(), model_files(0)).status_code == 201
    return app


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/model/actuals/", {}, 401),
        ("/model/actuals/", {"Authorization": "Bearer wrong"}, 401),
        ("/model/load/", {}, 401),
    ],
)
def test_an_admin_route_refuses_a_wrong_token_before_reading_its_body(
    app: Flask, path: str, headers: dict[str, str], status: int
) -> None:
    sent = Sent(declared(path, 10 * 1024 * KIB, **headers), b"x")

    asyncio.run(asgi_app(app)(sent.scope, sent.receive, sent.send))

    answer = sent.answer()
    assert answer.status == status, answer.body
    assert not sent.asked, "the body was not asked for (a client sending Expect: 100-continue never sends it)"
    assert answer.header("connection") == "close"
    assert len(answer.body) < 1024


def test_upload_disabled_is_refused_before_the_body(app_config: dict[str, Any]) -> None:
    app = create_app({**app_config, "ML_API_ALLOW_UPLOAD": False})
    sent = Sent(declared("/model/load/", 1024, **ADMIN_HEADERS), b"x")

    asyncio.run(asgi_app(app)(sent.scope, sent.receive, sent.send))

    assert (sent.answer().status, sent.answer().json()["code"]) == (403, "upload_disabled")
    assert not sent.asked


def test_the_token_is_checked_before_the_body_under_flask_alone(client: Any) -> None:
    """An embedding WSGI server's path: the token before the body is parsed (no 11 MB refusal)."""
    body = json.dumps({"actuals": [{}] * 100_000})

    answer = client.post("/model/actuals/", data=body, content_type="application/json")

    assert answer.status_code == 401
    assert len(answer.get_data()) < 1024


def test_actuals_are_counted_before_they_are_checked(client: Any) -> None:
    answer = client.post("/model/actuals/", json={"actuals": [{}] * 100_000}, headers=ADMIN_HEADERS)

    assert answer.status_code == 422
    assert answer.get_json()["errors"] == {"actuals": ["Length must be between 1 and 10000."]}


def test_an_integer_too_long_to_read_is_a_400(client: Any) -> None:
    body = b'{"actuals": [{"history_id": ' + b"9" * 5000 + b', "arr_delay": 1}]}'

    answer = client.post("/model/actuals/", data=body, content_type="application/json", headers=ADMIN_HEADERS)

    assert (answer.status_code, answer.get_json()["code"]) == (400, "invalid_json")


async def holding(front: Any, helds: list[Sent], then: Callable[[], Any]) -> None:
    """Starts the held requests, waits until each is being read (counted), runs `then`, lets them end."""
    running = [asyncio.ensure_future(front(h.scope, h.receive, h.send)) for h in helds]
    while not all(h.asked for h in helds):  # each one's declared bytes are counted from its head on
        await asyncio.sleep(0.001)
    await then()
    for held in helds:
        held.arrive.set()
    await asyncio.gather(*running)


def held_bodies(count: int) -> list[Sent]:
    """Requests declaring 60 KiB each (their bodies held back until released)."""
    return [Sent(declared("/model/predict/", 60 * KIB), b"{}") for _ in range(count)]


def test_a_body_beyond_the_budget_is_a_503_before_it_is_read(tight: Flask) -> None:
    front = asgi_app(tight)
    helds, refused = held_bodies(3), Sent(declared("/model/predict/", 60 * KIB), b"x")

    asyncio.run(holding(front, helds, lambda: front(refused.scope, refused.receive, refused.send)))

    assert (refused.answer().status, refused.answer().json()["code"]) == (503, "overloaded")
    assert refused.answer().header("retry-after") is not None
    assert not refused.asked
    assert {held.answer().status for held in helds} == {
        422
    }  # theirs: what they sent (an empty flight) is read


def test_a_body_of_unknown_length_is_refused_once_it_passes_the_budget(tight: Flask) -> None:
    front = asgi_app(tight)
    helds = held_bodies(3)
    chunks = [{"type": "http.request", "body": b" " * (40 * KIB), "more_body": True} for _ in range(3)]
    scope, _ = asgi_scope(
        request("POST", "/model/predict/", b"", content_type="application/json", chunked=True)
    )
    replies: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return chunks.pop() if chunks else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        replies.append(message)

    asyncio.run(holding(front, helds, lambda: front(scope, receive, send)))

    assert replies[0]["status"] == 503
    assert chunks, "it stopped reading once the budget was passed"


def test_large_bodies_are_worked_on_one_at_a_time(tight: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    at_once, most = [0], [0]
    lock = threading.Lock()
    score = PredictionService.score

    def watched(service: PredictionService, *args: Any) -> Any:
        with lock:
            at_once[0] += 1
            most[0] = max(most[0], at_once[0])
        try:
            threading.Event().wait(0.05)  # long enough for another to start, were it let in
            return score(service, *args)
        finally:
            with lock:
                at_once[0] -= 1

    monkeypatch.setattr(PredictionService, "score", watched)
    batch = {"flights": [minimal_flight(dep_delay=float(i)) for i in range(100)]}
    assert len(json.dumps(batch)) > 16 * KIB

    front = asgi_app(tight)

    async def together() -> list[Answer]:
        return await asyncio.gather(
            *(call(front, request("POST", "/model/predict/", batch)) for _ in range(4))
        )

    answers = asyncio.run(together())

    assert {answer.status for answer in answers} == {200}
    assert most[0] == 1


def test_a_body_of_too_many_values_is_refused_before_it_is_parsed(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_: Any) -> None:
        raise AssertionError("parsed")

    body = b'{"flights": [' + b",".join([b"{}"] * (native.MAX_JSON_VALUES + 1)) + b"]}"
    sent = request("POST", "/model/predict/", body, content_type="application/json")
    with monkeypatch.context() as parsing:
        parsing.setattr(native.orjson, "loads", never)
        parsing.setattr(native.json, "loads", never)
        answer = asyncio.run(call(asgi_app(app), sent))

    assert (answer.status, answer.json()["code"]) == (413, "request_entity_too_large")


def test_a_batch_too_large_is_refused_small_before_any_flight_is_checked(app: Flask) -> None:
    body = json.dumps({"flights": [{}] * 100_000}).encode()  # 300 KB of `{}`

    answer = asyncio.run(
        call(asgi_app(app), request("POST", "/model/predict/", body, content_type="application/json"))
    )

    assert answer.status == 422
    assert answer.json()["errors"] == {"flights": [f"Length must be between 1 and {MAX_BATCH_SIZE}."]}
    assert len(answer.body) < 1024
