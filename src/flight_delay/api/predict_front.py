"""POST /model/predict/ answered at the WSGI level: the common request without Flask's per-request layers.

Under load, Flask, werkzeug, flask-smorest and webargs cost more CPU per prediction than reading,
validating, scoring and recording it (bench/PROFILE.md). This front takes only requests that the Flask
view would answer from a JSON body it can read whole: POST to the predict path, `application/json`,
a Content-Length within MAX_CONTENT_LENGTH, a body that parses and that the request schema accepts.
Everything else (another path or method, another content type, a streamed or oversized body, JSON or
flights the schema refuses) goes to Flask untouched, its body still readable, so every refusal keeps
its message. What the front answers is what the Flask view answers, byte for byte (tests compare):
the same schema, service, error mapping, headers and metrics; its JSON parser (orjson) is stricter
than Flask's, and what it refuses goes to Flask too.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask
from werkzeug.http import HTTP_STATUS_CODES

from flight_delay.api.errors import error_body, reply_for, request_id_from
from flight_delay.api.model import PREDICT_REQUEST, PREDICT_RESPONSE
from flight_delay.api.security import json_answer_headers
from flight_delay.extensions import predictions
from flight_delay.observability.metrics import observe_request
from flight_delay.serving.predictions import FlightInput, ScoredFlights

# Both spellings reach the view (the app's url_map has strict_slashes off); metrics use the rule's.
PREDICT_RULE = "/model/predict/"
PREDICT_PATHS = frozenset({PREDICT_RULE, PREDICT_RULE.rstrip("/")})
# The content types webargs reads as JSON that need no decision here; others are Flask's to judge.
JSON_TYPES = frozenset({"application/json", "application/json; charset=utf-8"})

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class PredictAnswer:
    """A predict response, status line to body, as the Flask view would have sent it."""

    status: int
    headers: list[tuple[str, str]]
    data: bytes

    @property
    def status_line(self) -> str:
        """The WSGI status line, e.g. "200 OK"."""
        return f"{self.status} {HTTP_STATUS_CODES.get(self.status, 'unknown').upper()}"


def body_length(content_type: str, declared: str, limit: int | None) -> int | None:
    """The length of a JSON body the fronts may read whole; None leaves the request to Flask."""
    if content_type.lower() not in JSON_TYPES:
        return None
    if not (declared.isascii() and declared.isdigit()):  # absent (streamed) or odd: Flask's to judge
        return None
    length = int(declared)
    if length == 0 or (limit is not None and length > limit):
        return None
    return length


def flights_from(body: bytes) -> tuple[list[FlightInput], bool] | None:
    """The flights of a body the request schema accepts, and whether it held one flight; else None."""
    try:
        # orjson reads strict JSON faster than webargs' json.loads; what it refuses that json.loads
        # would take (NaN, huge integers, lone surrogates) goes to Flask, which parses it as before.
        loaded = PREDICT_REQUEST.load(orjson.loads(body))
    except Exception:  # bad JSON, refused flights, anything odd: Flask answers and words it
        return None
    return [FlightInput(**flight) for flight in loaded["flights"]], loaded["single"]


def answer(app: Flask, request_id: str, outcome: ScoredFlights | Exception) -> PredictAnswer:
    """Renders the predictions, or the error that refused them, as the Flask view and handlers do."""
    if isinstance(outcome, ScoredFlights):
        status, extra_headers, payload = 200, {}, PREDICT_RESPONSE.dump(outcome)
    else:
        reply = reply_for(outcome)
        status, extra_headers = reply.status, dict(reply.headers or {})
        payload = error_body(reply.status, reply.code, reply.message, reply.errors, request_id)
    data = f"{app.json.dumps(payload, **_json_options(app))}\n".encode()
    return PredictAnswer(status, json_answer_headers(len(data), request_id, extra_headers.items()), data)


def _json_options(app: Flask) -> dict[str, Any]:
    """Flask's JSON response layout: indented in debug mode, compact otherwise (DefaultJSONProvider)."""
    compact = app.json.compact  # type: ignore[attr-defined]
    indent = (compact is None and app.debug) or compact is False
    return {"indent": 2} if indent else {"separators": (",", ":")}


class PredictFront:
    """WSGI middleware answering plain predict requests itself and handing the rest to Flask."""

    def __init__(self, app: Flask, flask_wsgi: WSGIApp) -> None:
        self.app = app
        self.flask_wsgi = flask_wsgi

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answers the request if it is a plain prediction, else lets Flask answer it."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in PREDICT_PATHS:
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        body = self._read_body(environ)
        if body is None:
            return self.flask_wsgi(environ, start_response)
        parsed = flights_from(body)
        if parsed is None:
            environ["wsgi.input"] = io.BytesIO(body)
            return self.flask_wsgi(environ, start_response)
        flights, single = parsed
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        try:
            scored = predictions.predict(flights, request_id, started, single)
            reply = answer(self.app, request_id, scored)
        except Exception as exc:  # answered as Flask's error handlers answer it
            reply = answer(self.app, request_id, exc)
        start_response(reply.status_line, reply.headers)
        observe_request(PREDICT_RULE, "POST", reply.status, time.perf_counter() - started)
        return [reply.data]

    def _read_body(self, environ: dict[str, Any]) -> bytes | None:
        """Reads a JSON body of declared length within the limit; None leaves the request to Flask."""
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        length = body_length(environ.get("CONTENT_TYPE", ""), environ.get("CONTENT_LENGTH", ""), limit)
        if length is None:
            return None
        try:
            body = environ["wsgi.input"].read(length)
        except OSError:  # the connection broke: Flask answers what is left, an empty body
            body = b""
        if len(body) != length:  # the client stopped sending: Flask reports it as it would
            environ["wsgi.input"] = io.BytesIO(body)
            return None
        return body
