"""Who may load models: the admin bearer token, and the start-up policy that demands one."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

from flask import current_app, request

from flight_delay.errors import AdminTokenRequired, Unauthorized, UnsafeConfiguration, UploadDisabled

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16


def check_upload_policy(config: Mapping[str, Any]) -> None:
    """Refuses to run production with open model upload; warns loudly when development does."""
    if not config["ML_API_ALLOW_UPLOAD"]:
        return
    token = config["ML_API_ADMIN_TOKEN"]
    if config["ENV"] == "production" and (token is None or len(token) < MIN_TOKEN_LENGTH):
        raise UnsafeConfiguration(
            "Refusing to start: POST /model/load/ would accept models from anyone. Set ML_API_ADMIN_TOKEN "
            f"(at least {MIN_TOKEN_LENGTH} characters, e.g. `openssl rand -hex 32`), or "
            "ML_API_ALLOW_UPLOAD=false and load models with `flight-delay load`, or run with "
            "FLIGHT_DELAY_ENV=development on a trusted machine."
        )
    if token is None and config["ENV"] == "development":
        log.warning(
            "DEVELOPMENT MODE: POST /model/load/ needs no token; anyone who can reach %s:%s can load a "
            "model. Set ML_API_ADMIN_TOKEN before exposing this server.",
            config["ML_API_HOST"],
            config["ML_API_PORT"],
        )


def require_admin() -> None:
    """Lets the request through only when upload is enabled and it carries the admin token (if set)."""
    if not current_app.config["ML_API_ALLOW_UPLOAD"]:
        raise UploadDisabled(
            "Model upload over HTTP is disabled on this server (ML_API_ALLOW_UPLOAD=false); "
            "an operator loads models with `flight-delay load PATH`."
        )
    require_admin_token("Loading a model")


def require_admin_token(action: str) -> None:
    """Lets the request through only with the admin token; without one configured, only outside production."""
    token = current_app.config["ML_API_ADMIN_TOKEN"]
    if token is None and current_app.config["ENV"] == "production":
        # Upload may start without a token when disabled; other admin writes must not then be open.
        raise AdminTokenRequired(f"{action} is disabled: this production server has no ML_API_ADMIN_TOKEN.")
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(f"{action} needs the admin token: Authorization: Bearer <ML_API_ADMIN_TOKEN>.")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Unauthorized("The admin token is wrong.")
