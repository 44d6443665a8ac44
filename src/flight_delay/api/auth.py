"""Who may change the service: the admin bearer tokens, the routes that need them, the start-up policy.

An admin route's view method is marked `@admin_only(...)`; the ASGI middleware (transport/
middleware.py, AdminGate) checks its token from the headers before a byte of its body is read, and
Flask's before_request checks again (for an embedding WSGI server and the tests), with the same
`check_admin`, keeping the caller (flight_delay/tokens.py: the token's name and role) for the view:
`admin_caller()`, the audit's `by`.

Only `development` is open: every other environment (`production`, `testing`) applies production's
rules, so a server started with FLIGHT_DELAY_ENV=testing is no easier to load a model into.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Flask, current_app, g, request
from werkzeug.exceptions import HTTPException

from flight_delay.errors import UnsafeConfiguration, UploadDisabled
from flight_delay.tokens import MIN_TOKEN_LENGTH, OPEN_ENVIRONMENT, Caller, TokenBook, caller_for

View = TypeVar("View", bound=Callable[..., Any])

log = logging.getLogger(__name__)


def token_book(config: Mapping[str, Any]) -> TokenBook:
    """The admin tokens a configuration names (read once per distinct pair of settings)."""
    return _token_book(config.get("ML_API_ADMIN_TOKEN"), config.get("ML_API_ADMIN_TOKENS"))


@functools.lru_cache(maxsize=8)
def _token_book(single: str | None, named: str | None) -> TokenBook:
    """TokenBook.from_config, cached: every admin request asks."""
    return TokenBook.from_config({"ML_API_ADMIN_TOKEN": single, "ML_API_ADMIN_TOKENS": named})


def check_upload_policy(config: Mapping[str, Any]) -> None:
    """Refuses to start outside development with upload open or a bad token list; warns in development."""
    try:
        book = token_book(config)
    except ValueError as exc:
        raise UnsafeConfiguration(f"Refusing to start: {exc}.") from exc
    if not config["ML_API_ALLOW_UPLOAD"]:
        return
    if config["ENV"] != OPEN_ENVIRONMENT and (not book.configured() or book.shortest() < MIN_TOKEN_LENGTH):
        raise UnsafeConfiguration(
            f"Refusing to start ({config['ENV']}): POST /model/load/ would accept models from anyone. "
            "Set ML_API_ADMIN_TOKEN or ML_API_ADMIN_TOKENS=name:token,... (each token at least "
            f"{MIN_TOKEN_LENGTH} characters, e.g. `openssl rand -hex 32`), or "
            "ML_API_ALLOW_UPLOAD=false and load models with `flight-delay load`, or run with "
            "FLIGHT_DELAY_ENV=development on a trusted machine."
        )
    if not book.configured() and config["ENV"] == OPEN_ENVIRONMENT:
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


def check_admin(config: Mapping[str, Any], authorization: str, admin: AdminAction) -> Caller:
    """The admin taking an admin action, from its Authorization header alone; raises the refusal if none.

    Upload needs upload enabled; every admin action one of the admin tokens when any is configured,
    and a server outside development without one takes none (it could not tell an operator from anyone).
    """
    if admin.upload and not config["ML_API_ALLOW_UPLOAD"]:
        raise UploadDisabled(
            "Model upload over HTTP is disabled on this server (ML_API_ALLOW_UPLOAD=false); "
            "an operator loads models with `flight-delay load PATH`."
        )
    return caller_for(authorization, token_book(config), config["ENV"], admin.action)


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
        g.admin_caller = check_admin(current_app.config, request.headers.get("Authorization", ""), admin)


def admin_caller() -> Caller:
    """The admin who made this request (an @admin_only view's: checked before the view ran)."""
    return g.admin_caller
