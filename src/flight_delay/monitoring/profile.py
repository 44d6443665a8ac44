"""The training profile an artifact carries: the bins of what the model reads, and the training share per bin.

Version 2 (FeatureProfile, what both trainers write): the model's features as encoded (the contract's
feature_names, a category as its code) and its prediction, each with one set of bins, and the training
shares of those bins per basis: at departure (the flights whose dep_delay is known, scored by the
at-departure booster) and before departure (every flight with dep_delay hidden, scored by the other).
A report compares a window against the two bases mixed as the window's own predictions are, so that
clients asking before departure more or less often is not drift.

Version 1 (InputProfile, in artifacts written before version 2): each input field as sent. A report
reads from it only the input fields the model reads as features as they are (monitoring/report.py).

A number's bins: null, then below the first edge, then [edge i, edge i+1), then at or above the last
edge. A category's bins: each category (version 2: by its code in the contract's vocabulary), then one
for values unseen in training and nulls.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

PROFILE_VERSION = 2
LEGACY_VERSION = 1
# Deciles: enough bins for PSI's usual reading, few enough that each holds ~10% of training.
QUANTILES = tuple(i / 10 for i in range(1, 10))
MAX_BINS = 10_001  # a contract's vocabulary is at most 10,000 categories, plus the unseen bin
AT_DEPARTURE, BEFORE_DEPARTURE = "at_departure", "before_departure"
BASES = (AT_DEPARTURE, BEFORE_DEPARTURE)
PREDICTION = "prediction"  # the pseudo-feature of a profile's bins: the model's own output


@dataclass(frozen=True)
class FieldProfile:
    """One field's bins (edges for a number, categories for a category) and its training shares."""

    name: str
    kind: str  # "number" or "category"
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    shares: tuple[float, ...] = ()

    def bins_dict(self) -> dict[str, Any]:
        """The field's bins as plain JSON-ready data."""
        bins = {"edges": list(self.edges)} if self.kind == "number" else {"categories": list(self.categories)}
        return {"kind": self.kind, **bins}

    def to_dict(self) -> dict[str, Any]:
        """The field's bins and shares (a version-1 profile's field)."""
        return {**self.bins_dict(), "shares": list(self.shares)}


@dataclass(frozen=True)
class InputProfile:
    """Version 1: each input field as sent, profiled over the training flights."""

    rows: int
    fields: Mapping[str, FieldProfile]

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON-ready data, as older artifacts store it."""
        fields = {name: field.to_dict() for name, field in self.fields.items()}
        return {"version": LEGACY_VERSION, "rows": self.rows, "fields": fields}


@dataclass(frozen=True)
class FeatureProfile:
    """Version 2: the features as encoded and the prediction, their bins and shares per basis."""

    rows: int
    first_flight: str | None  # ISO dates of the training flights' span
    last_flight: str | None
    bases: Mapping[str, tuple[int, Mapping[str, FieldProfile]]]  # basis -> (rows, fields with shares)

    def fields(self, basis: str = AT_DEPARTURE) -> Mapping[str, FieldProfile]:
        """A basis' fields (features, then PREDICTION), each with that basis' shares."""
        return self.bases[basis][1]

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON-ready data, as the artifact stores it."""
        any_basis = self.fields()
        return {
            "version": PROFILE_VERSION,
            "of": "features",
            "flights": {"rows": self.rows, "first": self.first_flight, "last": self.last_flight},
            "bins": {name: field.bins_dict() for name, field in any_basis.items()},
            "bases": {
                basis: {"rows": rows, "shares": {name: list(f.shares) for name, f in fields.items()}}
                for basis, (rows, fields) in self.bases.items()
            },
        }


Profile = InputProfile | FeatureProfile


def read_profile(data: Any) -> Profile:
    """Reads a stored profile of either version; raises ValueError naming what is malformed."""
    if not isinstance(data, Mapping) or data.get("version") not in (LEGACY_VERSION, PROFILE_VERSION):
        raise ValueError(
            f"the training profile must be an object of version {LEGACY_VERSION} or {PROFILE_VERSION}"
        )
    if data["version"] == LEGACY_VERSION:
        return _input_profile(data)
    return _feature_profile(data)


