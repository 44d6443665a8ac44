"""What every answer is made of, whoever writes it: JSON with our headers, and every error rendered once.

Answers are written by Flask's views, by the transports on the event loop (native, V2, MLflow) and
by the HTTP protocol itself (a request head refused before any app sees it). Each of them renders an
error through `render_error`: one mapping from exceptions to status, code, message and headers
(`reply_for`), and the one error shape (`error_body`), unless a protocol has its own (V2's
`{"error": ...}`, MLflow's `{"error_code", "message"}`), which it passes in.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError

from flight_delay.errors import FlightDelayError
from flight_delay.history.database import database_error_reason

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# The API answers data only: nothing in a response may load, run or be framed.
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"
JSON_HEADERS = [*SECURITY_HEADERS.items(), ("Content-Security-Policy", JSON_POLICY)]
JSON = "application/json"
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class Reply:
    """A whole answer: status, headers (name, value) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class ErrorReply:
    """What an error answer says: its status, code, message, per-field errors and extra headers."""

    status: int
    code: str
    message: str
    errors: Any = None
    headers: Mapping[str, str] | None = None


# How a protocol answers an error: its status and body, from the mapped error and the request id.
ErrorStyle = Callable[[ErrorReply, str], tuple[int, Any]]


def answer_headers(
    content_length: int, request_id: str, extra: Iterable[tuple[str, str]] = (), content_type: str = JSON
) -> list[tuple[str, str]]:
    """The headers of an API answer, in the order Flask's hooks give them."""
    return [
        ("Content-Type", content_type),
        ("Content-Length", str(content_length)),
        *extra,
        ("X-Request-ID", request_id),
        ("Cache-Control", "no-store"),
        *JSON_HEADERS,
    ]


def json_reply(
    status: int,
    payload: Any,
    request_id: str,
    extra: Iterable[tuple[str, str]] = (),
    content_type: str = JSON,
) -> Reply:
    """A JSON answer with our headers (compact, one line, as Flask writes it)."""
    body = orjson.dumps(payload, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
    return Reply(status, answer_headers(len(body), request_id, extra, content_type), body)


def error_body(reply: ErrorReply, request_id: str) -> dict[str, Any]:
    """The one error shape of this API: status, code, message, errors (per field), request_id."""
    body: dict[str, Any] = {"status": reply.status, "code": reply.code, "message": reply.message}
    if reply.errors:
        body["errors"] = reply.errors
    body["request_id"] = request_id
    return body


def reply_for(exc: BaseException) -> ErrorReply:
    """Says how the API answers an exception, logging what needs it."""
    if isinstance(exc, FlightDelayError):
        if exc.status >= 500:
            log.warning("%s: %s", exc.code, exc.message, exc_info=exc.__cause__)
        return ErrorReply(exc.status, exc.code, exc.message, exc.errors, exc.headers)
    if isinstance(exc, SQLAlchemyError):  # failed outside a service's own handling
        log.warning("database error: %s", exc)
        reason = database_error_reason(exc)
        return ErrorReply(503, "database_unavailable", f"The database is unavailable: {reason}.")
    log.error("unhandled error", exc_info=exc)
    return ErrorReply(500, "internal_error", "Internal server error.")


def request_id_from(given: str) -> str:
    """The client's X-Request-ID when it is sane, else a new id."""
    return given if REQUEST_ID.match(given) else uuid.uuid4().hex


def native_style(reply: ErrorReply, request_id: str) -> tuple[int, Any]:
    """This API's own way: the error's status, the one error shape."""
    return reply.status, error_body(reply, request_id)


def render_error(
    error: BaseException | ErrorReply, request_id: str | None = None, style: ErrorStyle = native_style
) -> Reply:
    """The answer to an error: mapped once, in the one error shape unless a protocol has its own."""
    reply = error if isinstance(error, ErrorReply) else reply_for(error)
    request_id = request_id or uuid.uuid4().hex
    status, body = style(reply, request_id)
    return json_reply(status, body, request_id, (reply.headers or {}).items())
