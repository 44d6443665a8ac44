"""The ASGI front the uvicorn workers run: every plain prediction on the loop, answered as Flask answers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, select, text
from webargs import core as webargs_core

from flight_delay.api import asgi_front, create_app
from flight_delay.api.asgi_front import AsgiFront
from flight_delay.api.plain_predict import parsed_json
from flight_delay.extensions import db, predictions
from flight_delay.history.database import Database
from flight_delay.history.host_writer import frame
from flight_delay.history.models import Prediction
from flight_delay.history.pg_loop_writer import PostgresLoopWriter
from flight_delay.serving.adapters import ProjectModel
from flight_delay.serving.predictions import PredictionService
from flight_delay.serving.registry import ModelRegistry
from tests.conftest import upload
from tests.databases import backend_under_test, refuse_inserts, write_lock
from tests.factories import minimal_flight
from tests.test_host_writer import socket_path, writer_serving
from tests.test_pg_loop_writer import terminate, until

__all__ = ["socket_path"]  # a fixture, imported to be used here

JSON = "application/json"


def post(body: Any, *, path: str = "/model/predict/", content_type: str = JSON, **headers: str) -> dict:
    """A predict request: JSON-encoded unless given as bytes."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return {
        "method": "POST",
        "path": path,
        "data": data,
        "content_type": content_type,
        "headers": {"X-Request-ID": "front-1", **headers},
    }


def chunked(request: dict[str, Any]) -> dict[str, Any]:
    """The request with its body sent chunked (no Content-Length) to the front."""
    return {**request, "chunked": True}


SERVED = {
    "one flight": post(minimal_flight()),
    "a batch": post(
        {"flights": [minimal_flight(), minimal_flight(dep_delay=None), minimal_flight(month=12)]}
    ),
    "the path without its slash": post(minimal_flight(), path="/model/predict"),
    "JSON declared as UTF-8": post(minimal_flight(), content_type="application/json; charset=utf-8"),
    "JSON declared in capitals": post(minimal_flight(), content_type="Application/JSON"),
    "a +json media type": post(minimal_flight(), content_type="application/vnd.flight+json"),
    "a chunked body": chunked(post(minimal_flight())),
    "a query string": post(minimal_flight(), path="/model/predict/?verbose=1"),
    "a flight lacking a field the model reads": post({"flights": [minimal_flight(), {"year": 2013}]}),
    "a key given twice (the last one counts)": post(
        json.dumps(minimal_flight(dep_delay=5.0))
        .replace('"dep_delay": 5.0', '"dep_delay": 1.0, "dep_delay": 5.0')
        .encode()
    ),
    "a NaN literal where null is allowed (pandas' missing value)": post(
        json.dumps(minimal_flight()).replace('"dep_delay": 2.0', '"dep_delay": NaN').encode()
    ),
}
LEFT_TO_FLASK = {
    "another content type": post(minimal_flight(), content_type="text/plain"),
    "invalid JSON": post(b'{"year": 2013,'),
    "not UTF-8": post(b'{"carrier": "\xff"}'),
    "a flight the schema refuses": post(minimal_flight(month=13)),
    "an unknown field": post(minimal_flight(colour="red")),
    "an empty body": post(b""),
    "JSON nested too deeply": post(b"[" * 100_000 + b"]" * 100_000),
    "a GET": {"method": "GET", "path": "/model/predict/", "headers": {"X-Request-ID": "front-1"}},
    "a NaN literal where a value is required (json.loads takes it, the schema does not)": post(
        json.dumps(minimal_flight()).replace('"distance": 1400.0', '"distance": NaN').encode()
    ),
}


@pytest.mark.parametrize(
    "document",
    [
        b'{"a": 1}',
        b"NaN",
        b"[Infinity, -Infinity]",
        b"1e400",
        b'"\\ud800"',
        b"18446744073709551616",
        b"[1" + b"0" * 30 + b"]",
        b"-0",
    ],
)
def test_the_front_reads_json_as_webargs_does(document: bytes) -> None:
    """orjson first, json.loads for what it refuses: the same values either way (NaN compared as text)."""
    assert repr(parsed_json(document)) == repr(webargs_core.parse_json(document))


