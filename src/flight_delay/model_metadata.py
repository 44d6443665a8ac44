"""The schemas of what a project artifact says about itself: metrics, training record, profile.

GET /model/ shows them, GET /model/card renders them (card.py), monitoring bins by the profile: a
model whose metadata does not fit these schemas is refused when it is read (artifact.checked_model),
naming the field, rather than loading and then failing each page that reads it. Both shapes written
so far are accepted: one booster (contract version 1, metrics without `bases`), two bases, and two
bases with their gains, factor breakdowns and the train/test shift (contract version 3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import marshmallow as ma

from flight_delay.features import FIELDS_BY_NAME, FeatureContract
from flight_delay.monitoring.profile import PREDICTION, FeatureProfile, InputProfile, read_profile


class InvalidMetadata(ValueError):
    """An artifact's metadata does not fit its schema; `errors` names each field and why."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(f"its metadata is invalid: {_first_error(errors)}")
        self.errors = errors


class StrictSchema(ma.Schema):
    """A schema refusing fields it does not name."""

    class Meta:
        unknown = ma.RAISE


class ScoresSchema(StrictSchema):
    """One predictor's errors on a set of flights (evaluation.regression_metrics)."""

    mae = ma.fields.Float(required=True)
    rmse = ma.fields.Float(required=True)
    r2 = ma.fields.Float(allow_none=True)
    median_ae = ma.fields.Float()
    rows = ma.fields.Integer(required=True, strict=True, validate=ma.validate.Range(min=0))


class TabledScoresSchema(ScoresSchema):
    """Scores as the card's table prints them: the median absolute error is required."""

    median_ae = ma.fields.Float(required=True)
    r2 = ma.fields.Float(required=True, allow_none=True)


def _scores_by(schema: type[ma.Schema], **kwargs: Any) -> ma.fields.Dict:
    """A mapping of predictor (or group value) names to scores."""
    return ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(schema), **kwargs)


class GainSchema(StrictSchema):
    """The gain over the best baseline on one metric, with its day-block interval (evaluation.best_gain)."""

    baseline = ma.fields.String(required=True)
    model = ma.fields.Float(required=True)
    baseline_value = ma.fields.Float(required=True)
    gain = ma.fields.Float(required=True)
    ratio = ma.fields.Float(required=True, allow_none=True)
    ci95 = ma.fields.List(ma.fields.Float(), required=True, validate=ma.validate.Length(equal=2))
    days = ma.fields.Integer(required=True, strict=True)
    days_better = ma.fields.Float(required=True)


class FactorSchema(StrictSchema):
    """One factor value's flights and MAEs: the model's and the best baseline's (evaluation.factor_table)."""

    rows = ma.fields.Integer(required=True, strict=True)
    model_mae = ma.fields.Float(required=True)
    baseline_mae = ma.fields.Float(required=True)


class BasisSchema(StrictSchema):
    """One basis' table: overall, per group value, where a baseline wins (evaluation.basis_table), and
    since contract version 3 what it predicts, its gains and its factors."""

    overall = _scores_by(TabledScoresSchema, required=True)
    by = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Dict(keys=ma.fields.String(), values=_scores_by(ScoresSchema)),
        required=True,
    )
    loses_to = ma.fields.List(ma.fields.String(), required=True)
    predicts = ma.fields.String(validate=ma.validate.OneOf(["mean", "median"]))
    gain = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(GainSchema))
    factors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(FactorSchema)),
    )


class DelaysSchema(StrictSchema):
    """A period's arrival delays, summarised (evaluation.delays)."""

    rows = ma.fields.Integer(required=True, strict=True)
    mean = ma.fields.Float(required=True)
    median = ma.fields.Float(required=True)
    late_share = ma.fields.Float(required=True)


