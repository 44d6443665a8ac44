"""The Flask app factory."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request

from flight_delay import __version__
from flight_delay.api import body_limit, docs, errors, security, ui
from flight_delay.api import context as context_api
from flight_delay.api.auth import check_access_policy, check_access_request
from flight_delay.api.docs import FlightDelayApi
from flight_delay.api.health import blp as health_blp
from flight_delay.api.lifecycle import blp as lifecycle_blp
from flight_delay.api.metrics import blp as metrics_blp
from flight_delay.api.model import blp as model_blp
from flight_delay.api.monitoring import blp as monitoring_blp
from flight_delay.config import load_config
from flight_delay.observability.metrics import observe_request
from flight_delay.services import EXTENSION, build_services

API_DESCRIPTION = (
    "Arrival-delay predictions for flights leaving New York City in 2013, and the history of every "
    "prediction served. Every error, on any path, has one JSON shape (schema `Error`): `status` (the "
    "HTTP status), `code`, `message`, `errors` (per field, when fields are at fault) and `request_id`. "
    "Besides the statuses each operation lists, an unknown path answers 404 and a known path called "
    "with another method 405, in the same shape, with `Allow` listing the path's methods. OPTIONS on a "
    "known path answers 204 with that `Allow` and no body."
)


class FlightDelayFlask(Flask):
    """Flask, answering OPTIONS with 204 and `Allow` rather than an empty text/html 200."""

    def make_default_options_response(self) -> Response:
        """Answers OPTIONS on a known path: 204, `Allow` listing its methods, no body nor content type."""
        response = self.response_class(status=204)
        del response.headers["Content-Type"]
        response.headers["Allow"] = errors.allow_header(errors.path_methods(request.path))
        return response


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Builds the app and its services from the environment's configuration, `config` overriding it."""
    app = FlightDelayFlask("flight_delay")
    app.config.update(load_config(**dict(config or {})))
    check_access_policy(app.config)
    app.config.update(openapi_config())
    app.json.sort_keys = False
    # Every path answers with or without its trailing slash, never with a redirect.
    app.url_map.strict_slashes = False
    services = build_services(app.config)
    app.extensions[EXTENSION] = services
    services.monitoring.init_app(app)
    services.gauges.init_app(app)
    register_blueprints(app)
    errors.init_app(app)
    register_request_hooks(app)
    return app


def register_blueprints(app: Flask) -> None:
    """The documented API (flask-smorest), Swagger UI and the page for people."""
    api = FlightDelayApi(app)
    docs.document_components(api.spec)
    context_api.document_components(api.spec)
    api.register_blueprint(health_blp)
    api.register_blueprint(model_blp)
    api.register_blueprint(monitoring_blp)
    api.register_blueprint(lifecycle_blp)
    api.register_blueprint(metrics_blp)
    api.register_blueprint(context_api.blp)
    docs.init_app(app, api)
    app.register_blueprint(ui.blp)


def openapi_config() -> dict[str, Any]:
    """flask-smorest's settings: the document's title and version, where it and /docs are served."""
    return {
        "API_TITLE": "flight-delay",
        "API_VERSION": __version__,
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": docs.ASSETS_URL,
        "API_SPEC_OPTIONS": {"info": {"description": API_DESCRIPTION}},
    }


def register_request_hooks(app: Flask) -> None:
    """Times, tags and counts every request Flask answers; buffers a streamed body first."""
    app.before_request(_start_request)
    app.before_request(check_access_request)  # the route's token, before its body is parsed
    app.before_request(body_limit.buffer_streamed_body)  # before anything reads the body
    app.after_request(_tag_response)
    app.after_request(_observe_response)


def _start_request() -> None:
    """Times the request and gives it an id (the client's X-Request-ID when it is sane)."""
    g.started = time.perf_counter()
    g.request_id = errors.request_id_from(request.headers.get("X-Request-ID", ""))


def _tag_response(response: Response) -> Response:
    """Echoes the request id, forbids caching of API answers and adds the security headers."""
    response.headers["X-Request-ID"] = errors.request_id()
    # Swagger UI's static files keep Flask's revalidation headers; every API answer is private.
    response.headers.setdefault("Cache-Control", "no-store")
    return security.secure(response, _page_policy(response))


def _page_policy(response: Response) -> str | None:
    """The policy of the pages people open (Swagger UI at /docs, the UI at /ui/); None for the API."""
    if request.endpoint == docs.SWAGGER_UI_ENDPOINT:
        return security.docs_policy(response.get_data(as_text=True))
    if request.endpoint == ui.PAGE_ENDPOINT and response.status_code == 200:
        return security.UI_POLICY
    return None


def _observe_response(response: Response) -> Response:
    """Counts the response and its latency under its route's pattern (never the raw path)."""
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    elapsed = time.perf_counter() - g.started if "started" in g else None
    observe_request(endpoint, request.method, response.status_code, elapsed)
    return response