def _input_profile(data: Mapping[str, Any]) -> InputProfile:
    """Reads a version-1 profile."""
    fields = data.get("fields")
    if not isinstance(fields, Mapping) or not fields:
        raise ValueError("the training profile names no fields")
    rows = _count(data.get("rows"), "rows")
    checked = {}
    for name, spec in fields.items():
        bins = checked_bins(name, spec)
        checked[name] = with_shares(bins, spec.get("shares"))
    return InputProfile(rows=rows, fields=checked)


def _feature_profile(data: Mapping[str, Any]) -> FeatureProfile:
    """Reads a version-2 profile: one set of bins, shares for each basis."""
    flights, bins, bases = data.get("flights"), data.get("bins"), data.get("bases")
    if not isinstance(flights, Mapping) or not isinstance(bins, Mapping) or PREDICTION not in bins:
        raise ValueError("the training profile needs flights, and bins naming the prediction")
    if not isinstance(bases, Mapping) or sorted(bases) != sorted(BASES):
        raise ValueError(f"the training profile's bases must be {list(BASES)}")
    layout = {name: checked_bins(name, spec) for name, spec in bins.items()}
    read = {}
    for basis in BASES:
        spec = bases[basis]
        shares = spec.get("shares") if isinstance(spec, Mapping) else None
        if not isinstance(shares, Mapping) or sorted(shares) != sorted(layout):
            raise ValueError(f"profile of {basis}: one list of shares per field of bins")
        fields = {name: with_shares(field, shares[name]) for name, field in layout.items()}
        read[basis] = (_count(spec.get("rows"), f"{basis} rows"), fields)
    first, last = (_date_text(flights.get(end), end) for end in ("first", "last"))
    return FeatureProfile(_count(flights.get("rows"), "rows"), first, last, read)


def checked_bins(name: str, spec: Any) -> FieldProfile:
    """Reads one field's bins: finite increasing edges, or a bounded list of category strings."""
    if not isinstance(spec, Mapping) or spec.get("kind") not in ("number", "category"):
        raise ValueError(f"profile of {name!r}: kind must be number or category")
    if spec["kind"] == "number":
        edges = tuple(float(e) for e in _list(spec.get("edges"), f"profile of {name!r}: edges"))
        if not all(math.isfinite(e) for e in edges) or list(edges) != sorted(set(edges)):
            raise ValueError(f"profile of {name!r}: edges must be finite and increasing")
        return FieldProfile(name, "number", edges=edges)
    categories = _list(spec.get("categories"), f"profile of {name!r}: categories")
    if not all(isinstance(c, str) for c in categories):
        raise ValueError(f"profile of {name!r}: categories must be strings")
    return FieldProfile(name, "category", categories=tuple(categories))


def with_shares(field: FieldProfile, shares: Any) -> FieldProfile:
    """The field with its shares, checked: one in [0, 1] per bin."""
    values = tuple(float(s) for s in _list(shares, f"profile of {field.name!r}: shares"))
    if len(values) != bin_count(field) or not all(0 <= s <= 1 for s in values):
        raise ValueError(f"profile of {field.name!r}: one share in [0, 1] per bin")
    return FieldProfile(field.name, field.kind, field.edges, field.categories, values)


def _list(value: Any, what: str) -> list[Any]:
    """Checks a stored list is one, and bounded."""
    if not isinstance(value, list) or len(value) > MAX_BINS:
        raise ValueError(f"{what} must be a list of at most {MAX_BINS}")
    return value


def _count(value: Any, what: str) -> int:
    """Checks a stored count."""
    if type(value) is not int or value < 0:
        raise ValueError(f"the training profile's {what} must be a count")
    return value


