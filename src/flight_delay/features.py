"""The flight fields (the API's, the dataset's) and the versioned feature contract of the models.

Three lists, kept apart so that each can grow alone: API_FIELDS (what a flight sent to the API may
hold, each a FlightField), DATASET_COLUMNS (those the flights file has, which the pipeline reads and
writes) and a model's inputs (its contract's input_fields, fixed by the contract version it was
trained with; CONTRACT_VERSIONS holds every version this code still loads).

Training and the API both turn flights into model inputs through `FeatureContract.encode`, so the
numbers a model saw in training are the numbers it sees online. The Spark pipeline builds the same
features with Spark expressions and a parity test holds the two together.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from flight_delay.context.definitions import CONTEXT_FEATURES

TARGET = "arr_delay"


class _NoDefault:
    """The default of a field that has none: a flight that omits it lacks it (the model decides)."""

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True)
class FlightField:
    """One field of a flight: its name, value type, nullability, default and whether the dataset has it."""

    name: str
    kind: str  # "int", "float" or "str"
    nullable: bool = False
    in_dataset: bool = True  # a column of the flights file, which the pipeline reads and writes
    default: Any = NO_DEFAULT  # what the API fills in when a flight omits the field


# The flight fields the API accepts, in order: the case's columns (in the case's order, nullable
# exactly where the data has nulls), then fields only the API knows (in_dataset=False).
API_FIELDS: tuple[FlightField, ...] = (
    FlightField("id", "int"),
    FlightField("year", "int"),
    FlightField("month", "int"),
    FlightField("day", "int"),
    FlightField("dep_time", "int", nullable=True),
    FlightField("sched_dep_time", "int"),
    FlightField("dep_delay", "float", nullable=True),
    FlightField("arr_time", "int", nullable=True),
    FlightField("sched_arr_time", "int"),
    FlightField("arr_delay", "float", nullable=True),
    FlightField("carrier", "str"),
    FlightField("flight", "int"),
    FlightField("tailnum", "str", nullable=True),
    FlightField("origin", "str"),
    FlightField("dest", "str"),
    FlightField("air_time", "float", nullable=True),
    FlightField("distance", "float"),
    FlightField("hour", "int"),
    FlightField("minute", "int"),
    FlightField("time_hour", "str"),
    FlightField("name", "str"),
    # When the prediction is made (ISO 8601 with an offset): the context it reads is what was known
    # then. Absent: the request's arrival. Recorded with the flight, so a replay can look it up again.
    FlightField("as_of", "str", nullable=True, in_dataset=False, default=None),
)
# The dataset's columns: what the pipeline reads and writes.
DATASET_COLUMNS: tuple[FlightField, ...] = tuple(f for f in API_FIELDS if f.in_dataset)
FIELDS_BY_NAME: dict[str, FlightField] = {f.name: f for f in API_FIELDS}
NUMERIC_FIELDS: frozenset[str] = frozenset(f.name for f in API_FIELDS if f.kind != "str")

# A real flight (row 0 of the dataset): every model must score it with a finite number before
# it is allowed to serve.
REFERENCE_FLIGHT: dict[str, Any] = {
    "id": 0,
    "year": 2013,
    "month": 1,
    "day": 1,
    "dep_time": 517,
    "sched_dep_time": 515,
    "dep_delay": 2.0,
    "arr_time": 830,
    "sched_arr_time": 819,
    "arr_delay": 11.0,
    "carrier": "UA",
    "flight": 1545,
    "tailnum": "N14228",
    "origin": "EWR",
    "dest": "IAH",
    "air_time": 227.0,
    "distance": 1400.0,
    "hour": 5,
    "minute": 15,
    "time_hour": "2013-01-01T10:00:00Z",
    "name": "United Air Lines Inc.",
}

CATEGORICAL_FIELDS: tuple[str, ...] = ("carrier", "origin", "dest")
# The numeric inputs the model reads as they are, whose training range a flight is checked against.
RANGED_FIELDS: tuple[str, ...] = ("dep_delay", "distance")
# Up to this many flights, encoding goes row by row in plain Python (numpy's overhead dominates).
ROW_BY_ROW_LIMIT = 16
# Integers the row-by-row path takes: beyond, numpy's int64 date arithmetic may wrap, so it decides.
EXACT_INT_LIMIT = 2**53
# Bounds on a contract read from a file: the real vocabularies have at most ~100 short values.
MAX_CATEGORIES = 10_000
MAX_CATEGORY_LENGTH = 64
# The flight fields the project's model reads: what is known when the flight leaves the gate.
INPUT_FIELDS: tuple[str, ...] = (
    "year",
    "month",
    "day",
    "sched_dep_time",
    "sched_arr_time",
    "dep_delay",
    "distance",
    "carrier",
    "origin",
    "dest",
)


@dataclass(frozen=True)
class ContractShape:
    """What a model of one contract version reads (input_fields) and is fed (feature_names)."""

    input_fields: tuple[str, ...]
    feature_names: tuple[str, ...]

    @property
    def categorical_features(self) -> tuple[str, ...]:
        """The features LightGBM treats as categories: the categorical fields among feature_names."""
        return categorical_among(self.feature_names)


def rows_with_context(features: np.ndarray, columns: Sequence[int]) -> np.ndarray:
    """Per row of a feature matrix, whether it carries context: any of the context `columns` known.

    The rule the model routes by (the boosters with context, or those without) and monitoring counts by.
    """
    return ~np.isnan(features[:, list(columns)]).all(axis=1)


# A flight's own features since contract version 2: without month, since a time split trains on
# January-October, so November and December would fall in October's leaves. Seasonality within a
# week and a day stays (day_of_week, scheduled minutes).
FLIGHT_FEATURES: tuple[str, ...] = (
    "day_of_week",
    "sched_dep_minute",
    "sched_arr_minute",
    "dep_delay",
    "distance",
    "carrier",
    "origin",
    "dest",
)

# Every contract version this code loads and encodes, as trained. A model keeps the version it was
# trained with: a new version is added here (and in encode), never an old one changed.
CONTRACT_VERSIONS: dict[int, ContractShape] = {
    1: ContractShape(
        input_fields=INPUT_FIELDS,
        feature_names=(
            "month",
            "day_of_week",
            "sched_dep_minute",
            "sched_arr_minute",
            "dep_delay",
            "distance",
            "carrier",
            "origin",
            "dest",
        ),
    ),
    2: ContractShape(input_fields=INPUT_FIELDS, feature_names=FLIGHT_FEATURES),
    # The flight's own features, then its context at the prediction time (context/definitions.py):
    # not fields a flight carries, but values the service adds from what was posted (NaN: none).
    3: ContractShape(input_fields=INPUT_FIELDS, feature_names=(*FLIGHT_FEATURES, *CONTEXT_FEATURES)),
}
CURRENT_CONTRACT_VERSION = 3  # what training writes
CONTEXT_NAMES = frozenset(CONTEXT_FEATURES)


def categorical_among(feature_names: Sequence[str]) -> tuple[str, ...]:
    """The categorical fields among a contract's features, in CATEGORICAL_FIELDS' order."""
    return tuple(name for name in CATEGORICAL_FIELDS if name in feature_names)


def contract_shape(version: Any) -> ContractShape:
    """The shape of a known contract version; refuses any other version, naming the known ones."""
    if type(version) is not int or version not in CONTRACT_VERSIONS:
        known = ", ".join(map(str, sorted(CONTRACT_VERSIONS)))
        raise ValueError(f"contract version {version!r} is unknown: this code reads versions {known}")
    return CONTRACT_VERSIONS[version]


def hhmm_to_minutes(hhmm: np.ndarray) -> np.ndarray:
    """Converts clock times written as hhmm (e.g. 1345) to minutes after midnight."""
    return (hhmm // 100) * 60 + hhmm % 100


def day_of_week(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Returns the ISO weekday counted from 0 (Monday) to 6 (Sunday) for each date."""
    months = (year - 1970) * 12 + (month - 1)
    dates = months.astype("datetime64[M]").astype("datetime64[D]") + (day - 1).astype("timedelta64[D]")
    # 1970-01-01, day 0 of the epoch, was a Thursday (3 when Monday is 0).
    return (dates.astype(np.int64) + 3) % 7


