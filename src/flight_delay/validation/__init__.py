"""The one check of the flights a prediction carries, whatever protocol brought them.

Every transport (the native JSON route, Open Inference Protocol, MLflow's) hands the data plane a
list of flights as sent; `checked_flights` decides them with the rules compiled once (compiled.py),
and words a refusal per field (wording.py). What costs nothing is checked before what costs: a
batch is counted before any flight is looked at, and a refusal words at most WORDED_MAX flights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flight_delay.errors import InvalidInput
from flight_delay.validation.compiled import accepted_values
from flight_delay.validation.wording import refusal

MAX_BATCH_SIZE = 10_000
BATCH_KEY = "flights"
# A refusal lists the first flights at fault and counts the rest: its size is bounded whatever is sent.
WORDED_MAX = 100
FIELD_ERRORS = "The request is invalid; see errors for each field."


@dataclass(frozen=True)
class FlightInput:
    """A validated flight and the payload exactly as the client sent it."""

    values: dict[str, Any]
    payload: dict[str, Any]


def batch_items(document: Any) -> tuple[list[Any], bool]:
    """The flights of a body (a bare flight is a batch of one) and whether it was one; refuses other shapes.

    Only the shape and the count are looked at: a batch too large is refused before any flight is.
    """
    if type(document) is dict and BATCH_KEY not in document:
        return [document], True
    if type(document) is not dict:
        raise InvalidInput(FIELD_ERRORS, {"_schema": ["Invalid input type."]})
    problems: dict[str, Any] = {key: ["Unknown field."] for key in document if key != BATCH_KEY}
    items = document[BATCH_KEY]
    if type(items) is not list:
        problems[BATCH_KEY] = ["Not a valid list."]
    elif not 1 <= len(items) <= MAX_BATCH_SIZE:
        problems[BATCH_KEY] = [f"Length must be between 1 and {MAX_BATCH_SIZE}."]
    if problems:
        raise InvalidInput(FIELD_ERRORS, problems)
    return items, False


def checked_flights(items: Sequence[Any], single: bool) -> list[FlightInput]:
    """The flights with their checked values; raises InvalidInput worded per flight and field."""
    if not 1 <= len(items) <= MAX_BATCH_SIZE:
        raise InvalidInput(FIELD_ERRORS, {BATCH_KEY: [f"Length must be between 1 and {MAX_BATCH_SIZE}."]})
    values = accepted_values(list(items))
    if values is None:
        raise _refused(items, single)
    return [FlightInput(v, p) for v, p in zip(values, items, strict=True)]


def _refused(items: Sequence[Any], single: bool) -> InvalidInput:
    """The refusal of a batch: the first WORDED_MAX flights at fault, per field, and how many there are."""
    if single:
        return InvalidInput(FIELD_ERRORS, _worded(items[0]))
    at_fault = [index for index, item in enumerate(items) if accepted_values([item]) is None]
    worded = {index: _worded(items[index]) for index in at_fault[:WORDED_MAX]}
    message = FIELD_ERRORS
    if len(at_fault) > WORDED_MAX:
        message = f"{len(at_fault)} of {len(items)} flights are invalid; errors lists the first {WORDED_MAX}."
    if not at_fault:  # each flight passes alone: the batch together failed a check (never seen; said)
        return InvalidInput("The flights are invalid together; send them one by one to see which.")
    return InvalidInput(message, {BATCH_KEY: worded})


def _worded(item: Any) -> dict[str, Any]:
    """What is wrong with one refused flight, per field, as marshmallow words it."""
    return refusal(item) or {"_schema": ["Invalid flight."]}
