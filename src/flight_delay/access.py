"""Who may do what: the role each route needs, by method and path, and the one check of a request's token.

Every route that needs a token is in RULES: the admin's changes, the reader's records (the history,
monitoring, the models, the audit, the replays: all the page reads) and the prediction routes of
every protocol (native, V2, MLflow). Everything else is open, on purpose, and listed in PUBLIC:
health and readiness (orchestrators probe them), `/metrics` (Prometheus scrapes it; it holds counts,
latencies and the active model's aggregate MAE and PSI, never an input or a request id), MLflow's
`/ping` and `/version`, V2's server routes, the OpenAPI document, Swagger UI and the page's own files
(it signs in, then reads the API). tests/test_access.py holds both lists against the app's routes,
so a new route is a decision, not a default.

`Policy` applies the settings: outside development reading needs a reader (or admin) token unless
ML_API_PUBLIC_READ makes it public; predicting needs a predict (or admin) token only when
ML_API_PREDICT_NEEDS_TOKEN says so; development reads and predicts openly, and takes admin actions
openly while no admin token is configured. Its check reads the Authorization header alone, so the
ASGI gate (transport/middleware.py) decides before a byte of the body is read, and Flask's
before_request (api/auth.py) decides alike for an embedding WSGI server and the tests.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flight_delay.errors import (
    AdminTokenRequired,
    FlightDelayError,
    Forbidden,
    PredictTokenRequired,
    ReaderTokenRequired,
    Unauthorized,
    UploadDisabled,
)
from flight_delay.tokens import ADMIN, ANONYMOUS, PREDICT, READER, Caller, TokenBook, bearer_token

OPEN_ENVIRONMENT = "development"  # the one environment where reading and predicting are open
PARAMETER = re.compile(r"\{(\w+)\}")
# How a refusal names the tokens that would do, and the settings that configure them.
WHO = {
    ADMIN: "an admin token",
    READER: "a reader or admin token",
    PREDICT: "a predict or admin token",
}
NO_TOKEN = {
    ADMIN: "admin token (ML_API_ADMIN_TOKEN or ML_API_ADMIN_TOKENS)",
    READER: (
        "reader or admin token (ML_API_READER_TOKENS, ML_API_ADMIN_TOKENS; "
        "ML_API_PUBLIC_READ=true makes reading public)"
    ),
    PREDICT: "predict or admin token (ML_API_PREDICT_TOKENS, ML_API_ADMIN_TOKENS)",
}
TOKEN_REQUIRED: dict[str, type[FlightDelayError]] = {
    ADMIN: AdminTokenRequired,
    READER: ReaderTokenRequired,
    PREDICT: PredictTokenRequired,
}


@dataclass(frozen=True)
class Need:
    """What a route needs: a role, the words its refusals use, and whether it uploads a model."""

    role: str
    action: str
    upload: bool = False


def path_regex(pattern: str) -> re.Pattern[str]:
    """A path pattern as a regex: `{name}` matches one segment, the trailing slash is optional."""
    segments = [
        f"(?P<{found[1]}>[^/]+)" if (found := PARAMETER.fullmatch(segment)) else re.escape(segment)
        for segment in pattern.strip("/").split("/")
    ]
    return re.compile(f"^/{'/'.join(segments)}/?$" if pattern.strip("/") else "^/$")


@dataclass(frozen=True)
class Rule:
    """A method and a path pattern (as the routes spell them), and what they need."""

    method: str
    pattern: str
    need: Need
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Compiles the pattern."""
        object.__setattr__(self, "regex", path_regex(self.pattern))


def admin(method: str, pattern: str, action: str, upload: bool = False) -> Rule:
    """A change to the service: an admin's."""
    return Rule(method, pattern, Need(ADMIN, action, upload))


def reading(pattern: str, what: str) -> Rule:
    """A GET of the service's records: a reader's (or an admin's)."""
    return Rule("GET", pattern, Need(READER, f"Reading {what}"))


def predicting(method: str, pattern: str, action: str) -> Rule:
    """A prediction route, or its protocol's model metadata: a predict token's when predictions need one."""
    return Rule(method, pattern, Need(PREDICT, action))


