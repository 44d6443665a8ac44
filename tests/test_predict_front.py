"""The WSGI front of POST /model/predict/: it answers as Flask would, byte for byte, or leaves it to Flask."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, text

from flight_delay.api import create_app
from flight_delay.api.predict_front import PredictFront
from flight_delay.extensions import db
from flight_delay.history.models import Prediction
from flight_delay.serving.adapters import ProjectModel
from tests.conftest import upload
from tests.databases import refuse_inserts
from tests.factories import minimal_flight

JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    """What a client receives: status line, headers in order, body bytes."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Front:
    """The app, its front, and how many requests the front handed to Flask."""

    app: Flask
    front: PredictFront
    handed_over: int = 0

    def ask(self, front_on: bool, **request: Any) -> Answer:
        """Sends one request through the front (or straight to Flask) and forgets what it recorded."""
        # Both runs must number their rows alike: an empty history, ids from 1 again.
        with db.transaction() as session:
            session.execute(delete(Prediction))
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT setval(pg_get_serial_sequence('predictions', 'id'), 1, false)"))
        self.app.wsgi_app = self.front if front_on else self.front.flask_wsgi  # type: ignore[method-assign]
        try:
            response = self.app.test_client().open(**request)
        finally:
            self.app.wsgi_app = self.front  # type: ignore[method-assign]
        return Answer(response.status, list(response.headers.items()), response.get_data())


@pytest.fixture
def front(app_config: dict[str, Any]) -> Front:
    """An app whose front counts the requests it leaves to Flask."""
    app = create_app(app_config)
    predict_front = app.wsgi_app
    assert isinstance(predict_front, PredictFront)
    state = Front(app, predict_front)
    flask_wsgi = predict_front.flask_wsgi

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        state.handed_over += 1
        return flask_wsgi(environ, start_response)

    predict_front.flask_wsgi = counted
    return state


@pytest.fixture
def loaded_front(front: Front, model_files: Callable[[int], Path]) -> Front:
    """The front of an app serving the tiny model of seed 0."""
    assert upload(front.app.test_client(), model_files(0)).status_code == 201
    return front


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


def test_the_edited_bodies_hold_their_edits() -> None:
    assert b'"dep_delay": 1.0, "dep_delay": 5.0' in SERVED["a key given twice (the last one counts)"]["data"]
    assert (
        b'"dep_delay": NaN' in LEFT_TO_FLASK["a NaN literal (json.loads takes it, orjson does not)"]["data"]
    )


def answered_alike(front: Front, request: dict) -> tuple[Answer, bool]:
    """Asserts the front answers as Flask does; returns the answer and whether the front kept it."""
    by_flask = front.ask(front_on=False, **request)
    before = front.handed_over
    by_front = front.ask(front_on=True, **request)
    assert by_front == by_flask
    return by_front, front.handed_over == before


SERVED = {
    "one flight": post(minimal_flight()),
    "a batch": post(
        {"flights": [minimal_flight(), minimal_flight(dep_delay=None), minimal_flight(month=12)]}
    ),
    "the path without its slash": post(minimal_flight(), path="/model/predict"),
    "JSON declared as UTF-8": post(minimal_flight(), content_type="application/json; charset=utf-8"),
    "a query string": post(minimal_flight(), path="/model/predict/?verbose=1"),
    "a flight lacking a field the model reads": post({"flights": [minimal_flight(), {"year": 2013}]}),
    "a key given twice (the last one counts)": post(
        json.dumps(minimal_flight(dep_delay=5.0))
        .replace('"dep_delay": 5.0', '"dep_delay": 1.0, "dep_delay": 5.0')
        .encode()
    ),
}


@pytest.mark.parametrize("case", SERVED)
def test_the_front_answers_plain_predictions_as_flask_does(loaded_front: Front, case: str) -> None:
    answer, kept = answered_alike(loaded_front, SERVED[case])

    assert kept, "the front answered it itself"
    assert answer.status in {"200 OK", "422 UNPROCESSABLE ENTITY"}
    assert ("X-Request-ID", "front-1") in answer.headers


LEFT_TO_FLASK = {
    "another content type": post(minimal_flight(), content_type="text/plain"),
    "invalid JSON": post(b'{"year": 2013,'),
    "not UTF-8": post(b'{"carrier": "\xff"}'),
    "a flight the schema refuses": post(minimal_flight(month=13)),
    "an unknown field": post(minimal_flight(colour="red")),
    "an empty body": post(b""),
    "JSON nested too deeply": post(b"[" * 100_000 + b"]" * 100_000),
    "a GET": {"method": "GET", "path": "/model/predict/", "headers": {"X-Request-ID": "front-1"}},
    "a NaN literal (json.loads takes it, orjson does not)": post(
        json.dumps(minimal_flight()).replace('"dep_delay": 2.0', '"dep_delay": NaN').encode()
    ),
}


@pytest.mark.parametrize("case", LEFT_TO_FLASK)
def test_the_front_leaves_everything_else_to_flask_with_its_body(loaded_front: Front, case: str) -> None:
    answer, kept = answered_alike(loaded_front, LEFT_TO_FLASK[case])

    assert not kept, "Flask answered it"
    assert int(answer.status[:3]) >= 400


def test_a_body_over_the_limit_is_left_to_flask(app_config: dict[str, Any]) -> None:
    app = create_app({**app_config, "MAX_CONTENT_LENGTH": 64})
    response = app.test_client().post("/model/predict/", json=minimal_flight())

    assert response.status_code == 413
    assert response.get_json()["code"] == "request_entity_too_large"


def test_no_model_is_the_same_503(front: Front) -> None:
    answer, kept = answered_alike(front, post(minimal_flight()))

    assert kept
    assert answer.status == "503 SERVICE UNAVAILABLE"
    assert json.loads(answer.body)["code"] == "model_not_loaded"


def test_an_unscorable_flight_is_the_same_422(loaded_front: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ProjectModel, "predict", lambda self, flights: [float("nan")] * len(flights))

    answer, kept = answered_alike(loaded_front, post(minimal_flight()))

    assert kept
    assert json.loads(answer.body)["code"] == "unscorable_flight"


def test_a_history_that_refuses_the_write_is_the_same_503(loaded_front: Front) -> None:
    with db.transaction() as session:
        refuse_inserts(session, "predictions", "disk is full")

    answer, kept = answered_alike(loaded_front, post(minimal_flight()))

    assert kept
    body = json.loads(answer.body)
    assert (answer.status, body["code"]) == ("503 SERVICE UNAVAILABLE", "history_unavailable")
    assert body["message"].endswith("so it is not served: disk is full.")


def test_a_fault_of_ours_is_a_500_without_details(
    loaded_front: Front, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any, **__: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr("flight_delay.api.model.PREDICT_RESPONSE.dump", broken)

    answer, kept = answered_alike(loaded_front, post(minimal_flight()))

    assert kept
    assert answer.status == "500 INTERNAL SERVER ERROR"
    assert json.loads(answer.body) == {
        "status": 500,
        "code": "internal_error",
        "message": "Internal server error.",
        "request_id": "front-1",
    }


def test_an_id_the_client_did_not_give_is_made_for_it(loaded_front: Front) -> None:
    request = post(minimal_flight(), **{"X-Request-ID": "not allowed: spaces"})
    response = loaded_front.app.test_client().open(**request)

    assert response.status_code == 200
    made = response.get_json()["request_id"]
    assert len(made) == 32
    assert set(made) <= set("0123456789abcdef")
    assert response.headers["X-Request-ID"] == made
