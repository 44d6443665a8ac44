"""What each flight field must hold: one table, compiled once for checking and once for wording.

validation/compiled.py turns a FieldRule into msgspec constraints and value tests, which decide every
flight; validation/wording.py turns the same rule into marshmallow validators, which word a refusal
and feed the OpenAPI document. A rule holds only what both can state (bounds, a pattern, lengths) plus
`checks`: functions both run on the value alone, raising marshmallow's ValidationError to refuse it.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma

HHMM_COLUMNS = ("dep_time", "sched_dep_time", "arr_time", "sched_arr_time")


@dataclass(frozen=True)
class FieldRule:
    """A flight field's checks beyond its JSON type and nullability (features.FlightField)."""

    ge: float | None = None  # at least
    gt: float | None = None  # more than
    le: float | None = None  # at most
    pattern: str | None = None  # matched from the first character, as marshmallow's Regexp does
    message: str | None = None  # the refusal's wording when `pattern` does not match
    min_length: int | None = None
    max_length: int | None = None
    checks: tuple[Callable[[Any], Any], ...] = ()  # deterministic: the verdict depends on the value alone


def validate_hhmm(value: int) -> None:
    """Checks a clock time written hhmm: 0..2400 with minutes below 60."""
    if not 0 <= value <= 2400 or value % 100 >= 60:
        raise ma.ValidationError("Must be a time written hhmm (0 to 2400, minutes below 60).")


# NUL, other control characters and lone surrogates: no flight field has them, and PostgreSQL
# cannot store the first and last in the history's JSONB, which would fail the request with a 503.
CONTROL_OR_SURROGATE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# Text without them, whole (\Z: `$` would also match before a final newline).
PLAIN_TEXT = r"[^\x00-\x1f\x7f\ud800-\udfff]*\Z"


def validate_text(value: str) -> None:
    """Refuses text with control characters or lone surrogates (every text field's first check)."""
    if CONTROL_OR_SURROGATE.search(value):
        raise ma.ValidationError("Must be text without control characters or lone surrogates.")


def validate_iso_datetime(value: str) -> None:
    """Checks an ISO 8601 date-time such as 2013-01-01T10:00:00Z."""
    try:
        datetime.fromisoformat(value)
    except ValueError as exc:
        raise ma.ValidationError("Must be an ISO 8601 date-time, e.g. 2013-01-01T10:00:00Z.") from exc


AS_OF_MESSAGE = (
    "Must be an ISO 8601 date-time with an offset (e.g. 2013-01-01T08:15:00-05:00 or 2013-01-01T13:15:00Z), "
    "between years 1 and 9999 in UTC."
)


def validate_aware_datetime(value: str) -> None:
    """Checks an ISO 8601 date-time with an offset, one UTC can express (it is compared as an instant)."""
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("naive")
        moment.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ma.ValidationError(AS_OF_MESSAGE) from exc


@functools.lru_cache(maxsize=4096)
def last_day_of_month(year: int, month: int) -> int:
    """Returns the number of days of a month (28 to 31)."""
    # Cached: every flight of a batch asks, and a batch spans few months.
    return calendar.monthrange(year, month)[1]


# Each flight field's rule (features.API_FIELDS names the fields), by name. Bounds wide enough for
# any real flight and tight enough to refuse nonsense before the model.
FIELD_RULES: dict[str, FieldRule] = {
    "id": FieldRule(ge=0, le=2**63 - 1),
    "year": FieldRule(ge=1900, le=2100),
    "month": FieldRule(ge=1, le=12),
    "day": FieldRule(ge=1, le=31),
    "dep_delay": FieldRule(ge=-1440, le=10080),
    "arr_delay": FieldRule(ge=-1440, le=10080),
    "carrier": FieldRule(pattern=r"^[A-Z0-9]{2}$", message="Must be a two-character airline code."),
    "flight": FieldRule(ge=0, le=99999),
    "tailnum": FieldRule(pattern=r"^[A-Z0-9]{1,10}$", message="Must be a tail number (A-Z, 0-9)."),
    "origin": FieldRule(pattern=r"^[A-Z0-9]{3}$", message="Must be a three-character airport code."),
    "dest": FieldRule(pattern=r"^[A-Z0-9]{3}$", message="Must be a three-character airport code."),
    "air_time": FieldRule(ge=0, le=1440),
    "distance": FieldRule(gt=0, le=20000),
    "hour": FieldRule(ge=0, le=23),
    "minute": FieldRule(ge=0, le=59),
    "time_hour": FieldRule(max_length=40, checks=(validate_iso_datetime,)),
    "name": FieldRule(min_length=1, max_length=128),
    "as_of": FieldRule(max_length=40, checks=(validate_aware_datetime,)),
    **{name: FieldRule(checks=(validate_hhmm,)) for name in HHMM_COLUMNS},
}
NO_RULE = FieldRule()
