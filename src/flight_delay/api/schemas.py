"""Marshmallow schemas: what the API accepts and answers, and the OpenAPI document they produce."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import validate

from flight_delay.api import errors
from flight_delay.api.fast_load import load_predict_request
from flight_delay.api.field_rules import (
    FIELD_RULES,
    HHMM_COLUMNS,
    NO_RULE,
    FieldRule,
    last_day_of_month,
    validate_text,
)
from flight_delay.features import API_FIELDS, NO_DEFAULT, FlightField
from flight_delay.serving.predictions import ScoredFlights

MAX_BATCH_SIZE = 10_000


class NanIsNull(ma.fields.Field):
    """Reads NaN as null: pandas' missing value, which Python's json writes as the literal NaN."""

    def deserialize(self, value: Any, attr: str | None = None, data: Any = None, **kwargs: Any) -> Any:
        """Turns NaN into None before marshmallow's null check, which then allows or refuses it."""
        if type(value) is float and math.isnan(value):
            value = None
        return super().deserialize(value, attr, data, **kwargs)


class JsonInteger(NanIsNull, ma.fields.Integer):
    """A JSON integer; a float without a fractional part (517.0, as pandas writes integers) is one."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        """Reads an integral float as its integer; anything else as a strict Integer does."""
        if type(value) is float and value.is_integer():
            value = int(value)
        return super()._deserialize(value, attr, data, **kwargs)


class JsonText(NanIsNull, ma.fields.String):
    """A JSON string (NaN reads as null)."""


class JsonNumber(NanIsNull, ma.fields.Float):
    """A finite JSON number: numeric strings and booleans are refused rather than coerced."""

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        """Accepts only int or float values (bool excluded): marshmallow's documented override point."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


def field_validators(rule: FieldRule) -> list[Any]:
    """The marshmallow validators of a field's rule, in the order their refusals are listed."""
    validators: list[Any] = []
    low = rule.ge if rule.gt is None else rule.gt
    if low is not None or rule.le is not None:
        validators.append(validate.Range(min=low, max=rule.le, min_inclusive=rule.gt is None))
    if rule.min_length is not None or rule.max_length is not None:
        validators.append(validate.Length(min=rule.min_length, max=rule.max_length))
    if rule.pattern is not None:
        validators.append(validate.Regexp(rule.pattern, error=rule.message))
    return [*validators, *rule.checks]


# Text without the characters validate_text refuses, as a JSON Schema pattern (ECMA-262, Python and
# Rust regex read it alike). Lone surrogates cannot be written in every dialect: the description says.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# hhmm clock times as JSON Schema: one range per hour, minutes 00 to 59, and 2400.
HHMM_DOC = {
    "minimum": 0,
    "maximum": 2400,
    "anyOf": [{"minimum": hour * 100, "maximum": min(hour * 100 + 59, 2400)} for hour in range(25)],
    "x-format": "hhmm",
}
# What the validators above check that the document cannot read from them by itself.
DOCUMENTED_CHECKS: dict[str, dict[str, Any]] = {
    **dict.fromkeys(HHMM_COLUMNS, HHMM_DOC),
    "time_hour": {"format": "date-time"},
    "name": {"pattern": TEXT_PATTERN},
}
# validate_date in JSON Schema: year, month and day, when all three are given, name a real date.
FLIGHT_DOC: dict[str, Any] = {
    "anyOf": [
        {"not": {"required": ["year", "month", "day"]}},
        {"properties": {"day": {"maximum": 28}}},
        {"properties": {"month": {"enum": [1, 3, 5, 7, 8, 10, 12]}}},
        {"properties": {"month": {"enum": [4, 6, 9, 11]}, "day": {"maximum": 30}}},
        {
            "properties": {
                "month": {"enum": [2]},
                "day": {"maximum": 29},
                "year": {"multipleOf": 4, "minimum": 1901, "maximum": 2099},  # leap years of 1900..2100
            }
        },
    ],
}


def documented_range(validators: list[Any]) -> dict[str, bool]:
    """The exclusive bounds of Range validators, which apispec leaves out of the document."""
    bounds: dict[str, bool] = {}
    for validator in (v for v in validators if isinstance(v, validate.Range)):
        if validator.min is not None and not validator.min_inclusive:
            bounds["exclusiveMinimum"] = True
        if validator.max is not None and not validator.max_inclusive:
            bounds["exclusiveMaximum"] = True
    return bounds


def flight_field(spec: FlightField) -> ma.fields.Field:
    """Builds the marshmallow field of one flight field: its JSON type, nullability, default and bounds."""
    validators = field_validators(FIELD_RULES.get(spec.name, NO_RULE))
    where = "dataset column" if spec.in_dataset else "flight field"
    options = {
        "allow_none": spec.nullable,
        "validate": validators,
        "metadata": {
            "description": f"{where} `{spec.name}`",
            **documented_range(validators),
            **DOCUMENTED_CHECKS.get(spec.name, {}),
        },
    }
    if spec.default is not NO_DEFAULT:
        options["load_default"] = spec.default
    if spec.kind == "int":
        return JsonInteger(strict=True, **options)
    if spec.kind == "float":
        return JsonNumber(allow_nan=False, **options)
    return JsonText(**{**options, "validate": [validate_text, *options["validate"]]})


