"""The wording of a refused flight, and the flight's OpenAPI schema: marshmallow over the same field rules.

compiled.py decides whether a flight passes; a refused flight is loaded by FlightSchema here, whose
validators (built from the same FieldRule) word what is wrong per field. The schema also feeds the
OpenAPI document (api/docs.py), so the document says what the checks enforce.
"""

from __future__ import annotations

import math
from typing import Any

import marshmallow as ma
from marshmallow import validate

from flight_delay.features import API_FIELDS, NO_DEFAULT, FlightField
from flight_delay.validation.rules import (
    FIELD_RULES,
    HHMM_COLUMNS,
    NO_RULE,
    FieldRule,
    last_day_of_month,
    validate_text,
)


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
    "as_of": {"format": "date-time"},
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


FLIGHT = FlightSchema()


def refusal(item: Any) -> dict[str, Any]:
    """What is wrong with a flight, per field (empty if marshmallow finds nothing)."""
    try:
        FLIGHT.load(item)
    except ma.ValidationError as error:
        return error.messages  # type: ignore[return-value]
    return {}