class MetricsSchema(StrictSchema):
    """The test split's metrics (evaluation.holdout_metrics); every part optional, each typed."""

    test = ma.fields.Nested(ScoresSchema)
    baselines = _scores_by(ScoresSchema)
    bases = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(BasisSchema))
    shift = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Nested(DelaysSchema))


class SplitSchema(ma.Schema):
    """Which months trained and which tested."""

    class Meta:
        unknown = ma.INCLUDE

    train_months = ma.fields.Raw()
    test_months = ma.fields.Raw()


class TrainingSchema(ma.Schema):
    """The training record: what the card reads is typed, the rest is kept as written."""

    class Meta:
        unknown = ma.INCLUDE

    seed = ma.fields.Integer(strict=True)
    rounds = ma.fields.Integer(strict=True)
    train_rows = ma.fields.Integer(strict=True)
    test_rows = ma.fields.Integer(strict=True)
    source = ma.fields.String()
    split = ma.fields.Nested(SplitSchema, allow_none=True)
    data = ma.fields.Dict(keys=ma.fields.String(), allow_none=True)
    libraries = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(), allow_none=True)


METRICS = MetricsSchema()
TRAINING = TrainingSchema()


def check_metadata(
    metrics: Mapping[str, Any], training: Mapping[str, Any], profile: Any, contract: FeatureContract
) -> None:
    """Validates metrics, training record and profile; raises InvalidMetadata naming each bad field."""
    errors: dict[str, Any] = {}
    for name, schema, value in (("metrics", METRICS, metrics), ("training", TRAINING, training)):
        try:
            schema.load(value)
        except ma.ValidationError as exc:
            errors[name] = exc.messages
    if profile is not None:
        problem = _profile_problem(profile, contract)
        if problem:
            errors["profile"] = [problem]
    if errors:
        raise InvalidMetadata(errors)


def _profile_problem(profile: Any, contract: FeatureContract) -> str | None:
    """What is wrong with a training profile (monitoring reads it to bin served flights), if anything."""
    try:
        read = read_profile(profile)
    except (ValueError, TypeError) as exc:
        return str(exc)
    if isinstance(read, InputProfile):
        return _input_profile_problem(read, contract.input_fields)
    return _feature_profile_problem(read, contract)


def _input_profile_problem(read: InputProfile, input_fields: Sequence[str]) -> str | None:
    """An older artifact's profile of its input fields: each one of them, of its kind."""
    for name, field in read.fields.items():
        if name not in input_fields or name not in FIELDS_BY_NAME:
            return f"it profiles {name!r}, which is not one of the model's input fields"
        kind = "category" if FIELDS_BY_NAME[name].kind == "str" else "number"
        if field.kind != kind:
            return f"it profiles {name!r} as a {field.kind}, which the field is not"
    return None


def _feature_profile_problem(read: FeatureProfile, contract: FeatureContract) -> str | None:
    """A profile of the features: exactly the contract's, a category binned by its vocabulary's codes."""
    fields = read.fields()
    names = sorted(name for name in fields if name != PREDICTION)
    if names != sorted(contract.feature_names):
        return f"it profiles the features {names}, not the contract's {sorted(contract.feature_names)}"
    for name in names:
        vocabulary = contract.categories.get(name) if name in contract.categorical_features else None
        if (fields[name].kind == "category") != (vocabulary is not None):
            return f"it profiles {name!r} as a {fields[name].kind}, which the feature is not"
        if vocabulary is not None and fields[name].categories != tuple(vocabulary):
            return f"its categories of {name!r} are not the contract's vocabulary (codes would not match)"
    return None


def _first_error(errors: Mapping[str, Any], path: str = "") -> str:
    """The first field error, as dotted.path: message."""
    for key, value in errors.items():
        where = f"{path}.{key}" if path else str(key)
        if isinstance(value, Mapping):
            return _first_error(value, where)
        message = value[0] if isinstance(value, list) and value else value
        return f"{where}: {str(message).rstrip('.')}"
    return path