@dataclass(frozen=True)
class FeatureContract:
    """What a model reads from a flight and how each raw field becomes a model feature.

    The inputs are the flight as known when it leaves the gate: schedule, route, carrier and the
    departure delay (null before departure). Nothing measured after take-off (air_time,
    arr_time) is an input, so the model cannot peek at its own target.
    """

    categories: Mapping[str, tuple[str, ...]]
    version: int = CURRENT_CONTRACT_VERSION
    feature_names: tuple[str, ...] = CONTRACT_VERSIONS[CURRENT_CONTRACT_VERSION].feature_names
    input_fields: tuple[str, ...] = CONTRACT_VERSIONS[CURRENT_CONTRACT_VERSION].input_fields
    # The training range of the numeric inputs the model reads as they are (none in older contracts).
    ranges: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    _codes: dict[str, dict[str, int]] = field(init=False, repr=False, compare=False)
    _context: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _context_columns: list[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Indexes each vocabulary (encoding a category is a dict lookup); lists the context features."""
        codes = {
            name: {value: i for i, value in enumerate(values)} for name, values in self.categories.items()
        }
        object.__setattr__(self, "_codes", codes)
        context = tuple(n for n in self.feature_names if n in CONTEXT_NAMES)
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_context_columns", [self.feature_names.index(n) for n in context])

    @classmethod
    def fit(cls, columns: Mapping[str, Sequence[Any]]) -> FeatureContract:
        """Learns the category vocabularies from training data."""
        categories = {
            name: tuple(sorted({str(v) for v in columns[name] if v is not None and v == v}))
            for name in CATEGORICAL_FIELDS
        }
        ranges = {}
        for name in (name for name in RANGED_FIELDS if name in columns):
            values = _as_float(columns[name])
            if not np.isnan(values).all():  # a column of nulls has no range
                ranges[name] = (float(np.nanmin(values)), float(np.nanmax(values)))
        return cls(categories=categories, ranges=ranges)

    @property
    def categorical_features(self) -> tuple[str, ...]:
        """Names the features LightGBM must treat as categories."""
        return categorical_among(self.feature_names)

    @property
    def context_features(self) -> tuple[str, ...]:
        """The features a flight does not carry: its context, which the service adds (none before v3)."""
        return getattr(self, "_context", ())  # a contract pickled before v3 lacks it: no context

    @property
    def context_columns(self) -> list[int]:
        """Where the context features are among feature_names."""
        return getattr(self, "_context_columns", [])

    @property
    def nullable_fields(self) -> tuple[str, ...]:
        """Input fields that may be null (the model reads null as missing)."""
        return tuple(f for f in self.input_fields if FIELDS_BY_NAME[f].nullable)

    def unseen(self, flight: Mapping[str, Any]) -> list[dict[str, Any]]:
        """What of a flight the model never saw in training: a category, or a number out of its range."""
        found = []
        for name, codes in self._codes.items():
            value = flight.get(name)
            if value is not None and value not in codes:
                found.append({"field": name, "value": value, "reason": "not seen in training"})
        for name, (low, high) in self.ranges.items():
            value = flight.get(name)
            if value is not None and not low <= value <= high:
                reason = f"outside the training range {low:g} to {high:g}"
                found.append({"field": name, "value": value, "reason": reason})
        return found

    def encode_category(self, name: str, values: Sequence[Any]) -> np.ndarray:
        """Maps category values to their codes; a value unseen in training becomes NaN."""
        codes = self._codes[name]
        return np.array([codes.get(v, np.nan) for v in values], dtype=np.float64)

    def encode(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Builds the feature matrix (rows x feature_names) from raw flight columns."""
        as_int = {
            name: np.asarray(columns[name], dtype=np.int64)
            for name in ("year", "month", "day", "sched_dep_time", "sched_arr_time")
        }
        features = {
            "month": as_int["month"],
            "day_of_week": day_of_week(as_int["year"], as_int["month"], as_int["day"]),
            "sched_dep_minute": hhmm_to_minutes(as_int["sched_dep_time"]),
            "sched_arr_minute": hhmm_to_minutes(as_int["sched_arr_time"]),
            "dep_delay": _as_float(columns["dep_delay"]),
            "distance": _as_float(columns["distance"]),
        }
        for name in self._codes:  # the contract's categorical features
            features[name] = self.encode_category(name, columns[name])
        rows = len(features["month"])
        for name in self.context_features:  # absent: no context (NaN)
            features[name] = _as_float(columns[name]) if name in columns else np.full(rows, np.nan)
        return np.column_stack([np.asarray(features[n], dtype=np.float64) for n in self.feature_names])

    def encode_flights(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Builds the feature matrix from flights given as one mapping per flight."""
        if len(flights) <= ROW_BY_ROW_LIMIT:
            try:
                rows = [self.encode_row(flight) for flight in flights]
            except (TypeError, ValueError, OverflowError, KeyError):
                pass  # not plain ints and floats: the column path converts (or refuses) them its way
            else:
                return np.array(rows, dtype=np.float64).reshape(len(flights), len(self.feature_names))
        return self.encode(flights_to_columns(flights, (*self.input_fields, *self.context_features)))

    def encode_row(self, flight: Mapping[str, Any]) -> list[float]:
        """Encodes one flight of plain ints and floats exactly as `encode` does, without numpy.

        For the few flights of an online request numpy's per-call overhead costs more than the work.
        Raises on anything else (e.g. a float where an int belongs), which `encode` then handles.
        """
        year, month, day = (_exact_int(flight[name]) for name in ("year", "month", "day"))
        # Like `day_of_week`: the month's first day plus day - 1 (no check that the day exists).
        weekday = (date(year, month, 1).toordinal() + day - 2) % 7
        sched_dep, sched_arr = (_exact_int(flight[n]) for n in ("sched_dep_time", "sched_arr_time"))
        features = {
            "month": month,
            "day_of_week": weekday,
            "sched_dep_minute": (sched_dep // 100) * 60 + sched_dep % 100,
            "sched_arr_minute": (sched_arr // 100) * 60 + sched_arr % 100,
            "dep_delay": _scalar_float(flight["dep_delay"]),
            "distance": _scalar_float(flight["distance"]),
        }
        for name, codes in self._codes.items():  # the contract's categorical features
            features[name] = codes.get(flight[name], math.nan)
        for name in self.context_features:  # absent: no context (NaN)
            features[name] = _scalar_float(flight.get(name))
        return [float(features[n]) for n in self.feature_names]

    @classmethod
    def from_dict(cls, data: Any) -> FeatureContract:
        """Rebuilds a contract from `to_dict` output of any known version, refusing what it cannot encode."""
        if not isinstance(data, Mapping):
            raise ValueError("the contract must be an object")
        version = data.get("version")
        shape = contract_shape(version)
        for name in ("feature_names", "input_fields", "categorical_features"):
            if list(data.get(name, ())) != list(getattr(shape, name)):
                raise ValueError(f"contract {name} must be {list(getattr(shape, name))}")
        categories = checked_categories(data.get("categories"), shape.categorical_features)
        return cls(
            categories=categories,
            version=version,
            feature_names=shape.feature_names,
            input_fields=shape.input_fields,
            ranges=checked_ranges(data.get("ranges", {}), shape.feature_names),
        )

    def to_dict(self) -> dict[str, Any]:
        """Describes the contract as plain JSON-ready data."""
        # A contract pickled before ranges existed has no such attribute (from_dict then gives it one).
        ranges = getattr(self, "ranges", None) or {}
        return {
            "version": self.version,
            "input_fields": list(self.input_fields),
            "nullable_fields": list(self.nullable_fields),
            "feature_names": list(self.feature_names),
            "categorical_features": list(self.categorical_features),
            "categories": {k: list(v) for k, v in self.categories.items()},
            **({"ranges": {k: list(v) for k, v in ranges.items()}} if ranges else {}),
        }


def checked_categories(categories: Any, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Reads a contract's vocabularies: exactly `names`, each a bounded list of short strings."""
    if not isinstance(categories, Mapping) or sorted(categories) != sorted(names):
        raise ValueError(f"contract categories must name exactly {list(names)}")
    for name, values in categories.items():
        if not isinstance(values, list | tuple) or len(values) > MAX_CATEGORIES:
            raise ValueError(f"contract categories.{name} must be a list of at most {MAX_CATEGORIES}")
        if not all(isinstance(v, str) and len(v) <= MAX_CATEGORY_LENGTH for v in values):
            raise ValueError(f"contract categories.{name} must hold short strings")
    return {name: tuple(values) for name, values in categories.items()}


def checked_ranges(ranges: Any, feature_names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Reads a contract's ranges: for some of RANGED_FIELDS among its features, [low, high] finite."""
    if not isinstance(ranges, Mapping) or not set(ranges) <= set(RANGED_FIELDS) & set(feature_names):
        raise ValueError(f"contract ranges may name only {list(RANGED_FIELDS)}")
    checked = {}
    for name, bounds in ranges.items():
        if not isinstance(bounds, list | tuple) or len(bounds) != 2:
            raise ValueError(f"contract ranges.{name} must be [low, high]")
        low, high = (
            float(b) if isinstance(b, int | float) and not isinstance(b, bool) else math.nan for b in bounds
        )
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"contract ranges.{name} must be finite numbers, low <= high")
        checked[name] = (low, high)
    return checked


def _exact_int(value: Any) -> int:
    """Returns an int small enough that numpy's int64 arithmetic in `encode` is exact on it too."""
    number = operator.index(value)  # refuses floats and text, as int64 conversion would treat them apart
    if not -EXACT_INT_LIMIT < number < EXACT_INT_LIMIT:
        raise OverflowError("an integer this large overflows (or wraps around in) numpy's int64")
    return number


def _scalar_float(value: Any) -> float:
    """Converts one number to float with None (null) as NaN; refuses what numpy would parse (text)."""
    if value is None:
        return math.nan
    if isinstance(value, str | bytes):
        raise TypeError("text where a number belongs")
    return float(value)


def _as_float(values: Sequence[Any]) -> np.ndarray:
    """Converts numbers to float64 with None (null) as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def flights_to_columns(flights: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """Turns a list of flight mappings into one list per field (absent fields read as None)."""
    return {name: [flight.get(name) for flight in flights] for name in names}
