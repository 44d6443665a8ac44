"""A model's life under /model/: versions, activation and rollback, the traffic split, replays, the audit.

Views are thin: each change needs an admin token and each read a reader's (access.py: checked from
the headers before the body is read), then the registry or the replays service does the work, the
caller's name going to the audit.
"""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import request
from flask.views import MethodView

from flight_delay.api.auth import caller
from flight_delay.api.blueprint import INTERNAL_ERROR, TOO_LARGE, ApiBlueprint
from flight_delay.api.lifecycle_schemas import (
    MODEL_VERSION,
    REPLAY_ID,
    AuditSchema,
    ReasonSchema,
    ReplayRequestSchema,
    ReplaySchema,
    ReplaysQuerySchema,
    ReplaysSchema,
    TrafficChangeSchema,
    TrafficSchema,
    VersionsSchema,
)
from flight_delay.api.services import services
from flight_delay.errors import UnknownModelVersion, UnknownReplay
from flight_delay.serving.lifecycle import Actor, TrafficChange

blp = ApiBlueprint(
    "lifecycle", __name__, url_prefix="/model", description="Versions, traffic split, rollback, replay, audit"
)

VERSION_PARAMETER = {
    "in": "path",
    "name": "version",
    "required": True,
    "schema": {"type": "string", "pattern": MODEL_VERSION.pattern},
}
REPLAY_PARAMETER = {
    "in": "path",
    "name": "replay_id",
    "required": True,
    "schema": {"type": "string", "pattern": REPLAY_ID.pattern},
}


def actor(body: dict[str, Any] | None = None) -> Actor:
    """Who asks (the admin checked before the view) and why: the body's reason, else X-Reason."""
    reason = (body or {}).get("reason") or request.headers.get("X-Reason") or None
    return Actor(caller().name, reason)


def checked_version(version: str) -> str:
    """A path's model version; one that cannot be a version is unknown (404), like one never loaded."""
    if not MODEL_VERSION.fullmatch(version):
        raise UnknownModelVersion(f"No model of version {version[:80]!r} was ever loaded here.")
    return version


@blp.route("/versions/")
class Versions(MethodView):
    """Every stored model version."""

    @blp.response(200, VersionsSchema)
    @blp.error_responses({503: "The database is unavailable", **INTERNAL_ERROR})
    def get(self) -> dict[str, Any]:
        """Lists every version, newest upload first: its stage, share of requests, shadow, times."""
        return {"versions": services().registry.versions()}


@blp.route("/versions/<version>/activate")
class Activate(MethodView):
    """Makes a stored version the active one."""

    @blp.doc(parameters=[VERSION_PARAMETER])
    @blp.arguments(ReasonSchema, required=False)
    @blp.response(200, TrafficSchema)
    @blp.error_responses(
        {400: "The body is not valid JSON", 404: "No such version", **TOO_LARGE}
        | {415: "The body is not application/json", 422: "Invalid body", 503: "The database is unavailable"}
        | INTERNAL_ERROR
    )
    def post(self, body: dict[str, Any], version: str) -> dict[str, Any]:
        """Makes the version active for every worker and replica; a canary or shadow of it is cleared.

        Already active: nothing changes. The answer is the split as it is then.
        """
        return services().registry.activate(checked_version(version), actor(body)).as_dict()