class FlightSchema(ma.Schema.from_dict({spec.name: flight_field(spec) for spec in API_FIELDS})):
    """A flight: the fields of features.API_FIELDS. Which fields are required is the model's call."""

    class Meta:
        unknown = ma.RAISE

    @ma.validates_schema
    def validate_date(self, data: dict[str, Any], **_: Any) -> None:
        """Refuses dates that do not exist, such as 2013-02-30."""
        if "year" in data and "month" in data and "day" in data:
            last_day = last_day_of_month(data["year"], data["month"])
            if data["day"] > last_day:
                raise ma.ValidationError(f"Must be at most {last_day} for this month.", "day")

    @ma.post_load(pass_original=True)
    def keep_payload(self, data: dict[str, Any], original: dict[str, Any], **_: Any) -> dict[str, Any]:
        """Pairs the validated values with the payload exactly as the client sent it."""
        return {"values": data, "payload": original}


class PredictRequestSchema(ma.Schema):
    """Either one flight, or `{"flights": [...]}` with 1 to 10,000 flights.

    As a pandas DataFrame's records spell them too: 517.0 is 517 in an integer field, NaN is null.

    `load` tries msgspec's checks of the same fields and rules first (see fast_load.py); they answer
    only when sure, and marshmallow answers the rest, errors included.
    """

    flights = ma.fields.List(
        ma.fields.Nested(FlightSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH_SIZE),
    )

    class Meta:
        unknown = ma.RAISE

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # The fast path checks this class as declared: any option (many, partial, only...) or subclass
        # is marshmallow's alone.
        self._fast = not options and type(self) is PredictRequestSchema

    def load(
        self, data: Any, *, many: bool | None = None, partial: Any = None, unknown: str | None = None
    ) -> Any:
        """Loads with msgspec's checks when they are sure of the answer, with marshmallow otherwise."""
        if self._fast and many is None and partial is None and unknown is None:
            loaded = load_predict_request(data, MAX_BATCH_SIZE)
            if loaded is not None:
                return loaded
        return super().load(data, many=many, partial=partial, unknown=unknown)

    @ma.pre_load
    def wrap_single_flight(self, data: Any, **_: Any) -> Any:
        """Reads a bare flight object as a batch of one."""
        if isinstance(data, dict) and "flights" not in data:
            return {"flights": [data]}
        return data

    @ma.post_load(pass_original=True)
    def mark_single(self, data: dict[str, Any], original: Any, **_: Any) -> dict[str, Any]:
        """Remembers whether the client sent a bare flight, so errors can be reported likewise."""
        return {**data, "single": isinstance(original, dict) and "flights" not in original}

    def handle_error(self, error: ma.ValidationError, data: Any, **kwargs: Any) -> None:
        """Reports a single flight's errors at its own fields rather than under flights.0."""
        messages = error.messages
        single = isinstance(data, dict) and "flights" not in data
        if single and isinstance(messages, dict) and set(messages) == {"flights"}:
            inner = messages["flights"]
            if isinstance(inner, dict) and set(inner) == {0}:
                raise ma.ValidationError(inner[0]) from error
        raise error


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
    warnings = ma.fields.List(
        ma.fields.Nested(InputWarningSchema),
        metadata={"description": "only when the flight holds what the model never saw in training"},
    )


class PredictResponseSchema(ma.Schema):
    """The predictions of one request, in the order of the flights sent."""

    model_version = ma.fields.String(required=True, metadata={"description": "sha256 of the artifact"})
    request_id = ma.fields.String(required=True)
    predictions = ma.fields.List(ma.fields.Nested(PredictionSchema), required=True)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # As for PredictRequestSchema: only the class as declared is dumped by scored_body.
        self._fast = not options and type(self) is PredictResponseSchema

    def dump(self, obj: Any, *, many: bool | None = None) -> Any:
        """Dumps the service's answer directly (scored_body), anything else with marshmallow."""
        if self._fast and many is None and type(obj) is ScoredFlights:
            return scored_body(obj)
        return super().dump(obj, many=many)


def scored_body(scored: ScoredFlights) -> dict[str, Any]:
    """PredictResponseSchema's dump of an answer: its fields in order, as int(), float() and str()."""
    return {
        "model_version": scored.model_version,
        "request_id": scored.request_id,
        "predictions": [_prediction_body(p) for p in scored.predictions],
    }


def _prediction_body(prediction: dict[str, Any]) -> dict[str, Any]:
    """PredictionSchema's dump of one prediction; its warnings are plain data already."""
    body = {
        "history_id": int(prediction["history_id"]),
        "arr_delay": float(prediction["arr_delay"]),
        "basis": str(prediction["basis"]),
    }
    if "warnings" in prediction:
        body["warnings"] = [dict(warning) for warning in prediction["warnings"]]
    return body


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


class HistoryPageSchema(ma.Schema):
    """A page of the history, newest first."""

    items = ma.fields.List(ma.fields.Nested(HistoryItemSchema), required=True)
    total = ma.fields.Integer(required=True, metadata={"description": "rows matching the filters"})
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
    """One input field's drift."""

    psi = ma.fields.Float(required=True, metadata={"description": "population stability index"})
    drifted = ma.fields.Boolean(required=True, metadata={"description": "psi >= psi_threshold"})


class MonitoringReportSchema(ma.Schema):
    """A model's live accuracy and input drift over a window of its predictions."""

    model_version = ma.fields.String(required=True)
    window = ma.fields.Nested(WindowSchema, required=True)
    predictions = ma.fields.Integer(required=True, metadata={"description": "predictions in the window"})
    live = ma.fields.Nested(LiveAccuracySchema, required=True)
    drift = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Nested(DriftFieldSchema),
        allow_none=True,
        required=True,
        metadata={"description": "per input field; null when unavailable (see drift_unavailable)"},
    )
    drift_unavailable = ma.fields.String(allow_none=True, required=True)
    psi_threshold = ma.fields.Float(required=True, metadata={"description": "MONITORING_PSI_THRESHOLD"})
