"""A model's life in the database: stages, the traffic split, activations and rollbacks, the audit.

Functions over one session (the registry opens the transaction). A version's stage is not stored: it
is `active` when the newest activation names it, `retired` when an older one does, else `candidate`
(uploaded, never active). The traffic split is the one model_traffic row: a canary version serving a
share of the requests (chosen by a stable hash of each request's X-Request-ID, `canary_bucket`), and
a shadow version scoring every prediction after its answer. Every change takes the traffic row's lock
first (`lock_changes`), then appends its audit events in the same transaction.

Activations form a stack: each names the activation it replaced (`previous_id`), and a rollback
returns to that one, its own row pointing where the undone one pointed, so successive rollbacks
unwind the activations one by one.
"""

from __future__ import annotations

import getpass
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from flight_delay.errors import InvalidTraffic, NoPreviousVersion, UnknownModelVersion
from flight_delay.history.database import insert_absent
from flight_delay.history.models import (
    REASON_LENGTH,
    AuditEvent,
    ModelActivation,
    ModelTraffic,
    ModelVersion,
    utcnow,
)

ACTIVE, CANDIDATE, RETIRED = "active", "candidate", "retired"
UPLOAD, ACTIVATE, ROLLBACK, CANARY, SHADOW = "upload", "activate", "rollback", "canary", "shadow"
TRAFFIC_ID = 1
MAX_CANARY_PERCENT = 50
BUCKETS = 10_000  # a canary's share is kept to a hundredth of a percent


@dataclass(frozen=True)
class Actor:
    """Who changes the models served (the admin token's name) and why (optional)."""

    by: str
    reason: str | None = None


def cli_actor(reason: str | None) -> Actor:
    """Who changes the models from the command line (DATABASE_URL directly): `cli:<the system's user>`."""
    return Actor(f"cli:{getpass.getuser()}"[:64], reason)


@dataclass(frozen=True)
class Traffic:
    """What the database says is served: the active version, the canary and its share, the shadow."""

    active: str | None
    canary: str | None = None
    percent: float = 0.0
    shadow: str | None = None
    previous: str | None = None  # the version a rollback returns to (read only when asked for)
    changed_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        """The document GET /model/traffic answers."""
        canary = None if self.canary is None else {"version": self.canary, "percent": self.percent}
        return {
            "active": self.active,
            "canary": canary,
            "shadow": self.shadow,
            "rollback_to": self.previous,
            "changed_at": self.changed_at,
        }


@dataclass(frozen=True)
class TrafficChange:
    """A PUT /model/traffic: each part given is set (None clears it); a part not given is left alone."""

    canary: tuple[str, float] | None = None
    shadow: str | None = None
    sets_canary: bool = False
    sets_shadow: bool = False


def canary_bucket(request_id: str) -> int:
    """The request's bucket in [0, BUCKETS): the same id, the same bucket, in every process.

    A keyed-free BLAKE2b of the id (Python's hash() is salted per process, so workers would disagree).
    """
    digest = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def canary_share(percent: float) -> int:
    """A canary's percent of requests as a count of buckets."""
    return round(percent * BUCKETS / 100)


def newest_activation(session: Session) -> ModelActivation | None:
    """The newest activation row: the active model's."""
    return session.scalars(select(ModelActivation).order_by(ModelActivation.id.desc()).limit(1)).first()


def traffic_row(session: Session) -> ModelTraffic:
    """The traffic row (made if missing)."""
    row = session.get(ModelTraffic, TRAFFIC_ID)
    if row is None:
        insert_absent(session, ModelTraffic, {"id": TRAFFIC_ID, "canary_percent": 0.0, "revision": 0})
        row = session.get(ModelTraffic, TRAFFIC_ID)
    return row


def read_traffic(session: Session, with_previous: bool = False, active: str | None = None) -> Traffic:
    """The active version (read unless given) and the split; where a rollback goes, when asked."""
    newest = newest_activation(session) if active is None or with_previous else None
    if newest is not None:
        active = newest.version
    row = traffic_row(session)
    previous = None
    if newest is not None and with_previous and newest.previous_id is not None:
        previous = session.get(ModelActivation, newest.previous_id).version
    return Traffic(
        active=active,
        canary=row.canary_version,
        percent=row.canary_percent if row.canary_version else 0.0,
        shadow=row.shadow_version,
        previous=previous,
        changed_at=row.changed_at,
    )


def lock_changes(session: Session) -> ModelTraffic:
    """Takes the lifecycle's write lock: bumps the traffic row's revision before reading anything.

    The first statement is a write, so a concurrent change waits for this transaction (PostgreSQL's
    row lock, SQLite's write lock) instead of acting on what this one is about to change.
    """
    bump = (
        update(ModelTraffic).where(ModelTraffic.id == TRAFFIC_ID).values(revision=ModelTraffic.revision + 1)
    )
    if session.execute(bump).rowcount == 0:  # the row was removed by hand: made again
        insert_absent(session, ModelTraffic, {"id": TRAFFIC_ID, "canary_percent": 0.0, "revision": 1})
    return session.get(ModelTraffic, TRAFFIC_ID, populate_existing=True)


def append_event(
    session: Session,
    action: str,
    actor: Actor,
    version: str | None,
    previous: str | None = None,
    percent: float | None = None,
) -> None:
    """Appends one audit event."""
    reason = actor.reason[:REASON_LENGTH] if actor.reason else None
    session.add(
        AuditEvent(
            at=utcnow(),
            action=action,
            version=version,
            previous=previous,
            percent=percent,
            by=actor.by,
            reason=reason,
        )
    )
    session.flush()  # numbered now: events of one transaction keep their order


