"""The native protocol: POST /model/predict/ with one flight or {"flights": [...]} as JSON.

The route on the event loop and Flask's view (api/model.py, for an embedding WSGI server and the
tests) both turn the body into a PredictRequest here and render the answer here, around the one
data plane.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson
from werkzeug.http import parse_options_header

from flight_delay.errors import BodyTooLarge, MalformedBody, UnsupportedMediaType
from flight_delay.replies import Reply, json_reply
from flight_delay.services import Services
from flight_delay.serving.dataplane import PredictRequest, run_off_loop_if
from flight_delay.serving.predictions import ScoredFlights
from flight_delay.transport.http import LOOP_BODY_MAX_BYTES, HttpRequest
from flight_delay.transport.routes import Route
from flight_delay.validation import batch_items

PREDICT_RULE = "/model/predict/"
# 20 digits in a row may be an integer orjson reads as a float (beyond 2**64 - 1): json.loads reads it.
LONG_DIGIT_RUN = re.compile(rb"[0-9]{20}")
EMPTY = 'The request body is empty: send one flight, or {"flights": [...]}.'
# JSON values a body may hold, counted before it is parsed: a batch of 10,000 flights of every field
# holds about 450,000 (each "field": value one colon, one comma), and parsing what holds far more
# would cost far more memory than its bytes (2 bytes of `{},` are a 64-byte dict).
MAX_JSON_VALUES = 1_000_000


async def predict(request: HttpRequest, services: Services) -> Reply:
    """POST /model/predict/: the flights' predictions, each recorded in the history."""
    large = len(request.body) > LOOP_BODY_MAX_BYTES
    arguments = (request.body, request.header(b"content-type"), request.request_id, request.started)
    predict_request = await run_off_loop_if(large, request_of, *arguments)
    scored = await services.dataplane.predict(predict_request)
    return await run_off_loop_if(large, answer, scored)


ROUTES = [Route("POST", PREDICT_RULE, predict)]


def request_of(body: bytes, content_type: str, request_id: str, started: float) -> PredictRequest:
    """The PredictRequest of a native body; refuses another content type, bad JSON or another shape."""
    if not is_json(content_type):
        shown = parse_options_header(content_type)[0] or "untyped"
        raise UnsupportedMediaType(f"Send the body as application/json, not {shown}.")
    items, single = batch_items(parsed_json(body))
    large = len(body) > LOOP_BODY_MAX_BYTES
    return PredictRequest(items, request_id, started, single=single, protocol="native", large=large)


def answer(scored: ScoredFlights) -> Reply:
    """The 200 answer: the model version, the request id and one prediction per flight, in order."""
    return json_reply(200, scored_body(scored), scored.request_id)


def scored_body(scored: ScoredFlights) -> dict[str, Any]:
    """The answer's body (PredictResponseSchema documents it): fields in order, as int(), float(), str()."""
    return {
        "model_version": scored.model_version,
        "request_id": scored.request_id,
        "predictions": [_prediction_body(p) for p in scored.predictions],
    }


def _prediction_body(prediction: dict[str, Any]) -> dict[str, Any]:
    """One prediction: its history id, delay, basis, context (a model that reads one) and any warnings."""
    body = {
        "history_id": int(prediction["history_id"]),
        "arr_delay": float(prediction["arr_delay"]),
        "basis": str(prediction["basis"]),
    }
    if "context" in prediction:  # plain data already, JSON-safe (null for NaN)
        body["context"] = prediction["context"]
    if "warnings" in prediction:
        body["warnings"] = [dict(warning) for warning in prediction["warnings"]]
    return body


def is_json(content_type: str) -> bool:
    """Whether the content type is JSON: application/json or any application/*+json."""
    mimetype = parse_options_header(content_type)[0].lower()
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def parsed_json(body: bytes) -> Any:
    """The body's JSON: orjson first, json.loads where orjson would differ; bad JSON is a 400.

    orjson is faster, but refuses NaN, infinities and lone surrogates (pandas writes NaN for a
    missing value), and reads integers beyond 64 bits as floats, where json.loads keeps them exact.
    """
    if not body:
        raise MalformedBody(EMPTY)
    if body.count(b",") + body.count(b":") >= MAX_JSON_VALUES:  # in C; an upper bound of the values
        raise BodyTooLarge(
            f"The body holds more than {MAX_JSON_VALUES:,} JSON values; a batch is at most 10,000 flights."
        )
    if not LONG_DIGIT_RUN.search(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return _stdlib_json(body)


def _stdlib_json(body: bytes) -> Any:
    """json.loads of UTF-8 text, each of its refusals a 400 `invalid_json` saying why."""
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"Invalid JSON body: not UTF-8 ({exc.reason} at byte {exc.start}).") from exc
    except RecursionError as exc:  # json.loads gives up on very deep nesting
        raise MalformedBody("Invalid JSON body: nested too deeply.") from exc
    except json.JSONDecodeError as exc:
        raise MalformedBody(f"Invalid JSON body: {exc}.") from exc
    except ValueError as exc:  # an integer longer than Python converts (sys.get_int_max_str_digits())
        raise MalformedBody(
            f"Invalid JSON body: a number has more than {sys.get_int_max_str_digits()} digits."
        ) from exc
