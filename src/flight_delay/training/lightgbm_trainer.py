"""Fits the project's LightGBM model on encoded features and measures it against baselines.

Both trainers feed this module: the dummy (pandas, a sample, seconds) and the Spark pipeline
(features built in Spark through the same contract).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from flight_delay.artifact import FlightDelayModel
from flight_delay.features import TARGET, FeatureContract
from flight_delay.monitoring.profile import profile_frame

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "regression_l1",  # MAE is the metric that matters; delays have a heavy tail
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


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Computes MAE, RMSE and R² of predictions against the truth."""
    errors = y_pred - y_true
    total = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "r2": float(1.0 - np.sum(errors**2) / total) if total > 0 else float("nan"),
        "rows": len(y_true),
    }


def library_versions() -> dict[str, str]:
    """Records the versions that produced an artifact."""
    return {"python": platform.python_version(), "lightgbm": lgb.__version__, "numpy": np.__version__}


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


def holdout_metrics(
    y_test: np.ndarray, predicted: np.ndarray, train_mean: float, dep_delay_test: np.ndarray
) -> dict[str, Any]:
    """Scores predictions and the two baselines (train mean; arr_delay = dep_delay) on the test split."""
    return {
        "test": regression_metrics(y_test, predicted),
        "baselines": {
            "train_mean": regression_metrics(y_test, np.full_like(y_test, train_mean)),
            # A flight without a departure delay yet is predicted on time by this baseline.
            "dep_delay": regression_metrics(y_test, np.nan_to_num(dep_delay_test, nan=0.0)),
        },
    }


def train_model(
    train: pd.DataFrame,
    test: pd.DataFrame,
    *,
    seed: int = 0,
    rounds: int = 200,
    params: Mapping[str, Any] | None = None,
    training_info: Mapping[str, Any] | None = None,
) -> FlightDelayModel:
    """Fits the contract and a booster on raw flights in `train`; reports metrics on `test`."""
    train = train[train[TARGET].notna()]
    test = test[test[TARGET].notna()]
    contract = FeatureContract.fit(train)
    booster = fit_booster(
        contract.encode(train),
        train[TARGET].to_numpy(dtype=np.float64),
        contract,
        seed=seed,
        rounds=rounds,
        params=params,
    )
    profile = profile_frame(train, contract.input_fields).to_dict()
    model = FlightDelayModel(booster=booster, contract=contract, profile=profile)
    model.metrics = holdout_metrics(
        test[TARGET].to_numpy(dtype=np.float64),
        model.predict_features(contract.encode(test)),
        float(train[TARGET].mean()),
        test["dep_delay"].to_numpy(dtype=np.float64),
    )
    model.training = {
        "seed": seed,
        "rounds": rounds,
        "train_rows": len(train),
        "test_rows": len(test),
        "libraries": library_versions(),
        **(training_info or {}),
    }
    return model
