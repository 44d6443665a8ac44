"""Tables of the service: every prediction served, every model version and its bytes, every activation,
the traffic split between versions, the audit of every change to them, and replay jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer, "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
# PostgreSQL enforces VARCHAR lengths (SQLite does not): longer upload names are cut to fit.
FILENAME_LENGTH = 255
REASON_LENGTH = 500  # an audit event's reason, cut to fit


def utcnow() -> datetime:
    """Returns the current time in UTC, timezone-aware."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database (SQLite stores no zone, so we add it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Refuses naive datetimes and stores aware ones in UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give a timezone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        """Reads timestamps back as aware UTC datetimes."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        # PostgreSQL answers in the session's TimeZone (the server's unless set): bring it to UTC.
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base whose metadata Alembic migrates."""


class ModelVersion(Base):
    """A model artifact accepted by /model/load/, stored content-addressed by its sha256.

    `native_sha256` names the native form the model sandbox wrote of it (in model_artifacts), which
    is what workers load; None for a version accepted before the sandbox existed.
    """

    __tablename__ = "model_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str | None] = mapped_column(String(FILENAME_LENGTH))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    native_sha256: Mapped[str | None] = mapped_column(String(64))


class ModelArtifact(Base):
    """The bytes of an accepted artifact, once per sha256: every replica fills its local cache from here."""

    __tablename__ = "model_artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ModelActivation(Base):
    """One switch of the serving model; the newest row names the active model for every worker.

    `previous_id` is the activation a rollback returns to (null: none), so that rollbacks unwind the
    activations one by one: a rollback's own row points where the activation it undid pointed.
    """

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"))
    activated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    previous_id: Mapped[int | None] = mapped_column(BigId)


class Prediction(Base):
    """One flight scored: the payload as received, the output, the model that produced it.

    The history is listed newest first by (created_at, id); each filter's index ends with those two
    columns, so any page of any filter is one index range read in order (history/repository.py).
    """

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_created_at_id", "created_at", "id"),
        Index("ix_predictions_model_version_created_at_id", "model_version", "created_at", "id"),
        Index("ix_predictions_request_id_created_at_id", "request_id", "created_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    request_id: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"))
    input: Mapped[dict[str, Any]] = mapped_column(Json)
    arr_delay: Mapped[float] = mapped_column(Float)
    latency_ms: Mapped[float] = mapped_column(Float)
    # How it came: native (POST /model/predict/), v2 (Open Inference Protocol) or mlflow (/invocations).
    protocol: Mapped[str] = mapped_column(String(16), server_default="native")
    # The features the model read, as encoded (its contract's feature_names, in order; a category as its
    # code, null when unseen): what drift is measured on. Null for models without a contract.
    features: Mapped[list[float | None] | None] = mapped_column(Json, nullable=True)
    # A shadow version's prediction: the id of the served prediction it shadows (never answered); null
    # for what clients were answered. No foreign key: the history is only ever appended to, by us.
    shadow_of: Mapped[int | None] = mapped_column(BigId)


class Heartbeat(Base):
    """One row that /health/ rewrites and commits, proving the database takes writes, not just reads."""

    __tablename__ = "heartbeat"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    beat_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Actual(Base):
    """The actual arrival delay of one prediction, beside the prediction's own (immutable) figures.

    The model version, time and predicted delay are copied from the prediction so that live accuracy
    is one scan of this table's index, with no join to the (wide) history.
    """

    __tablename__ = "actuals"
    # Covering live accuracy's aggregate: the index alone answers it, without visiting the table.
    __table_args__ = (
        Index(
            "ix_actuals_model_version_predicted_at", "model_version", "predicted_at", "predicted", "arr_delay"
        ),
        # Which hours' live accuracy changed since the roll-ups: actuals recorded after a mark.
        Index("ix_actuals_model_version_recorded_at", "model_version", "recorded_at"),
    )

    history_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("predictions.id"), primary_key=True, autoincrement=False
    )
    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"))
    predicted_at: Mapped[datetime] = mapped_column(UtcDateTime)
    predicted: Mapped[float] = mapped_column(Float)
    arr_delay: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class InputCount(Base):
    """How many of a model's predictions of one hour fell in one bin of one field (drift's rollup).

    `field` "*" counts every prediction of the hour, by basis (bin 0: at departure or unknown, 1: before
    departure); "prediction" bins the model's own output; the others are features (or, for an older
    artifact's profile, input fields).
    """

    __tablename__ = "monitoring_counts"

    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    bin: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rows: Mapped[int] = mapped_column(BigInteger)


class LiveCount(Base):
    """The errors of a model's predictions of one hour that have an actual (live accuracy's rollup).

    Recomputed whole whenever an actual of the hour is recorded (actuals replace one another).
    """

    __tablename__ = "monitoring_live"

    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"), primary_key=True)
    hour: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger)
    abs_error: Mapped[float] = mapped_column(Float)
    squared_error: Mapped[float] = mapped_column(Float)
    error: Mapped[float] = mapped_column(Float)


class RollupMark(Base):
    """Up to when a model's predictions and actuals are rolled up (the predictions of every instant before).

    Any instant, not only a whole hour: the hour it falls in is counted up to it.
    """

    __tablename__ = "monitoring_rollups"

    model_version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"), primary_key=True)
    rolled_until: Mapped[datetime] = mapped_column(UtcDateTime)


class ModelTraffic(Base):
    """The one row saying which requests a canary serves and which version shadows every prediction.

    Every change bumps `revision` first: that write serializes concurrent changes on both backends.
    """

    __tablename__ = "model_traffic"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    canary_version: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version"))
    canary_percent: Mapped[float] = mapped_column(Float, server_default="0")
    shadow_version: Mapped[str | None] = mapped_column(ForeignKey("model_versions.version"))
    revision: Mapped[int] = mapped_column(BigInteger, server_default="0")
    changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AuditEvent(Base):
    """One change to the models served: an upload, activation, rollback, canary or shadow change.

    Appended, never updated: nothing in the API changes or removes an event.
    """

    __tablename__ = "model_audit"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    action: Mapped[str] = mapped_column(String(16))
    version: Mapped[str | None] = mapped_column(String(64))
    previous: Mapped[str | None] = mapped_column(String(64))
    percent: Mapped[float | None] = mapped_column(Float)  # a canary's share of requests
    by: Mapped[str] = mapped_column(String(64))  # the admin token's name (never the token)
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))


class ReplayJob(Base):
    """A replay of recorded traffic with one version: running, done (its result) or failed (why).

    `updated_at` moves with every page scored, so a job whose worker died is seen to have stopped.
    """

    __tablename__ = "replay_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    version: Mapped[str] = mapped_column(ForeignKey("model_versions.version"))
    since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    state: Mapped[str] = mapped_column(String(16))
    flights: Mapped[int] = mapped_column(BigInteger)  # recorded flights with an actual in the window
    scored: Mapped[int] = mapped_column(BigInteger, server_default="0")
    result: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[dict[str, Any] | None] = mapped_column(Json)
    by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
