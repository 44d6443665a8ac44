"""One JSON error shape for every error, mapped centrally from domain and HTTP exceptions."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from flight_delay.errors import FlightDelayError
from flight_delay.history.database import database_error_reason

log = logging.getLogger(__name__)

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


@dataclass(frozen=True)
class ErrorReply:
    """What an error answer says: its status, code, message, per-field errors and extra headers."""

    status: int
    code: str
    message: str
    errors: Any = None
    headers: Mapping[str, str] | None = None


def error_body(status: int, code: str, message: str, errors: Any, request_id: str) -> dict[str, Any]:
    """The error shape every endpoint answers with: status, code, message, errors, request_id."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if errors:
        body["errors"] = errors
    body["request_id"] = request_id
    return body


def error_response(
    status: int, code: str, message: str, errors: Any = None, headers: Mapping[str, str] | None = None
) -> tuple[Response, int]:
    """Builds the error response of the request in flight (Flask's)."""
    response = jsonify(error_body(status, code, message, errors, request_id()))
    response.headers.update(headers or {})
    return response, status


def error_response_doc(description: str) -> dict[str, Any]:
    """Documents a response in the error shape, for responses no operation lists."""
    return {"description": description, "content": {"application/json": {"schema": "Error"}}}


def request_id() -> str:
    """Returns the request's id, making one if the request failed before it was given one."""
    return g.setdefault("request_id", uuid.uuid4().hex)


def request_id_from(given: str) -> str:
    """The client's X-Request-ID when it is sane, else a new id."""
    return given if REQUEST_ID.match(given) else uuid.uuid4().hex


def reply_for(exc: Exception) -> ErrorReply:
    """Says how the API answers an exception raised outside HTTP's own errors, logging what needs it."""
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


def handle_error(exc: Exception) -> tuple[Response, int]:
    """Answers a domain error with the status and code it carries, any other with a 503 or a 500."""
    reply = reply_for(exc)
    return error_response(reply.status, reply.code, reply.message, reply.errors, reply.headers)


def handle_http_error(exc: HTTPException) -> tuple[Response, int]:
    """Answers werkzeug's HTTP errors, including webargs' 422 with its per-field messages."""
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if isinstance(messages, dict) and len(messages) == 1 and isinstance(next(iter(messages.values())), dict):
        messages = next(iter(messages.values()))  # drop webargs' location key ("json", "query")
    code = (exc.name or "error").lower().replace(" ", "_")
    message = exc.description or exc.name or "error"
    if exc.code == 422:
        code, message = "invalid_input", "The request is invalid; see errors for each field."
    return error_response(exc.code or 500, code, message, messages)


def init_app(app: Flask) -> None:
    """Registers the handlers (after flask-smorest's, which they replace)."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_error)
