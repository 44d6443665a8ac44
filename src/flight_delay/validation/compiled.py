"""Each field rule compiled once: msgspec types (checked in C) and value tests, which decide every flight.

msgspec checks each field's JSON type, nullability, bounds and lengths; text rules (plain text, the
rule's pattern), the rule's `checks` and the date check run afterwards in Python, once per distinct
value: a batch repeats its carriers, airports and times. `accepted_values` decides a whole batch;
a refused one is worded flight by flight in wording.py.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any, TypedDict

import marshmallow as ma
import msgspec

from flight_delay.features import API_FIELDS, NO_DEFAULT, FlightField
from flight_delay.validation.rules import FIELD_RULES, NO_RULE, PLAIN_TEXT, FieldRule, last_day_of_month

JSON_TYPES = {"int": int, "float": float, "str": str}


def field_type(spec: FlightField, rule: FieldRule) -> Any:
    """The msgspec type of one flight field: its JSON type under its rule's constraints, maybe null."""
    constrained = Annotated[JSON_TYPES[spec.kind], msgspec.Meta(**constraints(spec, rule))]
    return constrained | None if spec.nullable else constrained


def constraints(spec: FlightField, rule: FieldRule) -> dict[str, Any]:
    """msgspec.Meta's arguments for a rule; floats are bounded to refuse NaN and infinities."""
    meta: dict[str, Any] = {"ge": rule.ge, "gt": rule.gt, "le": rule.le}
    if spec.kind == "float" and rule.gt is None and rule.ge is None:
        meta["ge"] = -sys.float_info.max
    if spec.kind == "float" and rule.le is None:
        meta["le"] = sys.float_info.max
    if spec.kind == "str":
        meta["min_length"], meta["max_length"] = rule.min_length, rule.max_length
    return {key: value for key, value in meta.items() if value is not None}


def value_test(spec: FlightField, rule: FieldRule) -> Callable[[Any], bool] | None:
    """What a field's value must pass in Python, as FlightSchema's text check, Regexp and checks do."""
    checks = partial(passes, rule.checks) if rule.checks else None
    if spec.kind != "str":
        return checks
    # marshmallow's order: plain text (validate_text), then the rule's pattern from the first character.
    match = re.compile(rf"(?={PLAIN_TEXT})(?:{rule.pattern or ''})").match
    if checks is None:
        return lambda value: match(value) is not None
    return lambda value: match(value) is not None and checks(value)


def passes(checks: tuple[Callable[[Any], Any], ...], value: Any) -> bool:
    """Whether a value passes marshmallow-style validators: none raises, none returns False."""
    try:
        return all(check(value) is not False for check in checks)
    except ma.ValidationError:
        return False


FLIGHT = TypedDict(  # type: ignore[misc]  # built from API_FIELDS
    "FLIGHT",
    {spec.name: field_type(spec, FIELD_RULES.get(spec.name, NO_RULE)) for spec in API_FIELDS},
    total=False,
)
FLIGHTS = list[FLIGHT]  # type: ignore[valid-type]
INTEGERS = frozenset(spec.name for spec in API_FIELDS if spec.kind == "int")
DEFAULTS = {spec.name: spec.default for spec in API_FIELDS if spec.default is not NO_DEFAULT}
# Each tested field, its test, and the values it passed (None stands for null or absent: not tested).
TESTS = [
    (spec.name, test, {None})
    for spec in API_FIELDS
    if (test := value_test(spec, FIELD_RULES.get(spec.name, NO_RULE))) is not None
]
REMEMBERED = 4096  # values kept per field; enough for every carrier, airport, tail number and time


def accepted_values(items: list[Any]) -> list[dict[str, Any]] | None:
    """The flights' values, defaults filled in, when every flight passes its rules; None if one does not."""
    values = _converted(items)
    if values is None or _unknown_keys(values, items):
        return None
    _fill_defaults(values)
    if not _values_pass(values) or not _dates_exist(values):
        return None
    return values


def _converted(items: list[Any]) -> list[dict[str, Any]] | None:
    """The flights' values as msgspec checks them, pandas' spellings read as FlightSchema reads them."""
    # Any failure declines, not only a refusal: msgspec raises UnicodeEncodeError, say, while wording
    # the refusal of a lone surrogate; marshmallow then answers, as for everything in doubt.
    try:
        return msgspec.convert(items, FLIGHTS)
    except Exception:  # noqa: S110 - declined: the DataFrame spelling below, or marshmallow
        pass
    if not all(type(item) is dict for item in items):
        return None
    try:  # NaN as null, 517.0 as 517 in integer fields (JsonInteger, NanIsNull): a DataFrame's records
        return msgspec.convert([_json_spelled(item) for item in items], FLIGHTS)
    except Exception:
        return None


def _json_spelled(item: dict[str, Any]) -> dict[str, Any]:
    """A copy of a flight with NaN as None and integral floats in integer fields as integers."""
    return {name: _json_value(name, value) if type(value) is float else value for name, value in item.items()}


def _json_value(name: str, number: float) -> float | int | None:
    """One float as FlightSchema reads it: NaN is null, 517.0 in an integer field is 517."""
    if math.isnan(number):
        return None
    return int(number) if name in INTEGERS and number.is_integer() else number


def _unknown_keys(values: list[dict[str, Any]], items: list[dict[str, Any]]) -> bool:
    """Whether a flight held a key that is not a flight field (msgspec kept only the known ones)."""
    return list(map(len, values)) != list(map(len, items))


def _fill_defaults(values: list[dict[str, Any]]) -> None:
    """Gives absent fields their load_default, unchecked, as marshmallow does."""
    for name, default in DEFAULTS.items():
        for flight in values:
            if name not in flight:
                flight[name] = default() if callable(default) else default


def _values_pass(values: list[dict[str, Any]]) -> bool:
    """Tests each field's values, once per value: a verdict depends on the value alone, so it is kept."""
    for name, test, passed in TESTS:
        distinct = (values[0].get(name),) if len(values) == 1 else {flight.get(name) for flight in values}
        for value in distinct:
            if value in passed:
                continue
            if not test(value):
                return False
            if len(passed) >= REMEMBERED:  # bounded whatever clients send; the common values return
                passed.intersection_update({None})
            passed.add(value)
    return True


def _dates_exist(values: list[dict[str, Any]]) -> bool:
    """FlightSchema.validate_date: year, month and day, when all three are given, name a real date."""
    dates = {(flight.get("year"), flight.get("month"), flight.get("day")) for flight in values}
    return all(
        day <= last_day_of_month(year, month)
        for year, month, day in dates
        if year is not None and month is not None and day is not None
    )
