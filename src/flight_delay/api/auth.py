"""Who may change the service: the admin bearer token, the routes that need it, the start-up policy.

An admin route's view method is marked `@admin_only(...)`; the ASGI middleware (transport/
middleware.py, AdminGate) checks its token from the headers before a byte of its body is read, and
the view checks again (for an embedding WSGI server and the tests), with the same `check_admin`.

Only `development` is open: every other environment (`production`, `testing`) applies production's
rules, so a server started with FLIGHT_DELAY_ENV=testing is no easier to load a model into.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, request
from werkzeug.exceptions import HTTPException

from flight_delay.errors import AdminTokenRequired, Unauthorized, UnsafeConfiguration, UploadDisabled

View = TypeVar("View", bound=Callable[..., Any])

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16
OPEN_ENVIRONMENT = "development"


def check_upload_policy(config: Mapping[str, Any]) -> None:
    """Refuses to run outside development with open model upload; warns loudly when development does."""
    if not config["ML_API_ALLOW_UPLOAD"]:
        return
    token = config["ML_API_ADMIN_TOKEN"]
    if config["ENV"] != OPEN_ENVIRONMENT and (token is None or len(token) < MIN_TOKEN_LENGTH):
        raise UnsafeConfiguration(
            f"Refusing to start ({config['ENV']}): POST /model/load/ would accept models from anyone. "
            "Set ML_API_ADMIN_TOKEN "
            f"(at least {MIN_TOKEN_LENGTH} characters, e.g. `openssl rand -hex 32`), or "
            "ML_API_ALLOW_UPLOAD=false and load models with `flight-delay load`, or run with "
            "FLIGHT_DELAY_ENV=development on a trusted machine."
        )
    if token is None and config["ENV"] == OPEN_ENVIRONMENT:
        log.warning(
            "DEVELOPMENT MODE: POST /model/load/ needs no token; anyone who can reach %s:%s can load a "
            "model. Set ML_API_ADMIN_TOKEN before exposing this server.",
            config["ML_API_HOST"],
            config["ML_API_PORT"],
        )


def admin_only(action: str, upload: bool = False) -> Callable[[View], View]:
    """Marks a view method as an admin action: its token is checked from the headers, before the body."""

    def mark(view: View) -> View:
        view.admin_action = AdminAction(action, upload)  # type: ignore[attr-defined]
        return view

    return mark


@dataclass(frozen=True)
class AdminAction:
    """What an admin route does (for its refusals' words) and whether it uploads a model."""

    action: str
    upload: bool = False


def admin_action_of(app: Flask, path: str, method: str) -> AdminAction | None:
    """The admin action a request would reach in the app (None: not an admin route, or no route)."""
    try:
        endpoint, _ = app.url_map.bind("localhost").match(path, method)
    except HTTPException:
        return None
    view_class = getattr(app.view_functions.get(endpoint), "view_class", None)
    handler = getattr(view_class, method.lower(), None)
    return getattr(handler, "admin_action", None)


def check_admin(config: Mapping[str, Any], authorization: str, admin: AdminAction) -> None:
    """Lets an admin action through, from its Authorization header alone; raises the refusal if not.

    Upload needs upload enabled; every admin action the admin token when one is configured, and a
    server outside development without one takes none (it could not tell an operator from anyone).
    """
    if admin.upload and not config["ML_API_ALLOW_UPLOAD"]:
        raise UploadDisabled(
            "Model upload over HTTP is disabled on this server (ML_API_ALLOW_UPLOAD=false); "
            "an operator loads models with `flight-delay load PATH`."
        )
    token = config["ML_API_ADMIN_TOKEN"]
    environment = config["ENV"]
    if token is None and environment != OPEN_ENVIRONMENT:
        raise AdminTokenRequired(
            f"{admin.action} is disabled: this {environment} server has no ML_API_ADMIN_TOKEN."
        )
    if token is None:
        return
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            f"{admin.action} needs the admin token: Authorization: Bearer <ML_API_ADMIN_TOKEN>."
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("The admin token is wrong.")


def check_admin_request() -> None:
    """Flask's before_request: an admin route's token checked before its view parses a byte of the body.

    Under `flight-delay serve` the ASGI gate refused a wrong token already; this is the same check
    for an embedding WSGI server and the test client.
    """
    if request.url_rule is None:
        return
    view_class = getattr(current_app.view_functions.get(request.url_rule.endpoint), "view_class", None)
    admin = getattr(getattr(view_class, request.method.lower(), None), "admin_action", None)
    if admin is not None:
        check_admin(current_app.config, request.headers.get("Authorization", ""), admin)