def test_the_edited_bodies_hold_their_edits() -> None:
    assert b'"dep_delay": 1.0, "dep_delay": 5.0' in SERVED["a key given twice (the last one counts)"]["data"]
    nan = LEFT_TO_FLASK["a NaN literal where a value is required (json.loads takes it, the schema does not)"]
    assert b'"distance": NaN' in nan["data"]
    assert (
        b'"dep_delay": NaN' in SERVED["a NaN literal where null is allowed (pandas' missing value)"]["data"]
    )


@dataclass(frozen=True)
class Answer:
    """What a client receives: status, headers (names lower-cased, as uvicorn sends them), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def asgi_scope(request: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The HTTP scope uvicorn builds for a test-client style request, and its body."""
    path, _, query = request["path"].partition("?")
    data = request.get("data", b"")
    headers = [(name.lower().encode(), value.encode()) for name, value in request.get("headers", {}).items()]
    if "content_type" in request:
        headers.append((b"content-type", request["content_type"].encode()))
    if request.get("chunked"):
        headers.append((b"transfer-encoding", b"chunked"))
    elif data or request["method"] == "POST":
        headers.append((b"content-length", str(len(data)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": request["method"],
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    return scope, data


async def call(front: AsgiFront, request: dict[str, Any]) -> Answer:
    """Sends one request through the ASGI app as the server would, and collects the answer."""
    scope, data = asgi_scope(request)
    messages = [{"type": "http.request", "body": data, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await front(scope, receive, send)
    start = sent[0]
    headers = [(name.decode().lower(), value.decode()) for name, value in start["headers"]]
    return Answer(start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:]))


@dataclass
class Fronts:
    """The app behind the ASGI front, and how many requests the front handed to Flask."""

    front: AsgiFront
    handed_over: int = 0

    def ask(self, through_front: bool, request: dict[str, Any]) -> Answer:
        """One request through the ASGI front, or through the Flask app only; its rows forgotten."""
        with db.transaction() as session:  # ids from 1 again for both runs (SQLite: an empty table)
            session.execute(delete(Prediction))
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT setval(pg_get_serial_sequence('predictions', 'id'), 1, false)"))
        if through_front:
            return asyncio.run(call(self.front, request))
        flask_request = {key: value for key, value in request.items() if key != "chunked"}
        response = self.front.app.test_client().open(**flask_request)
        headers = [(name.lower(), value) for name, value in response.headers.items()]
        return Answer(response.status_code, headers, response.get_data())


@pytest.fixture
def writer_db(app_config: dict[str, Any]) -> Iterator[Database]:
    """The writer's own connection to the app's (migrated) database."""
    database = Database().bind(app_config["DATABASE_URL"], busy_timeout_ms=20_000)
    yield database
    database.dispose()


@contextmanager
def fronts_of(app_config: dict[str, Any], writer_db: Database, socket_path: str) -> Iterator[Fronts]:
    """An ASGI front recording from the event loop, counting what it hands to Flask.

    On SQLite through a host writer, on PostgreSQL through the worker's own PostgresLoopWriter.
    """
    with ExitStack() as stack:
        if backend_under_test() == "sqlite":
            stack.enter_context(writer_serving(writer_db, socket_path))
            app_config = {**app_config, "HISTORY_WRITER_SOCKET": socket_path}
        state = Fronts(AsgiFront(create_app(app_config)))
        flask = state.front.flask

        async def counted(scope: Any, receive: Any, send: Any) -> None:
            state.handed_over += 1
            await flask(scope, receive, send)

        state.front.flask = counted  # type: ignore[assignment]
        yield state
        if isinstance(predictions.event_loop_writer, PostgresLoopWriter):
            predictions.event_loop_writer.close()


@pytest.fixture
def bare_fronts(app_config: dict[str, Any], writer_db: Database, socket_path: str) -> Iterator[Fronts]:
    """The front of an app without a model."""
    with fronts_of(app_config, writer_db, socket_path) as state:
        yield state


@pytest.fixture
def fronts(bare_fronts: Fronts, model_files: Callable[[int], Path]) -> Fronts:
    """The front of an app serving the model of seed 0."""
    assert upload(bare_fronts.front.app.test_client(), model_files(0)).status_code == 201
    return bare_fronts


def answered_alike(fronts: Fronts, request: dict[str, Any]) -> tuple[Answer, bool]:
    """Asserts the front answers as Flask does; returns the answer and whether the front kept it."""
    by_flask = fronts.ask(False, request)
    before = fronts.handed_over
    by_front = fronts.ask(True, request)
    assert by_front == by_flask
    return by_front, fronts.handed_over == before


@pytest.mark.parametrize("case", SERVED)
def test_the_front_answers_plain_predictions_as_flask_does(fronts: Fronts, case: str) -> None:
    answer, kept = answered_alike(fronts, SERVED[case])

    assert kept, "answered on the event loop"
    assert answer.status in {200, 422}
    assert ("x-request-id", "front-1") in answer.headers


@pytest.mark.parametrize("case", LEFT_TO_FLASK)
def test_the_front_leaves_everything_else_to_flask_with_its_body(fronts: Fronts, case: str) -> None:
    answer, kept = answered_alike(fronts, LEFT_TO_FLASK[case])

    assert not kept, "Flask answered it"
    assert answer.status >= 400


def test_a_history_that_refuses_the_write_is_the_same_503(fronts: Fronts) -> None:
    with db.transaction() as session:
        refuse_inserts(session, "predictions", "disk is full")

    answer, kept = answered_alike(fronts, post(minimal_flight()))

    assert kept
    body = json.loads(answer.body)
    assert (answer.status, body["code"]) == (503, "history_unavailable")
    assert body["message"].endswith("so it is not served: disk is full.")


def test_requests_waiting_together_share_one_connection_and_get_their_own_rows(fronts: Fronts) -> None:
    async def many() -> list[Answer]:
        requests = [
            post(minimal_flight(dep_delay=float(i)), **{"X-Request-ID": f"loop-{i}"}) for i in range(60)
        ]
        return await asyncio.gather(*(call(fronts.front, request) for request in requests))

    answers = asyncio.run(many())

    assert fronts.handed_over == 0
    with db.transaction() as session:
        recorded = {row.id: row for row in session.scalars(select(Prediction))}
    assert len(recorded) == 60
    for i, answer in enumerate(answers):
        assert answer.status == 200, answer.body
        [prediction] = json.loads(answer.body)["predictions"]
        row = recorded[prediction["history_id"]]
        assert (row.request_id, row.input["dep_delay"], row.arr_delay) == (
            f"loop-{i}",
            float(i),
            prediction["arr_delay"],
        )


@pytest.mark.sqlite_only
def test_without_a_reachable_writer_the_worker_records_itself(
    app_config: dict[str, Any], model_files: Callable[[int], Path], tmp_path: Path
) -> None:
    app = create_app({**app_config, "HISTORY_WRITER_SOCKET": str(tmp_path / "nobody-listens.sock")})
    assert upload(app.test_client(), model_files(0)).status_code == 201

    answer = asyncio.run(call(AsgiFront(app), post(minimal_flight())))

    assert answer.status == 200, answer.body
    [prediction] = json.loads(answer.body)["predictions"]
    with db.transaction() as session:
        assert session.get(Prediction, prediction["history_id"]).request_id == "front-1"


@pytest.mark.sqlite_only
def test_a_writer_that_takes_the_rows_and_dies_refuses_the_request(
    app_config: dict[str, Any], model_files: Callable[[int], Path], socket_path: str
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(1)

    def take_and_die() -> None:
        connection, _ = listener.accept()
        connection.recv(1024 * 1024)
        connection.close()

    dying = threading.Thread(target=take_and_die)
    dying.start()
    app = create_app({**app_config, "HISTORY_WRITER_SOCKET": socket_path})
    assert upload(app.test_client(), model_files(0)).status_code == 201

    answer = asyncio.run(call(AsgiFront(app), post(minimal_flight())))
    dying.join(30)
    listener.close()

    body = json.loads(answer.body)
    assert (answer.status, body["code"]) == (503, "history_unavailable")
    assert "the history writer did not answer" in body["message"]


@pytest.mark.sqlite_only
def test_a_garbled_answer_refuses_the_request_and_the_next_one_reconnects(
    fronts: Fronts, socket_path: str, app_config: dict[str, Any], model_files: Callable[[int], Path]
) -> None:
    """An answer that is not the writer's: no request may take another's ids; later ones still work."""
    garbling = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path = socket_path + ".garbled"
    garbling.bind(path)
    garbling.listen(1)

    def garble() -> None:
        connection, _ = garbling.accept()
        connection.recv(1024 * 1024)
        connection.sendall(frame(b"not json"))
        connection.close()

    thread = threading.Thread(target=garble)
    thread.start()
    app = fronts.front.app
    app.config["HISTORY_WRITER_SOCKET"] = path
    predictions.init_app(app)
    first = asyncio.run(call(fronts.front, post(minimal_flight())))
    thread.join(30)
    garbling.close()
    os.unlink(path)
    app.config["HISTORY_WRITER_SOCKET"] = socket_path
    predictions.init_app(app)
    second = asyncio.run(call(fronts.front, post(minimal_flight())))

    assert first.status == 503
    assert second.status == 200, second.body


@pytest.mark.sqlite_only  # PostgreSQL always has its loop writer
def test_without_a_host_writer_predictions_go_through_flask(
    app_config: dict[str, Any], model_files: Callable[[int], Path]
) -> None:
    """A SQLite app outside `flight-delay serve` has no host writer: Flask's view answers, in a thread."""
    app = create_app(app_config)
    assert upload(app.test_client(), model_files(0)).status_code == 201
    front = AsgiFront(app)
    assert predictions.event_loop_writer is None

    answer = asyncio.run(call(front, post(minimal_flight())))

    assert answer.status == 200, answer.body
    assert ("x-request-id", "front-1") in answer.headers
    [prediction] = json.loads(answer.body)["predictions"]
    with db.transaction() as session:
        assert session.get(Prediction, prediction["history_id"]).request_id == "front-1"


@pytest.mark.parametrize("send", [post, lambda body: chunked(post(body))])
def test_a_batch_beyond_the_loop_limit_is_answered_by_the_front_its_work_in_a_thread(
    fronts: Fronts, monkeypatch: pytest.MonkeyPatch, send: Callable[[Any], dict[str, Any]]
) -> None:
    batch = {"flights": [minimal_flight(dep_delay=float(i)) for i in range(10)]}
    assert len(json.dumps(batch)) > 1024
    monkeypatch.setattr(asgi_front, "LOOP_BODY_MAX_BYTES", 1024)
    scored_on = []
    score = PredictionService.score

    def watched(service: PredictionService, *args: Any) -> Any:
        scored_on.append(threading.current_thread())
        return score(service, *args)

    monkeypatch.setattr(PredictionService, "score", watched)

    answer, kept = answered_alike(fronts, send(batch))

    assert kept, "the front answered it"
    assert answer.status == 200
    assert len(json.loads(answer.body)["predictions"]) == 10
    assert threading.main_thread() in scored_on, "Flask's view, in the test client's thread"
    assert scored_on[-1] is not threading.main_thread(), "the front scored it off the event loop"


@pytest.mark.parametrize("send", [post, lambda body: chunked(post(body))])
def test_a_body_over_the_limit_is_left_to_flask(
    app_config: dict[str, Any],
    writer_db: Database,
    socket_path: str,
    send: Callable[[Any], dict[str, Any]],
) -> None:
    with fronts_of({**app_config, "MAX_CONTENT_LENGTH": 64}, writer_db, socket_path) as limited:
        answer, kept = answered_alike(limited, send(minimal_flight()))

    assert not kept
    assert answer.status == 413
    assert json.loads(answer.body)["code"] == "request_entity_too_large"


def test_no_model_is_the_same_503(bare_fronts: Fronts) -> None:
    answer, kept = answered_alike(bare_fronts, post(minimal_flight()))

    assert kept
    assert answer.status == 503
    assert json.loads(answer.body)["code"] == "model_not_loaded"


def test_an_unscorable_flight_is_the_same_422(fronts: Fronts, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ProjectModel, "predict", lambda self, flights: [float("nan")] * len(flights))

    answer, kept = answered_alike(fronts, post(minimal_flight()))

    assert kept
    assert json.loads(answer.body)["code"] == "unscorable_flight"


def test_a_fault_of_ours_is_a_500_without_details(fronts: Fronts, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("flight_delay.api.model.PREDICT_RESPONSE.dump", broken)

    answer, kept = answered_alike(fronts, post(minimal_flight()))

    assert kept
    assert answer.status == 500
    assert json.loads(answer.body) == {
        "status": 500,
        "code": "internal_error",
        "message": "Internal server error.",
        "request_id": "front-1",
    }


def test_an_id_the_client_did_not_give_is_made_for_it(fronts: Fronts) -> None:
    answer = asyncio.run(
        call(fronts.front, post(minimal_flight(), **{"X-Request-ID": "not allowed: spaces"}))
    )

    assert answer.status == 200
    made = json.loads(answer.body)["request_id"]
    assert len(made) == 32
    assert set(made) <= set("0123456789abcdef")
    assert ("x-request-id", made) in answer.headers


@pytest.mark.parametrize("request_", [post(minimal_flight()), {"method": "GET", "path": "/health/"}])
def test_headers_named_with_underscores_are_dropped_on_both_paths(
    fronts: Fronts, request_: dict[str, Any]
) -> None:
    """As gunicorn did: X_Request_ID would pass for X-Request-ID in WSGI's environ, not on the loop."""
    headers = {name: value for name, value in request_.get("headers", {}).items() if name != "X-Request-ID"}
    answer = asyncio.run(call(fronts.front, {**request_, "headers": {**headers, "X_Request_ID": "spoofed"}}))

    assert answer.status == 200, answer.body
    request_id = dict(answer.headers)["x-request-id"]
    assert request_id != "spoofed"
    assert len(request_id) == 32


def test_a_model_to_load_is_loaded_off_the_event_loop(
    fronts: Fronts, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = []
    active = ModelRegistry.active

    def watched(registry: ModelRegistry) -> Any:
        threads.append(threading.current_thread())
        return active(registry)

    # On the class: an instance attribute would outlive the test (monkeypatch restores it there).
    monkeypatch.setattr(ModelRegistry, "current", lambda registry: None)  # as after a new activation
    monkeypatch.setattr(ModelRegistry, "active", watched)

    answer = asyncio.run(call(fronts.front, post(minimal_flight())))

    assert answer.status == 200, answer.body
    assert threads
    assert threading.main_thread() not in threads


def test_requests_arriving_during_a_model_load_share_it(
    fronts: Fronts, model_files: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert upload(fronts.front.app.test_client(), model_files(1)).status_code == 201
    monkeypatch.setattr(predictions.registry, "_active", None)  # this worker has not looked it up yet
    lookups = []
    read_active = ModelRegistry._refresh

    def counted(registry: ModelRegistry) -> Any:
        lookups.append(threading.current_thread())
        return read_active(registry)

    monkeypatch.setattr(ModelRegistry, "_refresh", counted)

    async def many() -> list[Answer]:
        return await asyncio.gather(*(call(fronts.front, post(minimal_flight())) for _ in range(20)))

    answers = asyncio.run(many())

    assert {answer.status for answer in answers} == {200}
    assert len(lookups) == 1


@pytest.mark.postgresql_only
def test_on_postgresql_a_connection_ended_mid_commit_serves_no_unrecorded_prediction(
    fronts: Fronts, app_config: dict[str, Any]
) -> None:
    """Requests in flight when the server ends the writer's connection: 503s, never an unstored id."""
    writer = predictions.event_loop_writer
    assert isinstance(writer, PostgresLoopWriter)
    admin = create_engine(app_config["DATABASE_URL"], isolation_level="AUTOCOMMIT")

    async def cut_short() -> list[Answer]:
        assert (await call(fronts.front, post(minimal_flight()))).status == 200  # connected
        assert writer.connection is not None
        pid = writer.connection.info.backend_pid
        with write_lock(app_config["DATABASE_URL"], "predictions"):
            requests = [post(minimal_flight(), **{"X-Request-ID": f"cut-{i}"}) for i in range(20)]
            pending = asyncio.gather(*(call(fronts.front, request) for request in requests))
            await until(admin, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid", pid)
            await terminate(admin, pid)
        return await pending

    try:
        answers = asyncio.run(cut_short())
    finally:
        admin.dispose()

    assert fronts.handed_over == 0
    with db.transaction() as session:
        recorded = {row.id: row.request_id for row in session.scalars(select(Prediction))}
    refused = [json.loads(answer.body) for answer in answers if answer.status != 200]
    assert refused, "the statement in flight was refused"
    assert {(body["status"], body["code"]) for body in refused} == {(503, "history_unavailable")}
    for i, answer in enumerate(answers):
        if answer.status == 200:
            [prediction] = json.loads(answer.body)["predictions"]
            assert recorded[prediction["history_id"]] == f"cut-{i}"
