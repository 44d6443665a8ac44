"""Marshmallow schemas: what the API accepts and answers, and the OpenAPI document they produce."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import validate

from flight_delay.api import errors
from flight_delay.api.context_answer import ContextAnswerSchema
from flight_delay.history.repository import TOTAL_CAP
from flight_delay.validation import MAX_BATCH_SIZE
from flight_delay.validation.rules import FIELD_RULES
from flight_delay.validation.wording import FlightSchema, JsonNumber, field_validators


class PredictRequestSchema(ma.Schema):
    """Either one flight, or `{"flights": [...]}` with 1 to 10,000 flights (the document's; checked by
    flight_delay.validation).

    As a pandas DataFrame's records spell them too: 517.0 is 517 in an integer field, NaN is null.
    """

    flights = ma.fields.List(
        ma.fields.Nested(FlightSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH_SIZE),
    )

    class Meta:
        unknown = ma.RAISE


class InputWarningSchema(ma.Schema):
    """A value of the flight the model never saw in training: scored, but read with care."""

    field = ma.fields.String(required=True, metadata={"description": "the flight field"})
    value = ma.fields.Raw(required=True, metadata={"description": "the value sent"})
    reason = ma.fields.String(
        required=True, metadata={"description": "not seen in training, or out of range"}
    )


class PredictionSchema(ma.Schema):
    """One prediction and the history row that records it."""

    history_id = ma.fields.Integer(required=True)
    arr_delay = ma.fields.Float(required=True, metadata={"description": "minutes; negative = early"})
    basis = ma.fields.String(
        required=True,
        validate=validate.OneOf(["at_departure", "before_departure"]),
        metadata={"description": "at_departure: dep_delay was known; before_departure: it was null"},
    )
    context = ma.fields.Nested(
        ContextAnswerSchema,
        metadata={"description": "the context read (only from a model that reads context: contract v3 on)"},
    )
    warnings = ma.fields.List(
        ma.fields.Nested(InputWarningSchema),
        metadata={"description": "only when the flight holds what the model never saw in training"},
    )


class PredictResponseSchema(ma.Schema):
    """The predictions of one request, in the order of the flights sent."""

    model_version = ma.fields.String(required=True, metadata={"description": "sha256 of the artifact"})
    request_id = ma.fields.String(required=True)
    predictions = ma.fields.List(ma.fields.Nested(PredictionSchema), required=True)


class ModelUploadSchema(ma.Schema):
    """Multipart form carrying the model file."""

    file = ma.fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class ModelInfoSchema(ma.Schema):
    """The active model's metadata."""

    version = ma.fields.String(required=True)
    kind = ma.fields.String(required=True)
    input_fields = ma.fields.List(ma.fields.String(), required=True)
    nullable_fields = ma.fields.List(ma.fields.String(), required=True)
    metrics = ma.fields.Dict(allow_none=True)
    training = ma.fields.Dict(allow_none=True)
    contract = ma.fields.Dict(allow_none=True)
    filename = ma.fields.String(allow_none=True)
    size_bytes = ma.fields.Integer(required=True)
    created_at = ma.fields.DateTime(required=True, metadata={"description": "first uploaded"})
    loaded_at = ma.fields.DateTime(required=True, metadata={"description": "made active"})


LARGEST_ID = 2**63 - 1  # history ids are signed 64-bit integers on every backend


def at_most_pattern(limit: int) -> str:
    """A regular expression of the decimal numbers 0..limit (leading zeros allowed up to its width)."""
    digits = str(limit)
    width = len(digits)
    shorter = [f"[0-9]{{1,{width - 1}}}"] if width > 1 else []
    # Same width: equal to the limit on a prefix, then a smaller digit, then anything.
    same = [
        f"{digits[:i]}[0-{int(digits[i]) - 1}][0-9]{{{width - i - 1}}}"
        for i in range(width)
        if digits[i] != "0"
    ]
    return f"^({'|'.join([*shorter, *same, digits])})$"


# A history id, as the OpenAPI document says it and as it is checked (fullmatch: no trailing newline).
CURSOR = re.compile(at_most_pattern(LARGEST_ID))
MODEL_VERSION = re.compile(r"^[0-9a-f]{64}$")


