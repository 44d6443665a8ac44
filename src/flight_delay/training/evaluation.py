"""Holdout metrics that cannot flatter: both bases beside three baselines, overall and per group.

At departure (dep_delay known) the model faces the train median, `arr_delay = dep_delay` and the
route's train median; before departure (dep_delay hidden) the train median and the route's median.
Each is scored by MAE, RMSE, R² and median absolute error, overall and per month, origin and
carrier, and every group where a baseline beats the model is listed under `loses_to`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from flight_delay.artifact import FlightDelayModel, departure_delays, hidden_departure
from flight_delay.features import FeatureContract

GROUPS = ("month", "origin", "carrier")
UNSEEN = "(unseen)"


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    """MAE, RMSE, R² and median absolute error of predictions against the truth.

    R² is None (JSON null) where it is undefined, a group whose delays are all equal (one flight,
    say): NaN is no JSON, and a browser refuses the whole answer that holds one.
    """
    errors = y_pred - y_true
    total = float(np.sum((y_true - y_true.mean()) ** 2)) if len(y_true) else 0.0
    return {
        "mae": float(np.mean(np.abs(errors))),
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "r2": float(1.0 - np.sum(errors**2) / total) if total > 0 else None,
        "median_ae": float(np.median(np.abs(errors))),
        "rows": len(y_true),
    }


def decoded(contract: FeatureContract, features: np.ndarray, name: str) -> np.ndarray:
    """A categorical feature's values as text (codes back to categories; unseen ones marked)."""
    labels = np.array([*contract.categories[name], UNSEEN], dtype=object)
    codes = features[:, contract.feature_names.index(name)]
    return labels[np.where(np.isnan(codes), len(labels) - 1, codes).astype(np.int64)]


def routes(contract: FeatureContract, features: np.ndarray) -> np.ndarray:
    """Each flight's route, origin-dest."""
    return decoded(contract, features, "origin") + "-" + decoded(contract, features, "dest")


def route_medians(
    contract: FeatureContract, train: np.ndarray, label: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """The train median arrival delay of each test flight's route (the overall median for new routes)."""
    medians = pd.Series(label).groupby(routes(contract, train)).median()
    return pd.Series(routes(contract, test)).map(medians).fillna(float(np.median(label))).to_numpy(np.float64)


def basis_table(
    y: np.ndarray, candidates: Mapping[str, np.ndarray], groups: Mapping[str, np.ndarray]
) -> dict:
    """Scores every candidate (the model and its baselines) overall and within each group's values."""
    overall = {name: regression_metrics(y, p) for name, p in candidates.items()}
    by: dict[str, dict[str, Any]] = {}
    for group, values in groups.items():
        by[group] = {}
        for value in sorted(set(values.tolist()), key=str):
            rows = values == value
            by[group][str(value)] = {
                name: regression_metrics(y[rows], p[rows]) for name, p in candidates.items()
            }
    return {"overall": overall, "by": by, "loses_to": losses(overall, by)}


def losses(overall: Mapping[str, Any], by: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Where a baseline beats the model on MAE or RMSE, said plainly (e.g. 'carrier HA: MAE ...')."""
    scored = [("overall", overall)]
    scored += [
        (f"{group} {value}", scores) for group, values in by.items() for value, scores in values.items()
    ]
    found = []
    for where, scores in scored:
        model = scores["model"]
        for name, baseline in scores.items():
            for metric in ("mae", "rmse"):
                if name != "model" and baseline[metric] < model[metric]:
                    found.append(
                        f"{where}: {name} {metric.upper()} {baseline[metric]:.2f} < model {model[metric]:.2f}"
                    )
    return found


def holdout_metrics(
    model: FlightDelayModel,
    train: Mapping[str, np.ndarray],
    test: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Both bases' tables on the test split; `test` and `baselines` repeat the at-departure overall."""
    contract, features, y = model.contract, test["features"], test["label"]
    median = np.full_like(y, float(np.median(train["label"])))
    route = route_medians(contract, train["features"], train["label"], features)
    groups = {
        "month": test["month"].astype(np.int64),
        **{g: decoded(contract, features, g) for g in GROUPS[1:]},
    }
    # arr_delay = dep_delay; a flight not yet left: on time, by this rule.
    departure = np.nan_to_num(departure_delays(contract, features), nan=0.0)
    at = {"model": model.predict_features(features), "train_median": median, "dep_delay": departure}
    before = {"model": model.predict_features(hidden_departure(contract, features)), "train_median": median}
    bases = {
        "at_departure": basis_table(y, {**at, "route_median": route}, groups),
        "before_departure": basis_table(y, {**before, "route_median": route}, groups),
    }
    overall = bases["at_departure"]["overall"]
    baselines = {name: scores for name, scores in overall.items() if name != "model"}
    return {"test": overall["model"], "baselines": baselines, "bases": bases}


def beats_baselines(metrics: Mapping[str, Any]) -> dict[str, bool]:
    """Per basis, whether the model beats every baseline overall (MAE and RMSE at departure; MAE before)."""
    verdicts = {}
    for basis, table in metrics["bases"].items():
        model, others = table["overall"]["model"], [v for k, v in table["overall"].items() if k != "model"]
        checked = ("mae", "rmse") if basis == "at_departure" else ("mae",)
        verdicts[basis] = all(model[m] < other[m] for other in others for m in checked)
    return verdicts


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The overall figures of both bases as a text table, then where the model loses."""
    lines = [f"{'basis':<17} {'predictor':<13} {'MAE':>7} {'RMSE':>7} {'R²':>6} {'MedAE':>7} {'rows':>7}"]
    for basis, table in metrics.get("bases", {}).items():
        for name, m in table["overall"].items():
            r2 = "   n/a" if m["r2"] is None else f"{m['r2']:6.3f}"
            errors = f"{m['mae']:7.2f} {m['rmse']:7.2f} {r2} {m['median_ae']:7.2f}"
            lines.append(f"{basis:<17} {name:<13} {errors} {m['rows']:7d}")
    losing = [f"  {basis}: {line}" for basis, t in metrics.get("bases", {}).items() for line in t["loses_to"]]
    return "\n".join([*lines, "where a baseline beats the model:", *(losing or ["  nowhere"])])
