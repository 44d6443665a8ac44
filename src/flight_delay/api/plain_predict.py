"""What the event loop needs to answer POST /model/predict/ as Flask would, byte for byte.

The event-loop handler (asgi_front.AsgiFront) answers every prediction whose JSON body the request
schema accepts; anything it does not take (another content type, a body cut short or over the
limit, JSON or flights the schema refuses) goes to the Flask app untouched, whose view and error
handlers word every refusal. So the handler must take exactly what the view would serve: the same
content types (webargs' is_json), the same JSON (orjson, then json.loads for what orjson alone
refuses), the same schema, and the same rendering of the answer or of the error that refused it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from flask import Flask
from webargs import core
from werkzeug.http import parse_options_header

from flight_delay.api.errors import error_body, reply_for
from flight_delay.api.model import PREDICT_REQUEST, PREDICT_RESPONSE
from flight_delay.api.security import json_answer_headers
from flight_delay.serving.predictions import FlightInput, ScoredFlights

# Both spellings reach the view (the app's url_map has strict_slashes off); metrics use the rule's.
PREDICT_RULE = "/model/predict/"
PREDICT_PATHS = frozenset({PREDICT_RULE, PREDICT_RULE.rstrip("/")})
# 20 digits in a row may be an integer orjson reads as a float (beyond 2**64 - 1): json.loads reads it.
LONG_DIGIT_RUN = re.compile(rb"[0-9]{20}")


@dataclass(frozen=True)
class PredictAnswer:
    """A predict response, status line to body, as the Flask view would have sent it."""

    status: int
    headers: list[tuple[str, str]]
    data: bytes


def is_json(content_type: str) -> bool:
    """Whether Flask's parser reads a body of this content type as JSON (webargs' rule)."""
    mimetype, _ = parse_options_header(content_type)
    return core.is_json(mimetype.lower())


def flights_from(body: bytes) -> tuple[list[FlightInput], bool] | None:
    """The flights of a body the request schema accepts, and whether it held one flight; else None."""
    try:
        loaded = PREDICT_REQUEST.load(parsed_json(body))
    except Exception:  # bad JSON, refused flights, anything odd: Flask answers and words it
        return None
    return [FlightInput(**flight) for flight in loaded["flights"]], loaded["single"]


def parsed_json(body: bytes) -> Any:
    """The body's JSON as webargs reads it: orjson first, json.loads where orjson would differ.

    orjson is faster, but refuses NaN, infinities and lone surrogates, and reads integers beyond 64
    bits as floats, where json.loads (webargs' parser) takes them and keeps such integers exact.
    """
    if LONG_DIGIT_RUN.search(body):
        return core.parse_json(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return core.parse_json(body)


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