def _validate_cursor(value: str) -> None:
    """Checks a cursor is a history id: digits, at most the largest 64-bit id."""
    if not CURSOR.fullmatch(value):
        raise ma.ValidationError("Must be a cursor returned as next_cursor.")


def _validate_model_version(value: str) -> None:
    """Checks a model version is a sha256 in lowercase hex, nothing after it."""
    if not MODEL_VERSION.fullmatch(value):
        raise ma.ValidationError("Must be a model version: 64 lowercase hexadecimal digits.")


def _validate_request_id(value: str) -> None:
    """Checks a request id is one the service could have recorded."""
    if not errors.REQUEST_ID.fullmatch(value):
        raise ma.ValidationError("Must be a request id: 1 to 128 letters, digits or . _ : -")


def _validate_utc_representable(value: datetime) -> None:
    """Refuses instants that cannot be written in UTC (year 1 east of Greenwich, year 9999 west)."""
    try:
        value.astimezone(UTC)
    except OverflowError as exc:
        raise ma.ValidationError("Must be a date-time between years 1 and 9999 in UTC.") from exc


UTC_RANGE = "An instant must lie between years 1 and 9999 in UTC."


class TimeWindowSchema(ma.Schema):
    """A window on the predictions' time, [since, until): the history's filter, the monitoring's window."""

    since = ma.fields.AwareDateTime(
        default_timezone=None,
        validate=_validate_utc_representable,
        metadata={"description": f"inclusive, on the prediction time. {UTC_RANGE}"},
    )
    until = ma.fields.AwareDateTime(
        default_timezone=None,
        validate=_validate_utc_representable,
        metadata={"description": f"exclusive; not before `since` (equal: an empty window). {UTC_RANGE}"},
    )

    class Meta:
        unknown = ma.RAISE

    @ma.validates_schema
    def validate_range(self, data: dict[str, Any], **_: Any) -> None:
        """Refuses a time range that ends before it starts; [t, t) is empty, not wrong."""
        if "since" in data and "until" in data and data["until"] < data["since"]:
            raise ma.ValidationError("Must not be earlier than since.", "until")


class HistoryQuerySchema(TimeWindowSchema):
    """Filters and keyset pagination of the history (and the window of TimeWindowSchema)."""

    page_size = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = ma.fields.String(
        validate=_validate_cursor,
        metadata={"description": "next_cursor of the previous page", "pattern": CURSOR.pattern},
    )
    model_version = ma.fields.String(
        validate=_validate_model_version, metadata={"pattern": MODEL_VERSION.pattern}
    )
    request_id = ma.fields.String(
        validate=_validate_request_id,
        metadata={
            "description": "the predictions of one request (its X-Request-ID)",
            "pattern": errors.REQUEST_ID.pattern,
        },
    )


class HistoryItemSchema(ma.Schema):
    """One recorded prediction."""

    id = ma.fields.Integer(required=True)
    created_at = ma.fields.DateTime(required=True)
    request_id = ma.fields.String(required=True)
    model_version = ma.fields.String(required=True)
    input = ma.fields.Dict(required=True, metadata={"description": "the flight as received"})
    arr_delay = ma.fields.Float(required=True)
    latency_ms = ma.fields.Float(required=True, metadata={"description": "request start to prediction"})
    protocol = ma.fields.String(
        required=True, metadata={"description": "how it came: native, v2 (Open Inference Protocol) or mlflow"}
    )
    shadow_of = ma.fields.Integer(
        allow_none=True,
        required=True,
        metadata={
            "description": "a shadow version's prediction (never answered): the id of the one it shadows"
        },
    )


class HistoryPageSchema(ma.Schema):
    """A page of the history, newest first."""

    items = ma.fields.List(ma.fields.Nested(HistoryItemSchema), required=True)
    total = ma.fields.Integer(
        required=True,
        metadata={"description": f"predictions matching the filters, counted up to {TOTAL_CAP:,}"},
    )
    total_capped = ma.fields.Boolean(
        required=True, metadata={"description": f"more than {TOTAL_CAP:,} match: total is then {TOTAL_CAP:,}"}
    )
    page_size = ma.fields.Integer(required=True)
    next_cursor = ma.fields.String(allow_none=True, required=True)
    next = ma.fields.String(allow_none=True, required=True, metadata={"description": "next page"})


