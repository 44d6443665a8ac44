"""Flask's error handlers: domain and HTTP exceptions answered through the one renderer (replies.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from flight_delay.replies import JSON_HEADERS, REQUEST_ID, ErrorReply, Reply, render_error, request_id_from

__all__ = ["REQUEST_ID", "request_id_from"]

# What after_request's hooks set on every response (api/app.py): a rendered reply's own copies give way.
HEADERS_SET_BY_HOOKS = frozenset(name.lower() for name, _ in JSON_HEADERS)


def flask_reply(reply: Reply) -> Response:
    """The Flask response of a rendered answer (the after_request hooks add the headers Flask adds)."""
    response = current_app.response_class(reply.body, status=reply.status, mimetype="application/json")
    skip = {"content-type", "content-length", "x-request-id", "cache-control", *HEADERS_SET_BY_HOOKS}
    for name, value in reply.headers:
        if name.lower() not in skip:
            response.headers[name] = value
    return response


def error_response_doc(description: str, headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Documents a response in the error shape (and its headers), for responses no operation lists."""
    doc = {"description": description, "content": {"application/json": {"schema": "Error"}}}
    return {**doc, "headers": dict(headers)} if headers else doc


def request_id() -> str:
    """Returns the request's id, making one if the request failed before it was given one."""
    return g.setdefault("request_id", uuid.uuid4().hex)


def handle_error(exc: Exception) -> Response:
    """Answers a domain error with the status and code it carries, any other with a 503 or a 500."""
    return flask_reply(render_error(exc, request_id()))


def handle_http_error(exc: HTTPException) -> Response:
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
    reply = ErrorReply(exc.code or 500, code, message, messages, http_error_headers(exc))
    return flask_reply(render_error(reply, request_id()))


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
