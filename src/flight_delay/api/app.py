"""The Flask app factory."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, request

from flight_delay import __version__
from flight_delay.api import docs, errors
from flight_delay.api.auth import check_upload_policy
from flight_delay.api.health import blp as health_blp
from flight_delay.api.metrics import blp as metrics_blp
from flight_delay.api.model import blp as model_blp
from flight_delay.api.schemas import FlightSchema, PredictRequestSchema
from flight_delay.config import load_config
from flight_delay.extensions import api, db, registry
from flight_delay.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Builds the app from the environment's configuration, with `config` overriding it."""
    app = Flask("flight_delay")
    app.config.update(load_config(**dict(config or {})))
    check_upload_policy(app.config)
    app.config.update(
        API_TITLE="flight-delay",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=docs.ASSETS_URL,
    )
    app.json.sort_keys = False
    # Every path answers with or without its trailing slash, never with a redirect.
    app.url_map.strict_slashes = False
    db.init_app(app)
    registry.init_app(app, db)
    api.init_app(app)
    # The predict body is documented as oneOf these two, so they are named components.
    api.spec.components.schema("Flight", schema=FlightSchema)
    api.spec.components.schema("PredictRequest", schema=PredictRequestSchema)
    api.spec.components.security_scheme(
        "adminToken", {"type": "http", "scheme": "bearer", "description": "ML_API_ADMIN_TOKEN"}
    )
    api.register_blueprint(health_blp)
    api.register_blueprint(model_blp)
    api.register_blueprint(metrics_blp)
    docs.init_app(app)
    errors.init_app(app)
    app.before_request(_start_request)
    app.after_request(_tag_response)
    app.after_request(_observe_response)
    return app


def _start_request() -> None:
    """Times the request and gives it an id (the client's X-Request-ID when it is sane)."""
    g.started = time.perf_counter()
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if REQUEST_ID.match(given) else uuid.uuid4().hex


def _tag_response(response: Response) -> Response:
    """Echoes the request id and forbids caching of API answers."""
    response.headers["X-Request-ID"] = g.get("request_id", "")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _observe_response(response: Response) -> Response:
    """Counts the response and its latency under its route's pattern (never the raw path)."""
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    HTTP_REQUESTS.labels(endpoint, request.method, str(response.status_code)).inc()
    if "started" in g:
        HTTP_LATENCY.labels(endpoint, request.method).observe(time.perf_counter() - g.started)
    return response