V2_MODEL = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
RULES = (
    admin("POST", "/model/load/", "Loading a model", upload=True),
    admin("POST", "/model/actuals/", "Recording actuals"),
    admin("POST", "/flights/", "Posting flights"),
    admin("POST", "/weather/", "Posting weather"),
    admin("POST", "/model/versions/{version}/activate", "Activating a version"),
    admin("POST", "/model/rollback", "Rolling back"),
    admin("PUT", "/model/traffic", "Changing the traffic split"),
    admin("POST", "/model/versions/{version}/replay", "Replaying recorded traffic"),
    reading("/model/", "the active model"),
    reading("/model/card", "the model card"),
    reading("/model/history/", "the history"),
    reading("/model/monitoring/", "monitoring"),
    reading("/model/versions/", "the versions"),
    reading("/model/traffic", "the traffic split"),
    reading("/model/replays/", "the replays"),
    reading("/model/replays/{replay_id}", "a replay"),
    reading("/model/audit/", "the audit"),
    predicting("POST", "/model/predict/", "Predicting"),
    predicting("POST", "/invocations", "Predicting"),
    *(predicting("POST", f"{path}/infer", "Predicting") for path in V2_MODEL),
    *(predicting("GET", path, "Reading the model's metadata") for path in V2_MODEL),
    *(predicting("GET", f"{path}/ready", "Asking whether the model is ready") for path in V2_MODEL),
)
# Open to anyone, whatever the settings (see the module's docstring for why each).
PUBLIC = (
    "/health/",
    "/health/live",
    "/health/ready",
    "/metrics/",
    "/ping",
    "/version",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/openapi.json",
    "/docs",
    "/docs/assets/{file}",
    "/ui/",
    "/ui/static/{file}",
    "/static/{file}",  # Flask's own static route (the package ships no such folder: a 404)
)


@functools.lru_cache(maxsize=4096)
def rule_for(method: str, path: str) -> Rule | None:
    """The rule a request falls under (HEAD as GET); None: an open route, or no route at all."""
    method = "GET" if method == "HEAD" else method
    for rule in RULES:
        if rule.method == method and rule.regex.match(path):
            return rule
    return None


@dataclass(frozen=True)
class Policy:
    """The configured tokens and settings, deciding each request from its method, path and header."""

    book: TokenBook
    environment: str
    public_read: bool = False
    predict_needs_token: bool = False
    allow_upload: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        """The policy of a configuration (its token lists parsed: a bad one raises ValueError)."""
        return cls(
            TokenBook.from_config(config),
            config["ENV"],
            bool(config.get("ML_API_PUBLIC_READ")),
            bool(config.get("ML_API_PREDICT_NEEDS_TOKEN")),
            bool(config.get("ML_API_ALLOW_UPLOAD", True)),
        )

    def need(self, method: str, path: str) -> Need | None:
        """What the request needs under these settings; None when anyone may make it."""
        rule = rule_for(method, path)
        if rule is None:
            return None
        role = rule.need.role
        if role == READER and (self.public_read or self.environment == OPEN_ENVIRONMENT):
            return None
        if role == PREDICT and not self.predict_needs_token:
            return None
        return rule.need

    def open_without_token(self, need: Need) -> bool:
        """Whether the need is met by anyone: development, with no token configured that could meet it."""
        return self.environment == OPEN_ENVIRONMENT and not self.book.grants(need.role)

    def check(self, need: Need, authorization: str) -> Caller:
        """The caller meeting the need, from the Authorization header alone; raises the refusal if none.

        401: no token, or none of this server's; 403: a token whose role may not, upload disabled, or
        no token configured that could (outside development; in development that is open).
        """
        if need.upload and not self.allow_upload:
            raise UploadDisabled(
                "Model upload over HTTP is disabled on this server (ML_API_ALLOW_UPLOAD=false); "
                "an operator loads models with `flight-delay load PATH`."
            )
        if not self.book.grants(need.role):
            if self.environment == OPEN_ENVIRONMENT:
                return ANONYMOUS
            raise token_required(need, self.environment)
        if bearer_token(authorization) is None:
            raise Unauthorized(f"{need.action} needs {WHO[need.role]}: Authorization: Bearer <token>.")
        caller = self.book.identify(authorization)
        if caller is None:
            raise Unauthorized("The token is wrong.")
        if not caller.may(need.role):
            raise Forbidden(
                f"{need.action} needs {WHO[need.role]}; {caller.name!r} is a {caller.role} token."
            )
        return caller

    def decide(self, method: str, path: str, authorization: str) -> Caller | None:
        """The caller of a request that needs one (None: anyone may); raises the refusal."""
        need = self.need(method, path)
        return None if need is None else self.check(need, authorization)


def token_required(need: Need, environment: str) -> FlightDelayError:
    """The 403 of a server outside development with no token configured that could meet the need."""
    message = f"{need.action} is disabled: this {environment} server has no {NO_TOKEN[need.role]}."
    return TOKEN_REQUIRED[need.role](message)
