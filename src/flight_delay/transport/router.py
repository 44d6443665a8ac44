"""Routes each request, its body read: to a transport's handler on the loop, or to Flask in a thread.

The transports' routes (native, V2, MLflow) are answered here, on the event loop, each through the
one data plane; their errors are rendered in the route's style. Everything else (model management,
the history, monitoring, health, the documents and the page) is Flask's, run by a2wsgi on
ML_API_THREADS threads, the body replayed from memory so that no thread waits for a client.
"""

from __future__ import annotations

import time
from typing import Any

from a2wsgi import WSGIMiddleware
from flask import Flask
from werkzeug.exceptions import HTTPException

from flight_delay.observability.metrics import observe_request
from flight_delay.replies import ErrorReply, ErrorStyle, native_style, render_error, request_id_from
from flight_delay.services import Services
from flight_delay.transport.http import (
    BODY,
    STARTED,
    HttpRequest,
    Message,
    Receive,
    Send,
    header,
    replaying,
    send_reply,
)
from flight_delay.transport.routes import Route


class Router:
    """Answers the transports' routes on the loop; hands every other request to Flask."""

    def __init__(self, app: Flask, services: Services, routes: list[Route]) -> None:
        self.services = services
        self.routes = routes
        self.url_map = app.url_map
        self.flask = WSGIMiddleware(_terminated_input(app.wsgi_app), workers=app.config["ML_API_THREADS"])

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Serves a request whose body BodyReader read (scope[BODY])."""
        found = self.match(scope["path"], scope["method"])
        if found is None:
            await self.flask(scope, replaying(scope[BODY], receive), send)  # type: ignore[arg-type]
            return
        route, params = found
        request_id = request_id_from(header(scope, b"x-request-id"))
        request = HttpRequest(scope, scope[BODY], request_id, scope[STARTED], params)
        try:
            reply = await route.handler(request, self.services)
        except Exception as exc:  # every failure answered in the route's own error style
            reply = render_error(exc, request_id, route.errors)
        await send_reply(send, reply)
        observe_request(route.pattern, scope["method"], reply.status, time.perf_counter() - scope[STARTED])

    def match(self, path: str, method: str) -> tuple[Route, dict[str, str]] | None:
        """The transport route of the request and its path parameters; None for Flask's requests."""
        allowed = []
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                if route.method == method:
                    return route, params
                allowed.append(route)
        if allowed:  # a transport's path with another method: answered here, 405 with Allow
            methods = sorted({route.method for route in allowed})
            return Route(method, path, _not_allowed(methods, allowed[0].errors), allowed[0].errors), {}
        return None

    def describe(self, path: str, method: str) -> tuple[str, ErrorStyle]:
        """The route's name for metrics and its error style, for a request refused before it is routed."""
        for route in self.routes:
            if route.match(path) is not None:
                return route.pattern, route.errors
        try:
            rule, _ = self.url_map.bind("localhost").match(path, method, return_rule=True)
        except HTTPException:
            return "unmatched", native_style
        return rule.rule, native_style


def _not_allowed(methods: list[str], style: ErrorStyle) -> Any:
    """A handler answering 405 in the route's error style, listing the path's methods in Allow."""

    async def not_allowed(request: HttpRequest, services: Services) -> Any:
        """Refuses the method."""
        message = "The method is not allowed for the requested URL."
        allow = {"Allow": ", ".join(methods)}
        reply = ErrorReply(405, "method_not_allowed", message, None, allow)
        return render_error(reply, request.request_id, style)

    return not_allowed


def _terminated_input(wsgi_app: Any) -> Any:
    """Tells Flask the body stream ends by itself, as gunicorn's does, so a chunked body is readable."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        """Marks the input terminated (the ASGI server ends every body) and calls the app."""
        environ["wsgi.input_terminated"] = True
        return wsgi_app(environ, start_response)

    return app
