"""Flask's side of who may do what: the start-up policy, the check of each request, the caller for views.

The decision is flight_delay/access.py's (the role each route needs, and the check of the token):
the ASGI middleware (transport/middleware.py, AccessGate) makes it before a byte of the body is
read, and Flask's before_request makes it again (for an embedding WSGI server and the tests),
keeping the caller (the token's name and role) for the view: `caller()`, the audit's `by`.

Only `development` is open: every other environment (`production`, `testing`) applies production's
rules, so a server started with FLIGHT_DELAY_ENV=testing is no easier to read or to load a model into.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import g, request

from flight_delay.access import OPEN_ENVIRONMENT, Policy
from flight_delay.api.services import services
from flight_delay.errors import UnsafeConfiguration
from flight_delay.tokens import ADMIN, MIN_TOKEN_LENGTH, PREDICT, READER, Caller

log = logging.getLogger(__name__)


def check_access_policy(config: Mapping[str, Any]) -> Policy:
    """The policy of a configuration; refuses to start with a bad token list, a short token outside
    development, or upload open to anyone; says at start who may read and predict."""
    try:
        policy = Policy.from_config(config)
    except ValueError as exc:
        raise UnsafeConfiguration(f"Refusing to start: {exc}.") from exc
    if config["ENV"] != OPEN_ENVIRONMENT:
        refuse_short_tokens(policy, config["ENV"])
    check_upload_policy(policy, config)
    log_read_policy(policy, config)
    return policy


def refuse_short_tokens(policy: Policy, environment: str) -> None:
    """Refuses a token shorter than MIN_TOKEN_LENGTH: any of them guards the history or the models."""
    short = policy.book.short()
    if short:
        raise UnsafeConfiguration(
            f"Refusing to start ({environment}): token {short[0].name!r} ({short[0].setting}) is shorter "
            f"than {MIN_TOKEN_LENGTH} characters; make each with e.g. `openssl rand -hex 32`."
        )


def check_upload_policy(policy: Policy, config: Mapping[str, Any]) -> None:
    """Refuses to start outside development with upload open to anyone; warns in development."""
    if not config["ML_API_ALLOW_UPLOAD"]:
        return
    if config["ENV"] != OPEN_ENVIRONMENT and not policy.book.grants(ADMIN):
        raise UnsafeConfiguration(
            f"Refusing to start ({config['ENV']}): POST /model/load/ would accept models from anyone. "
            "Set ML_API_ADMIN_TOKEN or ML_API_ADMIN_TOKENS=name:token,... (each token at least "
            f"{MIN_TOKEN_LENGTH} characters, e.g. `openssl rand -hex 32`), or "
            "ML_API_ALLOW_UPLOAD=false and load models with `flight-delay load PATH`, or run with "
            "FLIGHT_DELAY_ENV=development on a trusted machine."
        )
    if not policy.book.grants(ADMIN) and config["ENV"] == OPEN_ENVIRONMENT:
        log.warning(
            "DEVELOPMENT MODE: POST /model/load/ needs no token; anyone who can reach %s:%s can load a "
            "model. Set ML_API_ADMIN_TOKEN before exposing this server.",
            config["ML_API_HOST"],
            config["ML_API_PORT"],
        )


def log_read_policy(policy: Policy, config: Mapping[str, Any]) -> None:
    """Says who may read the history and monitoring, and who may predict: loudly when anyone may read."""
    where = f"{config['ML_API_HOST']}:{config['ML_API_PORT']}"
    if config["ENV"] == OPEN_ENVIRONMENT:
        log.info("DEVELOPMENT MODE: anyone who can reach %s reads the history and monitoring.", where)
    elif policy.public_read:
        log.warning(
            "READING IS PUBLIC (ML_API_PUBLIC_READ=true): anyone who can reach %s reads the history "
            "(every input sent), monitoring, the models and the audit, on purpose.",
            where,
        )
    elif not policy.book.grants(READER):
        log.warning("No reader or admin token: every read is refused (403); set ML_API_READER_TOKENS.")
    else:
        log.info("Reading needs a reader or admin token (%d reader tokens).", policy.book.count(READER))
    if policy.predict_needs_token:
        log.info("Predicting needs a predict or admin token (%d predict tokens).", policy.book.count(PREDICT))


def check_access_request() -> None:
    """Flask's before_request: the request's token checked against its route's need, before its body
    is parsed. Under `flight-delay serve` the ASGI gate refused a wrong token already."""
    caller = services().access.decide(request.method, request.path, request.headers.get("Authorization", ""))
    if caller is not None:
        g.caller = caller


def caller() -> Caller:
    """Who made this request (a route needing a token: checked before the view ran)."""
    return g.caller  # type: ignore[no-any-return]
