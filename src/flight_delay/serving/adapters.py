"""Wraps every accepted kind of model behind one interface: input fields, predict, describe."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

from flight_delay.artifact import FlightDelayModel, checked_model
from flight_delay.errors import UnusableModel
from flight_delay.features import FIELDS_BY_NAME, NUMERIC_FIELDS, TARGET, flights_to_columns
from flight_delay.serving.single_row import BoosterRunner

ACCEPTED = (
    "the project's artifact (flight-delay train / model_dummy.py), a fitted lightgbm.LGBMRegressor "
    "or lightgbm.Booster, or a scikit-learn Pipeline ending in one"
)


class ServingModel:
    """A model the API can serve: which flight fields it reads and how it predicts."""

    kind: str = "unknown"
    input_fields: tuple[str, ...] = ()
    context_features: tuple[str, ...] = ()  # what the service adds to each flight (contract v3 on)

    @property
    def nullable_fields(self) -> tuple[str, ...]:
        """Input fields that may be null (the registry of flight fields says which)."""
        return tuple(f for f in self.input_fields if FIELDS_BY_NAME[f].nullable)

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicts the arrival delay (minutes) of each flight."""
        raise NotImplementedError

    def predict_recorded(self, flights: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[Any] | None]:
        """Predicts, and says per flight what the model read (its features) for the history; None: unknown."""
        return self.predict(flights), None

    def describe(self) -> dict[str, Any]:
        """Returns what the model carries about itself (metrics, training, contract)."""
        return {}

    def unseen_inputs(self, flights: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        """Per flight, what the model never saw in training (only models that know their training say)."""
        return [[] for _ in flights]


class ProjectModel(ServingModel):
    """The project's own artifact, which carries its feature contract and metrics."""

    kind = "flight-delay/lightgbm"

    def __init__(self, model: FlightDelayModel) -> None:
        try:
            self.model = checked_model(model)
        except ValueError as exc:  # InvalidMetadata carries each field's error
            raise UnusableModel(
                f"The project artifact is inconsistent: {exc}.", getattr(exc, "errors", None)
            ) from exc
        self.input_fields = self.model.input_fields
        self.context_features = self.model.contract.context_features
        boosters = (
            self.model.booster,
            self.model.before_departure,
            *(self.model.without_context or {}).values(),
        )
        self.runners = {id(booster): BoosterRunner(booster) for booster in boosters if booster is not None}

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encodes the flights through the contract and runs each basis' booster (one-row API for one)."""
        return self._predict_features(self.model.contract.encode_flights(flights))

    def predict_recorded(self, flights: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, list[Any] | None]:
        """Predicts, and returns the encoded features beside (one list per flight; NaN is stored as null)."""
        features = self.model.contract.encode_flights(flights)
        return self._predict_features(features), features.tolist()

    def _predict_features(self, features: np.ndarray) -> np.ndarray:
        """Runs each basis' booster on its rows of the encoded features."""
        return self.model.predict_with(
            features, lambda booster, rows: self.runners[id(booster)].predict(rows)
        )

    def describe(self) -> dict[str, Any]:
        """Returns the artifact's contract, metrics and training record."""
        return self.model.describe()

    def unseen_inputs(self, flights: Sequence[Mapping[str, Any]]) -> list[list[dict[str, Any]]]:
        """Per flight, the categories and numbers its contract never saw in training."""
        return [self.model.contract.unseen(flight) for flight in flights]


class BoosterModel(ServingModel):
    """A bare LightGBM booster whose features are numeric dataset columns, read as they are."""

    def __init__(self, booster: lgb.Booster, kind: str) -> None:
        self.booster = booster
        self.kind = kind
        self.input_fields = tuple(booster.feature_name())
        check_feature_names(self.input_fields, numeric_only=True)
        self.runner = BoosterRunner(booster)

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Builds a float matrix from the flights (null as NaN) and runs the booster (one row: row API)."""
        columns = flights_to_columns(flights, self.input_fields)
        matrix = np.array(
            [[np.nan if v is None else v for v in columns[name]] for name in self.input_fields],
            dtype=np.float64,
        ).T
        return self.runner.predict(matrix)


class PipelineModel(ServingModel):
    """A fitted scikit-learn Pipeline ending in a LightGBM regressor, fed a pandas DataFrame.

    Its regressor predicts on one thread, as every served booster does (single_row.py): with its
    default n_jobs, LightGBM's wrapper would also look up the machine's CPUs on every prediction,
    reading cgroup files, which the model sandbox cannot open.
    """

    kind = "sklearn.Pipeline"

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        final = pipeline.steps[-1][1]
        if isinstance(final, lgb.LGBMModel):
            final.set_params(n_jobs=1)
        names = getattr(pipeline, "feature_names_in_", None)
        if names is None:
            raise UnusableModel(
                "The pipeline was not fitted on a DataFrame, so it does not name its input "
                "columns; fit it on a DataFrame whose columns are dataset columns."
            )
        self.input_fields = tuple(str(n) for n in names)
        check_feature_names(self.input_fields, numeric_only=False)

    def predict(self, flights: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Builds a typed DataFrame of the input columns and calls the pipeline."""
        import pandas as pd

        columns = flights_to_columns(flights, self.input_fields)
        frame = pd.DataFrame(
            {
                name: pd.Series(values, dtype="float64" if name in NUMERIC_FIELDS else "object")
                for name, values in columns.items()
            }
        )
        return np.asarray(self.pipeline.predict(frame), dtype=np.float64)


def check_feature_names(names: Sequence[str], *, numeric_only: bool) -> None:
    """Refuses models whose inputs are not flight fields the API accepts (or are the target itself)."""
    unknown = [n for n in names if n not in FIELDS_BY_NAME]
    if not names or unknown:
        raise UnusableModel(
            "The model's feature names must be dataset columns; these are not: "
            f"{', '.join(unknown[:10]) or '(no feature names)'}",
            {"feature_names": list(names)[:50]},
        )
    if TARGET in names:
        raise UnusableModel(f"The model reads {TARGET}, the value it is meant to predict.")
    text = [n for n in names if n not in NUMERIC_FIELDS]
    if numeric_only and text:
        raise UnusableModel(
            f"A bare LightGBM model reads numbers, but {', '.join(text)} are text columns; "
            "use the project's artifact, which carries the category encoding."
        )


def adapt(obj: Any) -> ServingModel:
    """Wraps an unpickled object into a ServingModel, or says why it cannot serve."""
    if isinstance(obj, FlightDelayModel):
        return ProjectModel(obj)
    if isinstance(obj, lgb.Booster):
        return BoosterModel(obj, "lightgbm.Booster")
    if isinstance(obj, lgb.LGBMModel):
        # scikit-learn's fitted-state protocol, which LightGBM implements (its `fitted_` is undocumented).
        if not obj.__sklearn_is_fitted__():
            raise UnusableModel("The LightGBM estimator is not fitted.")
        return BoosterModel(obj.booster_, f"lightgbm.{type(obj).__name__}")
    if _is_lightgbm_pipeline(obj):
        return PipelineModel(obj)
    if not callable(getattr(obj, "predict", None)):
        raise UnusableModel(f"The file holds a {_type_name(obj)}, which has no predict method.")
    raise UnusableModel(f"The file holds a {_type_name(obj)}; accepted are {ACCEPTED}.")


def _is_lightgbm_pipeline(obj: Any) -> bool:
    """Tells whether obj is a scikit-learn Pipeline whose last step is a LightGBM model."""
    steps = getattr(obj, "steps", None)
    if type(obj).__name__ != "Pipeline" or not isinstance(steps, list) or not steps:
        return False
    return isinstance(steps[-1][1], lgb.LGBMModel | lgb.Booster)


def _type_name(obj: Any) -> str:
    """Names an object's type with its module."""
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"
