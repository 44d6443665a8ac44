"""Marshmallow schemas of a model's life: versions, the traffic split, replays, the audit."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from marshmallow import validate

from flight_delay.api.schemas import MODEL_VERSION, ModelInfoSchema, TimeWindowSchema, WindowSchema
from flight_delay.history.models import REASON_LENGTH
from flight_delay.serving.lifecycle import ACTIVE, CANDIDATE, MAX_CANARY_PERCENT, RETIRED
from flight_delay.validation.wording import JsonNumber

REPLAY_ID = re.compile(r"^[0-9a-f]{32}$")
STAGES = (ACTIVE, CANDIDATE, RETIRED)
REASON_DOC = "why (recorded in the audit); or the X-Reason header"


def model_version_field(**kwargs: Any) -> ma.fields.String:
    """A model version: a sha256 in lowercase hex."""
    return ma.fields.String(
        validate=validate.Regexp(
            MODEL_VERSION, error="Must be a model version: 64 lowercase hexadecimal digits."
        ),
        metadata={"pattern": MODEL_VERSION.pattern, **kwargs.pop("metadata", {})},
        **kwargs,
    )


def reason_field() -> ma.fields.String:
    """An optional reason for a change, recorded in the audit."""
    return ma.fields.String(validate=validate.Length(max=REASON_LENGTH), metadata={"description": REASON_DOC})


class LoadQuerySchema(ma.Schema):
    """Whether an uploaded model becomes active at once (the default), or is stored as a candidate."""

    activate = ma.fields.Boolean(
        load_default=True, metadata={"description": "false: store it as a candidate that serves nothing"}
    )


class UploadedModelSchema(ModelInfoSchema):
    """The uploaded model's metadata and its stage (active, or candidate)."""

    stage = ma.fields.String(required=True, validate=validate.OneOf(STAGES))
    loaded_at = ma.fields.DateTime(
        allow_none=True, required=True, metadata={"description": "made active; null for a candidate"}
    )


class VersionSchema(ma.Schema):
    """One stored model version."""

    version = ma.fields.String(required=True)
    stage = ma.fields.String(
        required=True,
        validate=validate.OneOf(STAGES),
        metadata={"description": "active; candidate (never active); retired (active before)"},
    )
    traffic = ma.fields.Float(required=True, metadata={"description": "percent of requests it answers"})
    shadow = ma.fields.Boolean(
        required=True, metadata={"description": "it scores every prediction, unanswered"}
    )
    uploaded_at = ma.fields.DateTime(required=True)
    activated_at = ma.fields.DateTime(
        allow_none=True, required=True, metadata={"description": "last made active"}
    )
    kind = ma.fields.String(required=True)
    filename = ma.fields.String(allow_none=True, required=True)
    size_bytes = ma.fields.Integer(required=True)
    test_mae = ma.fields.Float(
        allow_none=True, required=True, metadata={"description": "its own test split's"}
    )


class VersionsSchema(ma.Schema):
    """Every stored version, newest upload first."""

    versions = ma.fields.List(ma.fields.Nested(VersionSchema), required=True)


class ReasonSchema(ma.Schema):
    """An optional body: why (the X-Reason header says it too)."""

    reason = reason_field()

    class Meta:
        unknown = ma.RAISE


class CanarySchema(ma.Schema):
    """A canary: the version and the percent of requests it answers."""

    version = model_version_field(required=True)
    percent = JsonNumber(
        required=True,
        allow_nan=False,
        validate=validate.Range(min=0, max=MAX_CANARY_PERCENT),
        metadata={"description": "chosen by a hash of each request's X-Request-ID"},
    )

    class Meta:
        unknown = ma.RAISE