def _date_text(value: Any, what: str) -> str | None:
    """Checks a stored ISO date (or none)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the training profile's first and last flights must be ISO dates ({what})") from exc


def bin_count(field: FieldProfile) -> int:
    """How many bins a field has: null + one more than its edges; or its categories + unseen."""
    return len(field.edges) + 2 if field.kind == "number" else len(field.categories) + 1


def shares_of(counts: Sequence[float]) -> tuple[float, ...]:
    """Turns counts per bin into shares (all zero when nothing was counted)."""
    total = float(sum(counts))
    return tuple(float(c) / total if total else 0.0 for c in counts)


def quantile_edges(values: np.ndarray) -> tuple[float, ...]:
    """The distinct decile edges of the non-null values (none when every value is null)."""
    present = values[~np.isnan(values)]
    if present.size == 0:
        return ()
    return tuple(float(e) for e in np.unique(np.quantile(present, QUANTILES, method="lower")))


def number_bin_counts(values: np.ndarray, edges: Sequence[float]) -> list[int]:
    """Counts values per number bin: nulls, then below the first edge, ..., at or above the last."""
    present = values[~np.isnan(values)]
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), present, side="right")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return [int(values.size - present.size), *(int(c) for c in counts)]


def code_bin_counts(codes: np.ndarray, categories: Sequence[str]) -> list[int]:
    """Counts encoded categories per bin: each code, then the nulls (unseen in training)."""
    present = codes[~np.isnan(codes)].astype(np.int64)
    counts = np.bincount(present, minlength=len(categories))[: len(categories)]
    return [*(int(c) for c in counts), int(codes.size - present.size)]


def feature_bins(
    names: Sequence[str], features: np.ndarray, vocabularies: Mapping[str, Sequence[str]]
) -> dict[str, FieldProfile]:
    """Each feature's bins: a category's vocabulary, a number's deciles over every training row."""
    bins = {}
    for index, name in enumerate(names):
        if name in vocabularies:
            bins[name] = FieldProfile(name, "category", categories=tuple(vocabularies[name]))
        else:
            bins[name] = FieldProfile(name, "number", edges=quantile_edges(features[:, index]))
    return bins


def counted_shares(bins: FieldProfile, values: np.ndarray) -> FieldProfile:
    """The field with the shares of `values` in its bins."""
    if bins.kind == "category":
        counts = code_bin_counts(values, bins.categories)
    else:
        counts = number_bin_counts(values, bins.edges)
    return FieldProfile(bins.name, bins.kind, bins.edges, bins.categories, shares_of(counts))


def prediction_fields(
    matrices: Mapping[str, np.ndarray], predict: Callable[[np.ndarray], np.ndarray]
) -> dict[str, FieldProfile]:
    """The model's predictions on each basis' training rows: one set of bins for both, shares each."""
    predictions = {basis: np.asarray(predict(matrix), dtype=np.float64) for basis, matrix in matrices.items()}
    bins = FieldProfile(PREDICTION, "number", edges=quantile_edges(np.concatenate([*predictions.values()])))
    return {basis: counted_shares(bins, values) for basis, values in predictions.items()}


def profile_features(
    names: Sequence[str],
    matrices: Mapping[str, np.ndarray],
    vocabularies: Mapping[str, Sequence[str]],
    predict: Callable[[np.ndarray], np.ndarray],
    flight_dates: tuple[str | None, str | None],
) -> FeatureProfile:
    """Profiles each basis' training rows (rows x names, as that basis read them) and its predictions.

    A number's bins are its deciles over both bases' rows; the profile's `rows` counts the flights
    (every flight has a row before departure).
    """
    layout = feature_bins(names, np.concatenate([*matrices.values()]), vocabularies)
    predictions = prediction_fields(matrices, predict)
    bases = {}
    for basis, matrix in matrices.items():
        fields = {name: counted_shares(layout[name], matrix[:, i]) for i, name in enumerate(names)}
        bases[basis] = (len(matrix), {**fields, PREDICTION: predictions[basis]})
    return FeatureProfile(len(matrices[BEFORE_DEPARTURE]), *flight_dates, bases)


def flight_span(years: np.ndarray, months: np.ndarray, days: np.ndarray) -> tuple[str | None, str | None]:
    """The first and last date of the training flights (ISO), or none when there are none."""
    if len(years) == 0:
        return None, None
    months_since_epoch = (
        (np.asarray(years, dtype=np.int64) - 1970) * 12 + np.asarray(months, dtype=np.int64) - 1
    )
    dates = months_since_epoch.astype("datetime64[M]").astype("datetime64[D]") + (
        np.asarray(days, dtype=np.int64) - 1
    ).astype("timedelta64[D]")
    return str(dates.min()), str(dates.max())
