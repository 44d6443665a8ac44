"""The training profile an artifact carries: each input field's bins and the training share per bin.

A number's bins: null, then below the first edge, then [edge i, edge i+1), then at or above the last
edge. A category's bins: each training category, then one for values unseen in training (null too).
The same bins are counted over served flights to measure drift (monitoring/report.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flight_delay.features import FIELDS_BY_NAME

PROFILE_VERSION = 1
# Deciles: enough bins for PSI's usual reading, few enough that each holds ~10% of training.
QUANTILES = tuple(i / 10 for i in range(1, 10))
MAX_BINS = 10_001  # a contract's vocabulary is at most 10,000 categories, plus the unseen bin


@dataclass(frozen=True)
class FieldProfile:
    """One input field's bins (edges for a number, categories for a category) and training shares."""

    name: str
    kind: str  # "number" or "category"
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    shares: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The field's profile as plain JSON-ready data."""
        bins = {"edges": list(self.edges)} if self.kind == "number" else {"categories": list(self.categories)}
        return {"kind": self.kind, **bins, "shares": list(self.shares)}


@dataclass(frozen=True)
class TrainingProfile:
    """Every input field's profile, and how many training rows it was counted on."""

    rows: int
    fields: Mapping[str, FieldProfile]

    def to_dict(self) -> dict[str, Any]:
        """The profile as plain JSON-ready data, as the artifact stores it."""
        fields = {name: field.to_dict() for name, field in self.fields.items()}
        return {"version": PROFILE_VERSION, "rows": self.rows, "fields": fields}

    @classmethod
    def from_dict(cls, data: Any) -> TrainingProfile:
        """Reads a stored profile; raises ValueError naming what is malformed."""
        if not isinstance(data, Mapping) or data.get("version") != PROFILE_VERSION:
            raise ValueError(f"the training profile must be an object of version {PROFILE_VERSION}")
        fields = data.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            raise ValueError("the training profile names no fields")
        rows = data.get("rows")
        if type(rows) is not int or rows < 0:
            raise ValueError("the training profile's rows must be a count")
        return cls(rows=rows, fields={name: checked_field(name, spec) for name, spec in fields.items()})


def checked_field(name: str, spec: Any) -> FieldProfile:
    """Reads one field's stored profile, checking its bins and shares agree."""
    if not isinstance(spec, Mapping) or spec.get("kind") not in ("number", "category"):
        raise ValueError(f"profile of {name!r}: kind must be number or category")
    shares = tuple(float(s) for s in _list(spec.get("shares"), f"profile of {name!r}: shares"))
    if spec["kind"] == "number":
        edges = tuple(float(e) for e in _list(spec.get("edges"), f"profile of {name!r}: edges"))
        if not all(math.isfinite(e) for e in edges) or list(edges) != sorted(set(edges)):
            raise ValueError(f"profile of {name!r}: edges must be finite and increasing")
        field = FieldProfile(name, "number", edges=edges, shares=shares)
    else:
        categories = _list(spec.get("categories"), f"profile of {name!r}: categories")
        if not all(isinstance(c, str) for c in categories):
            raise ValueError(f"profile of {name!r}: categories must be strings")
        field = FieldProfile(name, "category", categories=tuple(categories), shares=shares)
    if len(shares) != bin_count(field) or not all(0 <= s <= 1 for s in shares):
        raise ValueError(f"profile of {name!r}: one share in [0, 1] per bin")
    return field


def _list(value: Any, what: str) -> list[Any]:
    """Checks a stored list is one, and bounded."""
    if not isinstance(value, list) or len(value) > MAX_BINS:
        raise ValueError(f"{what} must be a list of at most {MAX_BINS}")
    return value


def bin_count(field: FieldProfile) -> int:
    """How many bins a field has: null + one more than its edges; or its categories + unseen."""
    return len(field.edges) + 2 if field.kind == "number" else len(field.categories) + 1


def field_kind(name: str) -> str:
    """Whether a flight field is profiled as a number or a category."""
    return "category" if FIELDS_BY_NAME[name].kind == "str" else "number"


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


def category_bin_counts(values: pd.Series, categories: Sequence[str]) -> list[int]:
    """Counts values per category bin, the last bin holding values not among the categories."""
    counted = values.astype("string").value_counts(dropna=True)
    known = [int(counted.get(c, 0)) for c in categories]
    return [*known, int(len(values) - sum(known))]


def profile_frame(train: pd.DataFrame, input_fields: Sequence[str]) -> TrainingProfile:
    """Profiles the training flights of a pandas frame (the dummy trainer's)."""
    fields = {}
    for name in input_fields:
        if field_kind(name) == "number":
            values = pd.to_numeric(train[name], errors="coerce").to_numpy(dtype=np.float64)
            edges = quantile_edges(values)
            counts = number_bin_counts(values, edges)
            fields[name] = FieldProfile(name, "number", edges=edges, shares=shares_of(counts))
        else:
            categories = tuple(sorted(train[name].dropna().astype(str).unique()))
            counts = category_bin_counts(train[name], categories)
            fields[name] = FieldProfile(name, "category", categories=categories, shares=shares_of(counts))
    return TrainingProfile(rows=len(train), fields=fields)
