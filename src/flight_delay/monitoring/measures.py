"""What is counted of a model's predictions, from what its training profile covers.

Every model: its rows, by basis (the "*" measure). A version-2 profile: each feature as recorded with the
prediction (`predictions.features`) and the prediction itself. A version-1 profile (an older artifact,
profiling input fields as sent): only the input fields the model reads as features as they are; input
fields it does not read, or reads only through a derived feature, are not compared (their training
shares would raise alarms about what the model never sees: `month` on November-December). A context
feature is compared over the predictions scored with context only (see Measure.context_columns).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flight_delay.features import CONTEXT_NAMES
from flight_delay.monitoring.profile import (
    PREDICTION,
    FeatureProfile,
    FieldProfile,
    InputProfile,
    Profile,
    read_profile,
)

ALL_ROWS = "*"  # the measure counting every prediction, by basis
BASIS, FEATURE, PREDICTED, INPUT = "basis", "feature", "prediction", "input"  # where a value is read
# The "*" measure's bins: 0 at departure (or any row of a model with one basis), 1 before departure,
# 2 a row recorded without features (by a server older than feature recording).
AT_DEPARTURE_BIN, BEFORE_DEPARTURE_BIN, UNRECORDED_BASIS = 0, 1, 2


@dataclass(frozen=True)
class Measure:
    """One thing counted per bin: where its value is read, its bins, its position in the recorded features."""

    name: str
    source: str  # BASIS, FEATURE, PREDICTED or INPUT
    bins: FieldProfile | None = None  # None for the rows themselves
    index: int = -1  # a feature's position in predictions.features (BASIS: dep_delay's, or -1)
    # A context feature: the positions of every context feature. A row with all of them null was scored
    # by the boosters for flights without context, which do not read them: not counted for it.
    context_columns: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelMeasures:
    """A model's measures, its profile (if any) and what of drift it cannot report, and why."""

    measures: tuple[Measure, ...]
    profile: Profile | None
    unavailable: str | None  # why drift is not reported at all, or what of it is missing
    width: int = 0  # how many features each prediction records (its contract's)

    @property
    def compared(self) -> tuple[Measure, ...]:
        """The measures drift is reported on (the rows themselves aside)."""
        return tuple(m for m in self.measures if m.source != BASIS)


def feature_names(details: Mapping[str, Any]) -> tuple[str, ...]:
    """The features a model's contract feeds it, in order (none for a model without a contract)."""
    contract = details.get("contract")
    names = contract.get("feature_names") if isinstance(contract, Mapping) else None
    return tuple(str(n) for n in names) if isinstance(names, list) else ()


def basis_measure(names: Sequence[str], profile: Profile | None) -> Measure:
    """The rows, by basis where the rows carry the features saying it (dep_delay null: before departure)."""
    if isinstance(profile, FeatureProfile) and "dep_delay" in names:
        return Measure(ALL_ROWS, BASIS, index=list(names).index("dep_delay"))
    return Measure(ALL_ROWS, BASIS)


def feature_measures(profile: FeatureProfile, names: Sequence[str]) -> tuple[list[Measure], str | None]:
    """The features (as recorded) and the prediction of a version-2 profile."""
    fields = profile.fields()
    missing = [name for name in fields if name != PREDICTION and name not in names]
    if missing:  # a profile that does not fit the model's contract: nothing of it can be compared
        return [], f"the training profile names features the model does not read: {', '.join(missing)}"
    context = tuple(i for i, name in enumerate(names) if name in CONTEXT_NAMES)
    measures = [
        Measure(name, FEATURE, fields[name], i, context if name in CONTEXT_NAMES else ())
        for i, name in enumerate(names)
        if name in fields
    ]
    return [*measures, Measure(PREDICTION, PREDICTED, fields[PREDICTION])], None


def input_measures(profile: InputProfile, names: Sequence[str]) -> tuple[list[Measure], str | None]:
    """The input fields of a version-1 profile that the model reads as features as they are."""
    measures = [Measure(name, INPUT, profile.fields[name]) for name in names if name in profile.fields]
    derived = [name for name in names if name not in profile.fields]
    unavailable = (
        "the model's artifact profiles its input fields as sent (trained before feature profiles): "
        f"not compared: {', '.join([*derived, PREDICTION]) or PREDICTION}"
    )
    return measures, unavailable


def model_measures(details: Mapping[str, Any]) -> ModelMeasures:
    """What to count of a model's predictions, from what was recorded of it at its first load."""
    names = feature_names(details)
    stored = details.get("profile")
    if stored is None:
        reason = "the model's artifact carries no training profile" + ("" if names else " (no contract)")
        return ModelMeasures((basis_measure(names, None),), None, reason, len(names))
    try:
        profile = read_profile(stored)
    except (ValueError, TypeError) as exc:
        reason = f"the model's training profile is malformed: {exc}"
        return ModelMeasures((basis_measure(names, None),), None, reason, len(names))
    if isinstance(profile, FeatureProfile):
        measures, unavailable = feature_measures(profile, names)
    else:
        measures, unavailable = input_measures(profile, names)
    usable = profile if measures else None
    return ModelMeasures((basis_measure(names, usable), *measures), usable, unavailable, len(names))
