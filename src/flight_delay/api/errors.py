"""One JSON error shape for every error, mapped centrally from domain and HTTP exceptions."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from flight_delay.errors import FlightDelayError
from flight_delay.history.database import database_error_reason

log = logging.getLogger(__name__)


def error_response(
    status: int, code: str, message: str, errors: Any = None, headers: dict[str, str] | None = None
) -> tuple[Response, int]:
    """Builds the error body every endpoint uses: status, code, message, errors, request_id."""
    body: dict[str, Any] = {"status": status, "code": code, "message": message}
    if errors:
        body["errors"] = errors
    body["request_id"] = request_id()
    response = jsonify(body)
    response.headers.update(headers or {})
    return response, status


def error_response_doc(description: str) -> dict[str, Any]:
    """Documents a response in the error shape, for responses no operation lists."""
    return {"description": description, "content": {"application/json": {"schema": "Error"}}}


def request_id() -> str:
    """Returns the request's id, making one if the request failed before it was given one."""
    return g.setdefault("request_id", uuid.uuid4().hex)


def handle_domain_error(exc: FlightDelayError) -> tuple[Response, int]:
    """Answers a domain error with the status and code it carries."""
    if exc.status >= 500:
        log.warning("%s: %s", exc.code, exc.message, exc_info=exc.__cause__)
    return error_response(exc.status, exc.code, exc.message, exc.errors, exc.headers)


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


def handle_database_error(exc: SQLAlchemyError) -> tuple[Response, int]:
    """Answers 503 when the database fails outside a service's own handling."""
    log.warning("database error: %s", exc)
    return error_response(
        503, "database_unavailable", f"The database is unavailable: {database_error_reason(exc)}."
    )


def handle_unexpected(exc: Exception) -> tuple[Response, int]:
    """Logs the traceback and answers 500 without leaking it."""
    log.exception("unhandled error")
    return error_response(500, "internal_error", "Internal server error.")


def init_app(app: Flask) -> None:
    """Registers the handlers (after flask-smorest's, which they replace)."""
    app.register_error_handler(FlightDelayError, handle_domain_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(SQLAlchemyError, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