class DatabaseHealthSchema(ma.Schema):
    """Whether the database took a write just now."""

    ok = ma.fields.Boolean(
        required=True, metadata={"description": "a heartbeat row was written and committed"}
    )
    backend = ma.fields.String(required=True, metadata={"description": "sqlite, postgresql, ..."})
    reason = ma.fields.String(metadata={"description": "why the write failed; absent when ok"})

    @ma.post_dump
    def drop_empty_reason(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """Leaves `reason` out when there is none."""
        if data.get("reason") is None:
            data.pop("reason", None)
        return data


class HealthSchema(ma.Schema):
    """The service's health."""

    status = ma.fields.String(
        required=True, metadata={"description": "ok; unavailable when the database fails (model: `model`)"}
    )
    version = ma.fields.String(required=True, metadata={"description": "application version"})
    database = ma.fields.Nested(DatabaseHealthSchema, required=True)
    model = ma.fields.Dict(required=True)


class LiveSchema(ma.Schema):
    """The process answers."""

    status = ma.fields.String(required=True, metadata={"description": "ok"})


class ReadySchema(ma.Schema):
    """This replica can serve a prediction now."""

    status = ma.fields.String(required=True, metadata={"description": "ready"})
    model_version = ma.fields.String(required=True, metadata={"description": "the model it serves"})
    database = ma.fields.Nested(DatabaseHealthSchema, required=True)


class ErrorSchema(ma.Schema):
    """The one shape of every error."""

    status = ma.fields.Integer(required=True)
    code = ma.fields.String(required=True)
    message = ma.fields.String(required=True)
    errors = ma.fields.Dict(metadata={"description": "per field: what is wrong"})
    request_id = ma.fields.String(required=True, metadata={"description": "also in X-Request-ID"})


MAX_ACTUALS = 10_000


class ActualSchema(ma.Schema):
    """The actual arrival delay of one recorded prediction."""

    history_id = ma.fields.Integer(
        strict=True,
        required=True,
        validate=validate.Range(min=1, max=LARGEST_ID),
        metadata={"description": "`history_id` of the prediction, as /model/predict/ answered it"},
    )
    arr_delay = JsonNumber(
        allow_nan=False,
        required=True,
        validate=field_validators(FIELD_RULES["arr_delay"]),
        metadata={"description": "the flight's actual arrival delay, minutes"},
    )

    class Meta:
        unknown = ma.RAISE


class ActualsRequestSchema(ma.Schema):
    """1 to 10,000 actual arrival delays, recorded all or none."""

    actuals = ma.fields.List(
        ma.fields.Nested(ActualSchema), required=True, validate=validate.Length(min=1, max=MAX_ACTUALS)
    )

    class Meta:
        unknown = ma.RAISE

    @ma.pre_load
    def count_first(self, data: Any, **_: Any) -> Any:
        """Refuses more than MAX_ACTUALS before any is checked (a refusal of each would cost far more)."""
        if (
            isinstance(data, dict)
            and isinstance(data.get("actuals"), list)
            and len(data["actuals"]) > MAX_ACTUALS
        ):
            raise ma.ValidationError([f"Length must be between 1 and {MAX_ACTUALS}."], "actuals")
        return data


class ActualsResponseSchema(ma.Schema):
    """How many predictions now have an actual from this request."""

    recorded = ma.fields.Integer(required=True, metadata={"description": "distinct history ids recorded"})


class MonitoringQuerySchema(TimeWindowSchema):
    """Which model and which window of its predictions to report on."""

    model_version = ma.fields.String(
        validate=_validate_model_version,
        metadata={"description": "default: the active model", "pattern": MODEL_VERSION.pattern},
    )


class WindowSchema(ma.Schema):
    """The window reported on, on the predictions' time (null: unbounded)."""

    since = ma.fields.DateTime(allow_none=True, required=True)
    until = ma.fields.DateTime(allow_none=True, required=True)


class LiveAccuracySchema(ma.Schema):
    """Accuracy over the window's predictions that have an actual (figures null when none has)."""

    count = ma.fields.Integer(required=True, metadata={"description": "predictions with an actual"})
    mae = ma.fields.Float(allow_none=True, required=True)
    rmse = ma.fields.Float(allow_none=True, required=True)
    mean_error = ma.fields.Float(
        allow_none=True, required=True, metadata={"description": "mean of predicted - actual"}
    )


class DriftFieldSchema(ma.Schema):
    """The drift of one feature the model reads, or of its prediction."""

    psi = ma.fields.Float(required=True, metadata={"description": "population stability index"})
    drifted = ma.fields.Boolean(required=True, metadata={"description": "psi >= psi_threshold"})
    of = ma.fields.String(
        required=True,
        validate=ma.validate.OneOf(("feature", "prediction")),
        metadata={"description": "a feature as the model read it, or the model's prediction"},
    )


class ReferenceSchema(ma.Schema):
    """What drift is measured against: the model's training profile."""

    of = ma.fields.String(
        required=True,
        metadata={"description": "features (as encoded) or input fields (an artifact trained before)"},
    )
    flights = ma.fields.Integer(required=True, metadata={"description": "training flights profiled"})
    first_flight = ma.fields.String(
        allow_none=True, required=True, metadata={"description": "ISO date of the first training flight"}
    )
    last_flight = ma.fields.String(
        allow_none=True, required=True, metadata={"description": "ISO date of the last training flight"}
    )
    at_departure_share = ma.fields.Float(
        allow_none=True,
        required=True,
        metadata={
            "description": "the window's share of predictions at departure, with which the training "
            "profile's two bases (at and before departure) are mixed"
        },
    )


class FreshnessSchema(ma.Schema):
    """How current the figures are: the roll-ups they come from may lag."""

    counted_until = ma.fields.DateTime(
        required=True, metadata={"description": "the figures count the predictions made before this"}
    )
    rolled_up_until = ma.fields.DateTime(
        allow_none=True, required=True, metadata={"description": "the roll-up job's mark for the model"}
    )
    lag_seconds = ma.fields.Float(required=True, metadata={"description": "how far the roll-ups lag now"})
    lagging = ma.fields.Boolean(
        required=True,
        metadata={
            "description": "lag_seconds over MONITORING_MAX_LAG_S: nothing after rolled_up_until is counted"
        },
    )


class SplitVersionSchema(ma.Schema):
    """A version of the traffic split and its live accuracy over the report's window."""

    version = ma.fields.String(required=True)
    role = ma.fields.String(
        required=True,
        validate=validate.OneOf(("active", "canary", "shadow")),
        metadata={"description": "a shadow's figures: its predictions against the shadowed ones' actuals"},
    )
    live = ma.fields.Nested(LiveAccuracySchema, required=True)


class MonitoringReportSchema(ma.Schema):
    """A model's live accuracy and drift over a window of its predictions, against its training profile."""

    model_version = ma.fields.String(required=True)
    window = ma.fields.Nested(WindowSchema, required=True)
    predictions = ma.fields.Integer(required=True, metadata={"description": "predictions in the window"})
    live = ma.fields.Nested(LiveAccuracySchema, required=True)
    drift = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Nested(DriftFieldSchema),
        allow_none=True,
        required=True,
        metadata={
            "description": "per feature the model reads, and its prediction (under `prediction`); "
            "null when unavailable (see drift_unavailable)"
        },
    )
    drift_unavailable = ma.fields.String(
        allow_none=True, required=True, metadata={"description": "what of drift is not reported, and why"}
    )
    reference = ma.fields.Nested(ReferenceSchema, allow_none=True, required=True)
    freshness = ma.fields.Nested(FreshnessSchema, required=True)
    psi_threshold = ma.fields.Float(required=True, metadata={"description": "MONITORING_PSI_THRESHOLD"})
    versions = ma.fields.List(
        ma.fields.Nested(SplitVersionSchema),
        required=True,
        metadata={"description": "the traffic split's versions now, their live figures over the same window"},
    )
