"""One JSON error shape for every error, mapped centrally from domain and HTTP exceptions."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

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


def error_response_doc(description: str, headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Documents a response in the error shape (and its headers), for responses no operation lists."""
    doc = {"description": description, "content": {"application/json": {"schema": "Error"}}}
    return {**doc, "headers": dict(headers)} if headers else doc


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
    routing_failed = isinstance(exc, NotFound) and request.url_rule is None
    if routing_failed and (methods := path_methods(request.path)):
        exc = MethodNotAllowed(valid_methods=sorted(methods))
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if isinstance(messages, dict) and len(messages) == 1 and isinstance(next(iter(messages.values())), dict):
        messages = next(iter(messages.values()))  # drop webargs' location key ("json", "query")
    code = (exc.name or "error").lower().replace(" ", "_")
    message = exc.description or exc.name or "error"
    if exc.code == 422:
        code, message = "invalid_input", "The request is invalid; see errors for each field."
    return error_response(exc.code or 500, code, message, messages, http_error_headers(exc))


def http_error_headers(exc: HTTPException) -> dict[str, str]:
    """The headers an HTTP error must carry besides the body's: `Allow` on a 405 (RFC 9110 15.5.6)."""
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        return {"Allow": allow_header(exc.valid_methods)}
    return {}


def path_methods(path: str) -> set[str]:
    """The methods a path answers, spelt with or without its trailing slash (empty: unknown path).

    With strict slashes off, werkzeug routes /model/predict to /model/predict/, yet finds no methods
    for it when the method is wrong: the slashed spelling is asked too, so the answer is a 405.
    """
    adapter = current_app.create_url_adapter(request)
    if adapter is None:
        return set()
    spellings = (path, path.rstrip("/") + "/")
    return {method for spelling in spellings for method in adapter.allowed_methods(spelling)}


def allow_header(methods: Iterable[str]) -> str:
    """Renders a path's methods as an `Allow` value, sorted so every answer lists them alike."""
    return ", ".join(sorted({method.upper() for method in methods}))


def init_app(app: Flask) -> None:
    """Registers the handlers (after flask-smorest's, which they replace)."""
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_error)
