"""The `context` of a prediction's answer: which context the model read, and from which records."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from flight_delay.context.definitions import CONTEXT_FEATURES

DATE_TIME = {"type": "string", "format": "date-time"}


class ContextWeatherSchema(ma.Schema):
    """The weather hour the prediction read."""

    time_hour = ma.fields.String(required=True, metadata=DATE_TIME)


class PreviousLegSchema(ma.Schema):
    """The aircraft's previous NYC departure, and its state at as_of."""

    carrier = ma.fields.String(required=True)
    flight = ma.fields.Integer(required=True)
    scheduled = ma.fields.String(required=True, metadata=DATE_TIME)
    state = ma.fields.String(required=True, validate=validate.OneOf(["not departed", "departed", "landed"]))


class ContextAnswerSchema(ma.Schema):
    """Which context a prediction read (for a model that reads context)."""

    used = ma.fields.Boolean(required=True, metadata={"description": "false: scored without context"})
    as_of = ma.fields.String(
        required=True, metadata={**DATE_TIME, "description": "the prediction time, UTC: what it knew"}
    )
    reason = ma.fields.String(metadata={"description": "why no context was used"})
    weather = ma.fields.Nested(ContextWeatherSchema, allow_none=True)
    previous_leg = ma.fields.Nested(PreviousLegSchema, allow_none=True)
    features = ma.fields.Dict(
        keys=ma.fields.String(validate=validate.OneOf(CONTEXT_FEATURES)),
        values=ma.fields.Float(allow_none=True),
        metadata={"description": "the context features fed to the model (null: missing)"},
    )