def known_version(session: Session, version: str) -> ModelVersion:
    """The version's row; an unknown version is a 404 naming it."""
    row = session.get(ModelVersion, version)
    if row is None:
        raise UnknownModelVersion(f"No model of version {version} was ever loaded here.")
    return row


def activate(session: Session, version: str, actor: Actor, action: str = ACTIVATE) -> bool:
    """Makes a known version active (False: it already was, nothing changed); clears its traffic."""
    row = lock_changes(session)
    known_version(session, version)
    current = newest_activation(session)
    if current is not None and current.version == version:
        return False
    previous_id = None if current is None else current.id
    session.add(ModelActivation(version=version, activated_at=utcnow(), previous_id=previous_id))
    row.changed_at = utcnow()
    previous = None if current is None else current.version
    append_event(session, action, actor, version, previous)
    clear_traffic_of(session, {version, previous}, actor)
    return True


def rollback(session: Session, actor: Actor) -> str:
    """Makes the previously active version active again; 409 when there is none. Returns it."""
    row = lock_changes(session)
    current = newest_activation(session)
    if current is None or current.previous_id is None:
        active = "no model is active" if current is None else f"{current.version[:12]} is the first one"
        raise NoPreviousVersion(f"There is no previous version to roll back to: {active}.")
    target = session.get(ModelActivation, current.previous_id)
    session.add(
        ModelActivation(version=target.version, activated_at=utcnow(), previous_id=target.previous_id)
    )
    row.changed_at = utcnow()
    append_event(session, ROLLBACK, actor, target.version, current.version)
    clear_traffic_of(session, {target.version, current.version}, actor)
    return target.version


def clear_traffic_of(session: Session, versions: set[str | None], actor: Actor) -> None:
    """Clears a canary or shadow of the versions (becoming active, or retired), each change audited."""
    row = session.get(ModelTraffic, TRAFFIC_ID)
    versions = versions - {None}
    if row.canary_version in versions:
        append_event(session, CANARY, actor, None, row.canary_version, 0.0)
        row.canary_version, row.canary_percent = None, 0.0
    if row.shadow_version in versions:
        append_event(session, SHADOW, actor, None, row.shadow_version)
        row.shadow_version = None


def set_traffic(session: Session, change: TrafficChange, actor: Actor) -> None:
    """Applies a traffic change, all of it or (refused) nothing; each part that changes is audited."""
    row = lock_changes(session)
    for version in (change.canary[0] if change.canary else None, change.shadow):
        if version is not None:
            known_version(session, version)
    active = newest_activation(session)
    refuse_active(change, None if active is None else active.version)
    if change.sets_canary:
        version, percent = change.canary or (None, 0.0)
        if (row.canary_version, row.canary_percent) != (version, percent):
            append_event(session, CANARY, actor, version, row.canary_version, percent)
            row.canary_version, row.canary_percent, row.changed_at = version, percent, utcnow()
    if change.sets_shadow and row.shadow_version != change.shadow:
        append_event(session, SHADOW, actor, change.shadow, row.shadow_version)
        row.shadow_version, row.changed_at = change.shadow, utcnow()


def refuse_active(change: TrafficChange, active: str | None) -> None:
    """A canary or shadow of the active version is a 422: it serves every request already."""
    errors: dict[str, Any] = {}
    if change.canary is not None and change.canary[0] == active:
        errors["canary"] = {"version": ["The active version cannot be a canary: it serves the rest already."]}
    if change.shadow is not None and change.shadow == active:
        errors["shadow"] = ["The active version cannot shadow itself: it answers every request already."]
    if errors:
        raise InvalidTraffic("The traffic split names the active version; nothing was changed.", errors)


def versions(session: Session) -> list[dict[str, Any]]:
    """Every version, newest upload first: stage, share of requests served, shadow, times, test MAE."""
    traffic = read_traffic(session)
    activated = dict(
        session.execute(
            select(ModelActivation.version, func.max(ModelActivation.activated_at)).group_by(
                ModelActivation.version
            )
        ).all()
    )
    rows = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc()))
    return [version_entry(row, traffic, activated) for row in rows]


def version_entry(row: ModelVersion, traffic: Traffic, activated: dict[str, datetime]) -> dict[str, Any]:
    """One version as GET /model/versions/ lists it."""
    stage = ACTIVE if row.version == traffic.active else RETIRED if row.version in activated else CANDIDATE
    share = 0.0
    if row.version == traffic.active:
        share = 100.0 - traffic.percent
    elif row.version == traffic.canary:
        share = traffic.percent
    test = ((row.details or {}).get("metrics") or {}).get("test") or {}
    return {
        "version": row.version,
        "stage": stage,
        "traffic": share,
        "shadow": row.version == traffic.shadow,
        "uploaded_at": row.created_at,
        "activated_at": activated.get(row.version),
        "kind": row.kind,
        "filename": row.filename,
        "size_bytes": row.size_bytes,
        "test_mae": test.get("mae"),
    }


def audit_events(session: Session) -> list[dict[str, Any]]:
    """Every audit event, oldest first."""
    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id))
    return [
        {
            "at": row.at,
            "action": row.action,
            "version": row.version,
            "previous": row.previous,
            "percent": row.percent,
            "by": row.by,
            "reason": row.reason,
        }
        for row in rows
    ]