@blp.route("/rollback")
class Rollback(MethodView):
    """Returns to the previously active version."""

    @blp.arguments(ReasonSchema, required=False)
    @blp.response(200, TrafficSchema)
    @blp.error_responses(
        {400: "The body is not valid JSON", 409: "No version was active before this one"}
        | TOO_LARGE
        | {415: "The body is not application/json", 422: "Invalid body", 503: "The database is unavailable"}
        | INTERNAL_ERROR
    )
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Makes the previously active version active again (repeated, it goes further back)."""
        return services().registry.rollback(actor(body)).as_dict()


@blp.route("/traffic")
class Traffic(MethodView):
    """The traffic split: the active version, a canary, a shadow."""

    @blp.response(200, TrafficSchema)
    @blp.error_responses({503: "The database is unavailable", **INTERNAL_ERROR})
    def get(self) -> dict[str, Any]:
        """The split served now (every worker and replica within MODEL_REFRESH_MS of a change)."""
        return services().registry.traffic().as_dict()

    @blp.arguments(TrafficChangeSchema)
    @blp.response(200, TrafficSchema)
    @blp.error_responses(
        {400: "The body is not valid JSON", 404: "No such version", **TOO_LARGE}
        | {415: "The body is not application/json"}
        | {422: "Invalid body, a percent outside 0-50, or a canary or shadow of the active version"}
        | {503: "The database is unavailable", **INTERNAL_ERROR}
    )
    def put(self, body: dict[str, Any]) -> dict[str, Any]:
        """Sets the canary ({"version", "percent"}, 0-50) and the shadow; null clears one; all or nothing."""
        canary = body.get("canary")
        change = TrafficChange(
            canary=None if canary is None else (canary["version"], float(canary["percent"])),
            shadow=body.get("shadow"),
            sets_canary="canary" in body,
            sets_shadow="shadow" in body,
        )
        return services().registry.set_traffic(change, actor(body)).as_dict()


@blp.route("/versions/<version>/replay")
class Replay(MethodView):
    """Replays recorded traffic with a version."""

    @blp.doc(parameters=[VERSION_PARAMETER])
    @blp.arguments(ReplayRequestSchema, required=False)
    @blp.response(200, ReplaySchema)
    @blp.alt_response(202, schema=ReplaySchema, description="Running: poll status_url")
    @blp.error_responses(
        {400: "The body is not valid JSON", 404: "No such version", **TOO_LARGE}
        | {415: "The body is not application/json", 422: "Invalid window", 503: "The database is unavailable"}
        | INTERNAL_ERROR
    )
    def post(self, body: dict[str, Any], version: str) -> Any:
        """Scores the window's recorded flights that have an actual with the version, beside what was served.

        A window of at most REPLAY_WAIT_FLIGHTS such flights answers 200 with the comparison; a larger
        one answers 202 at once, with a status_url that answers the same once done.
        """
        window = (body.get("since"), body.get("until"))
        done, answer = services().replays.start(checked_version(version), window, caller().name)
        return answer if done else (answer, 202)


@blp.route("/replays/")
class Replays(MethodView):
    """The newest replays."""

    @blp.arguments(ReplaysQuerySchema, location="query", unknown=ma.RAISE)
    @blp.response(200, ReplaysSchema)
    @blp.error_responses({422: "Invalid limit", 503: "The database is unavailable", **INTERNAL_ERROR})
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Lists the newest replays (at most `limit`), newest first, each as its status URL answers."""
        return {"replays": services().replays.recent(query["limit"])}


@blp.route("/replays/<replay_id>")
class ReplayStatus(MethodView):
    """A replay's status."""

    @blp.doc(parameters=[REPLAY_PARAMETER])
    @blp.response(200, ReplaySchema)
    @blp.alt_response(202, schema=ReplaySchema, description="Still running")
    @blp.error_responses({404: "No such replay", 503: "The database is unavailable", **INTERNAL_ERROR})
    def get(self, replay_id: str) -> Any:
        """The replay's comparison once done (200), its progress while it runs (202), or why it failed."""
        if not REPLAY_ID.fullmatch(replay_id):
            raise UnknownReplay(f"No replay has the id {replay_id[:80]!r}.")
        answer = services().replays.status(replay_id)
        return (answer, 202) if answer["status"] == "running" else answer


@blp.route("/audit/")
class Audit(MethodView):
    """The audit of every change to the models served."""

    @blp.response(200, AuditSchema)
    @blp.error_responses({503: "The database is unavailable", **INTERNAL_ERROR})
    def get(self) -> dict[str, Any]:
        """Every upload, activation, rollback and traffic change, oldest first, with who and why."""
        return {"events": services().registry.audit()}
