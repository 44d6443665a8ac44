"""Fits the project's LightGBM model (two bases: at and before departure) and measures it.

Both trainers feed this module: the dummy (pandas, a sample, seconds) and the Spark pipeline
(features built in Spark through the same contract).
"""

from __future__ import annotations

import contextlib
import platform
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from flight_delay.artifact import FlightDelayModel, departure_delays, hidden_departure
from flight_delay.features import TARGET, FeatureContract
from flight_delay.monitoring.profile import FeatureProfile, flight_span, profile_features
from flight_delay.training.evaluation import holdout_metrics

# At departure: L2 on the residual arr_delay - dep_delay beats `arr_delay = dep_delay` on MAE and RMSE.
AT_DEPARTURE_PARAMS: dict[str, Any] = {"objective": "regression"}
DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression_l1",  # before departure: MAE is what beats the median; delays' tail is heavy
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
    "verbosity": -1,
}


def library_versions() -> dict[str, str]:
    """Records the versions that produced an artifact, and the code's git commit when known."""
    versions = {"python": platform.python_version(), "lightgbm": lgb.__version__, "numpy": np.__version__}
    versions["pandas"] = pd.__version__
    for name in ("pyspark", "flight-delay"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return {**versions, "git_commit": git_commit()}


def git_commit() -> str:
    """The commit of the checkout this code runs from, or "unknown" (an installed wheel, no git)."""
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        done = subprocess.run(  # noqa: S603 - git at its resolved path, fixed arguments
            [git, "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def fit_booster(
    features: np.ndarray,
    label: np.ndarray,
    contract: FeatureContract,
    *,
    seed: int,
    rounds: int,
    params: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
) -> lgb.Booster:
    """Trains a booster on a feature matrix laid out as the contract's feature_names."""
    return lgb.train(
        {**DEFAULT_PARAMS, **(params or {}), "seed": seed},
        lgb.Dataset(
            features,
            label=label,
            feature_name=list(contract.feature_names),
            categorical_feature=list(contract.categorical_features),
            free_raw_data=True,
        ),
        num_boost_round=rounds,
        callbacks=list(callbacks),
    )


def fit_bases(
    features: np.ndarray,
    label: np.ndarray,
    contract: FeatureContract,
    *,
    seed: int,
    rounds: int,
    params: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callable[[Any], None]] = (),
) -> FlightDelayModel:
    """Fits both bases on the same flights: at departure on the residual, before it with dep_delay hidden.

    At departure the booster learns arr_delay - dep_delay with an L2 loss (the rest of the delay,
    not the delay again); before departure it learns arr_delay with the L1 loss from the schedule alone.
    """
    departure = departure_delays(contract, features)
    departed = ~np.isnan(departure)
    options = {"seed": seed, "rounds": rounds, "callbacks": callbacks}
    at_departure = fit_booster(
        features[departed],
        label[departed] - departure[departed],
        contract,
        params={**(params or {}), **AT_DEPARTURE_PARAMS},
        **options,
    )
    before = fit_booster(hidden_departure(contract, features), label, contract, params=params, **options)
    return FlightDelayModel(booster=at_departure, contract=contract, before_departure=before, residual=True)


def frame_arrays(flights: pd.DataFrame, contract: FeatureContract) -> dict[str, np.ndarray]:
    """A pandas frame of flights as the arrays training and evaluation read."""
    return {
        "features": contract.encode(flights),
        "label": flights[TARGET].to_numpy(dtype=np.float64),
        "month": flights["month"].to_numpy(dtype=np.int64),
    }


def training_profile(model: FlightDelayModel, features: np.ndarray, train: pd.DataFrame) -> FeatureProfile:
    """The profile of what the model read in training: its features as encoded and its predictions."""
    contract = model.contract
    dates = flight_span(*(train[name].to_numpy() for name in ("year", "month", "day")))
    return profile_features(
        contract.feature_names, features, contract.categories, model.predict_features, dates
    )


def train_model(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    seed: int = 0,
    rounds: int = 200,
    params: Mapping[str, Any] | None = None,
    training_info: Mapping[str, Any] | None = None,
) -> FlightDelayModel:
    """Fits the contract and both bases on raw flights in `train`; reports metrics on `test`."""
    train = train[train[TARGET].notna()]
    test = test[test[TARGET].notna()]
    contract = FeatureContract.fit(train)
    arrays = {name: frame_arrays(frame, contract) for name, frame in (("train", train), ("test", test))}
    model = fit_bases(
        arrays["train"]["features"],
        arrays["train"]["label"],
        contract,
        seed=seed,
        rounds=rounds,
        params=params,
    )
    model.profile = training_profile(model, arrays["train"]["features"], train).to_dict()
    model.metrics = holdout_metrics(model, arrays["train"], arrays["test"])
    model.training = {
        "seed": seed,
        "rounds": rounds,
        "train_rows": len(train),
        "test_rows": len(test),
        "libraries": library_versions(),
        **(training_info or {}),
    }
    return model
