"""Predictions counted per bin of each measure, from their rows streamed in batches, with numpy.

One scan of a range reads each row's recorded features, prediction and (for an older artifact's profile)
input once, and every measure bins them: far cheaper than one SQL aggregate per measure, each parsing
the row's JSON again (~2.6 us a row and a measure on SQLite, bench/PROFILE.md). Memory stays bounded
by the batch. A number's bin: 0 null, then 1 + how many edges are at or below it; a category's: its
position (an encoded feature: its code), the last bin for null or unseen.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from flight_delay.features import rows_with_context
from flight_delay.monitoring.measures import (
    AT_DEPARTURE_BIN,
    BASIS,
    BEFORE_DEPARTURE_BIN,
    INPUT,
    PREDICTED,
    UNRECORDED_BASIS,
    Measure,
)
from flight_delay.monitoring.profile import FieldProfile

NOT_COUNTED = -1  # a row that tells nothing of a measure (recorded without features)
Counted = Counter[tuple[str | None, str, int]]  # (hour text or None, measure, bin) -> rows


@dataclass(frozen=True)
class Batch:
    """Some predictions' columns: their hour, features (rows x features, NaN null), prediction, inputs."""

    hours: np.ndarray  # hour text per row (None when not counted per hour)
    features: np.ndarray
    recorded: np.ndarray  # whether the row recorded its features
    predicted: np.ndarray
    inputs: list[dict[str, Any]] | None  # parsed only when a measure reads the input
    # Per set of context columns, which rows carry context: worked out once, shared by their measures.
    _with_context: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def with_context(self, columns: tuple[int, ...]) -> np.ndarray:
        """Which rows carry any of these (context) features: those the boosters with context scored."""
        if columns not in self._with_context:
            self._with_context[columns] = rows_with_context(self.features, columns)
        return self._with_context[columns]


def parsed_features(texts: Sequence[str | bytes | None], width: int) -> tuple[np.ndarray, np.ndarray]:
    """The recorded features as a float matrix (null as NaN) and which rows recorded them (of `width`)."""
    parsed = [orjson.loads(text) if text is not None else None for text in texts]
    recorded = np.array([isinstance(v, list) and len(v) == width for v in parsed], dtype=bool)
    blank = [None] * width
    rows = [values if ok else blank for values, ok in zip(parsed, recorded.tolist(), strict=True)]
    matrix = np.array(rows, dtype=np.float64).reshape(len(texts), width)  # None becomes NaN
    return matrix, recorded


def batch_of(rows: Sequence[Any], width: int, with_inputs: bool) -> Batch:
    """A batch from rows of (hour, features text, prediction, input text)."""
    hours = np.array([row[0] for row in rows], dtype=object)
    features, recorded = parsed_features([row[1] for row in rows], width)
    predicted = np.array([row[2] for row in rows], dtype=np.float64)
    inputs = [orjson.loads(row[3]) if row[3] is not None else {} for row in rows] if with_inputs else None
    return Batch(hours, features, recorded, predicted, inputs)


def number_bins(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Each value's number bin (0 for NaN)."""
    bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right") + 1
    return np.where(np.isnan(values), 0, bins)


def code_bins(codes: np.ndarray, field: FieldProfile) -> np.ndarray:
    """Each encoded category's bin: its code, or the last bin for null or a code out of the vocabulary."""
    unseen = len(field.categories)
    safe = np.nan_to_num(codes, nan=-1.0)
    inside = (safe >= 0) & (safe < unseen) & (safe == np.floor(safe))
    return np.where(inside, safe, unseen).astype(np.int64)


def input_bins(measure: Measure, inputs: list[dict[str, Any]]) -> np.ndarray:
    """Bins of an input field as sent (an older artifact's profile)."""
    field = measure.bins
    assert field is not None
    values = [flight.get(measure.name) for flight in inputs]
    if field.kind == "number":
        numbers = [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values]
        return number_bins(np.array(numbers, dtype=np.float64), field.edges)
    positions = {category: i for i, category in enumerate(field.categories)}
    return np.array([positions.get(v, len(field.categories)) for v in values], dtype=np.int64)


def bins_of(measure: Measure, batch: Batch) -> np.ndarray:
    """The bin of each row of the batch for one measure (NOT_COUNTED where it tells nothing)."""
    bins = _bins_of(measure, batch)
    if not measure.context_columns:
        return bins
    found = batch.with_context(measure.context_columns)
    return np.where(found, bins, NOT_COUNTED)


def _bins_of(measure: Measure, batch: Batch) -> np.ndarray:
    """The bin of each row for one measure, whoever scored it."""
    if measure.source == BASIS:
        if measure.index < 0:
            return np.full(len(batch.predicted), AT_DEPARTURE_BIN)
        departed = ~np.isnan(batch.features[:, measure.index])
        basis = np.where(departed, AT_DEPARTURE_BIN, BEFORE_DEPARTURE_BIN)
        return np.where(batch.recorded, basis, UNRECORDED_BASIS)
    assert measure.bins is not None
    if measure.source == PREDICTED:
        return number_bins(batch.predicted, measure.bins.edges)
    if measure.source == INPUT:
        return input_bins(measure, batch.inputs or [])
    values = batch.features[:, measure.index]
    found = (
        code_bins(values, measure.bins)
        if measure.bins.kind == "category"
        else number_bins(values, measure.bins.edges)
    )
    return np.where(batch.recorded, found, NOT_COUNTED)


def count_batch(measures: Iterable[Measure], batch: Batch, counted: Counted) -> None:
    """Adds the batch's rows per (hour, measure, bin) to `counted`."""
    labels: dict[Any, int] = {}
    hour_codes = np.array([labels.setdefault(hour, len(labels)) for hour in batch.hours], dtype=np.int64)
    hours = list(labels)
    for measure in measures:
        bins = bins_of(measure, batch)
        keep = bins != NOT_COUNTED
        span = int(bins.max(initial=0)) + 1
        keys, rows = np.unique(hour_codes[keep] * span + bins[keep], return_counts=True)
        for key, count in zip(keys.tolist(), rows.tolist(), strict=True):
            counted[(hours[key // span], measure.name, key % span)] += count


def reads_input(measures: Iterable[Measure]) -> bool:
    """Whether any measure reads the input as sent (an older artifact's profile)."""
    return any(m.source == INPUT for m in measures)