class NullableCanary(ma.fields.Field):
    """A canary, or null (which clears it), documented as the Canary schema or null.

    A Nested field with allow_none is documented by apispec as "any object, or the schema" under
    OpenAPI 3.0, which would call {} valid: this field says exactly "Canary or null".
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"allOf": [{"$ref": "#/components/schemas/Canary"}], "nullable": True}
        super().__init__(metadata=metadata, **kwargs)

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        """Null is allowed (it clears the canary); not through allow_none, which apispec would misword."""
        if value is None:
            return None
        return super().deserialize(value, attr, data, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        """Loads the canary with CanarySchema (its errors under this field)."""
        if not isinstance(value, dict):
            raise ma.ValidationError('Must be {"version", "percent"}, or null.')
        return CANARY.load(value)


CANARY = CanarySchema()


class TrafficChangeSchema(ma.Schema):
    """The parts of the split to set; null clears a part, and a part not given stays as it is."""

    canary = NullableCanary()
    shadow = model_version_field(
        allow_none=True, metadata={"description": "scores every prediction after its answer"}
    )
    reason = reason_field()

    class Meta:
        unknown = ma.RAISE

    @ma.validates_schema
    def validate_change(self, data: dict[str, Any], **_: Any) -> None:
        """Refuses a change that sets nothing."""
        if "canary" not in data and "shadow" not in data:
            raise ma.ValidationError("Give canary, shadow, or both (null clears one).", "_schema")


class CanaryStateSchema(ma.Schema):
    """The canary serving now."""

    version = ma.fields.String(required=True)
    percent = ma.fields.Float(required=True)


class TrafficSchema(ma.Schema):
    """What is served: the active version, the canary and its share, the shadow."""

    active = ma.fields.String(allow_none=True, required=True, metadata={"description": "null: no model yet"})
    canary = ma.fields.Nested(CanaryStateSchema, allow_none=True, required=True)
    shadow = ma.fields.String(allow_none=True, required=True)
    rollback_to = ma.fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "what POST /model/rollback would make active"},
    )
    changed_at = ma.fields.DateTime(allow_none=True, required=True)


class AuditEventSchema(ma.Schema):
    """One change to the models served."""

    at = ma.fields.DateTime(required=True)
    action = ma.fields.String(
        required=True, validate=validate.OneOf(("upload", "activate", "rollback", "canary", "shadow"))
    )
    version = ma.fields.String(allow_none=True, required=True, metadata={"description": "null: cleared"})
    previous = ma.fields.String(allow_none=True, required=True)
    percent = ma.fields.Float(allow_none=True, required=True, metadata={"description": "a canary's"})
    by = ma.fields.String(required=True, metadata={"description": "the admin token's name"})
    reason = ma.fields.String(allow_none=True, required=True)


class AuditSchema(ma.Schema):
    """Every change, oldest first."""

    events = ma.fields.List(ma.fields.Nested(AuditEventSchema), required=True)


class ReplayRequestSchema(TimeWindowSchema):
    """The window of recorded predictions to replay (default: all of them, until now)."""


class FiguresSchema(ma.Schema):
    """MAE and RMSE over the flights replayed (null when none was)."""

    mae = ma.fields.Float(allow_none=True, required=True)
    rmse = ma.fields.Float(allow_none=True, required=True)


class CandidateFiguresSchema(ma.Schema):
    """The replayed version's figures (null when no flight was replayed)."""

    version = ma.fields.String(required=True)
    mae = ma.fields.Float(allow_none=True, required=True)
    rmse = ma.fields.Float(allow_none=True, required=True)


class ReplayErrorSchema(ma.Schema):
    """Why a replay failed."""

    code = ma.fields.String(required=True)
    message = ma.fields.String(required=True)


class ReplaySchema(ma.Schema):
    """A replay: its comparison once done; while running, its progress; if it failed, why."""

    id = ma.fields.String(required=True)
    status = ma.fields.String(required=True, validate=validate.OneOf(("running", "done", "failed")))
    status_url = ma.fields.String(required=True, metadata={"description": "answers this again, up to date"})
    version = ma.fields.String(required=True)
    window = ma.fields.Nested(WindowSchema, required=True)
    flights = ma.fields.Integer(metadata={"description": "done: flights replayed; running: to read"})
    read = ma.fields.Integer(metadata={"description": "running: flights read so far"})
    skipped = ma.fields.Integer(
        metadata={"description": "recorded flights lacking a field the version reads"}
    )
    candidate = ma.fields.Nested(CandidateFiguresSchema)
    served = ma.fields.Nested(FiguresSchema, metadata={"description": "what clients were answered"})
    error = ma.fields.Nested(ReplayErrorSchema)


class ReplaysQuerySchema(ma.Schema):
    """How many of the newest replays to list."""

    limit = ma.fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class ListedReplaySchema(ReplaySchema):
    """A replay as listed: its status, when it started and who started it."""

    started_at = ma.fields.DateTime(required=True)
    by = ma.fields.String(required=True, metadata={"description": "the admin token's name"})


class ReplaysSchema(ma.Schema):
    """The newest replays, newest first."""

    replays = ma.fields.List(ma.fields.Nested(ListedReplaySchema), required=True)
