"""Holdout metrics that cannot flatter: both bases beside the baselines, overall, per group, with intervals.

At departure (dep_delay known, context as of the departure) the model faces the train median and
mean, `arr_delay = dep_delay` and the route's median; before departure (dep_delay unknown, context as
of the lead before the schedule) the two constants and the route's median. The constants and medians
come from the flights before the test period. Each is scored by MAE, RMSE, R² and median absolute
error, overall and per month, origin and carrier; every group where a baseline beats the model is
listed under `loses_to`. `schedule_only` is the same model without context (what context adds).
Each basis says which statistic it predicts (L2: a mean, L1: a median) and its gain over the best
baseline, with a 95% interval from a bootstrap over whole test days (a day's flights share weather
and delays, so they are resampled together).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from flight_delay.artifact import FlightDelayModel, departure_delays, hidden_context
from flight_delay.features import FeatureContract

GROUPS = ("month", "origin", "carrier")
UNSEEN = "(unseen)"
BASES = ("at_departure", "before_departure")
# What each basis' loss makes it predict: L2 a conditional mean, L1 a conditional median.
PREDICTS = {"at_departure": "mean", "before_departure": "median"}
SCHEDULE_ONLY = "schedule_only"  # the model's boosters without context, on the same flights
NOT_BASELINES = ("model", SCHEDULE_ONLY)
BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_SEED = 0
BUSIEST_DESTINATIONS = 12  # the card's breakdown by destination: these, then the rest as "other"
# The card's factors (Mitchell et al. 2019): bands of each, as (label, lower bound) from the lowest.
HOUR_BANDS = (("before 09", 0), ("09-12", 9), ("12-15", 12), ("15-18", 15), ("18-21", 18), ("21 on", 21))
DISTANCE_BANDS = (
    ("< 500 mi", 0),
    ("500-1000", 500),
    ("1000-1500", 1000),
    ("1500-2500", 1500),
    (">= 2500", 2500),
)
DELAY_BANDS = (("early", -np.inf), ("0-15", 0), ("15-45", 15), ("45-120", 45), (">= 120", 120))
HOLIDAY_WINDOW_DAYS = 3  # a holiday week: the three days either side of a US federal holiday


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
    reference: Mapping[str, np.ndarray],
    test: Mapping[str, Mapping[str, np.ndarray]],
) -> dict[str, Any]:
    """Both bases' tables on the test period; `test` and `baselines` repeat the at-departure overall.

    `reference`: the flights before the test period (features, label), for the constants and the
    route medians; `test`: per basis, its rows (features as that basis reads them, label, month, day).
    """
    bases = {basis: basis_metrics(model, basis, reference, test[basis]) for basis in BASES}
    overall = bases["at_departure"]["overall"]
    baselines = {name: scores for name, scores in overall.items() if name not in NOT_BASELINES}
    shift = {"before_test": delays(reference["label"]), "test": delays(test["before_departure"]["label"])}
    return {"test": overall["model"], "baselines": baselines, "bases": bases, "shift": shift}


def delays(label: np.ndarray) -> dict[str, float]:
    """The arrival delays of a period, summarised: how the test period differs from the training's."""
    return {
        "rows": len(label),
        "mean": float(np.mean(label)),
        "median": float(np.median(label)),
        "late_share": float(np.mean(label > 15)),  # the usual "late": more than 15 minutes
    }


def basis_metrics(
    model: FlightDelayModel, basis: str, reference: Mapping[str, np.ndarray], arrays: Mapping[str, np.ndarray]
) -> dict[str, Any]:
    """One basis: the model, its schedule-only self and the baselines, overall and per group, with gains."""
    contract, features, y = model.contract, arrays["features"], arrays["label"]
    candidates = {"model": model.predict_features(features)}
    if contract.context_features:
        candidates[SCHEDULE_ONLY] = model.predict_features(hidden_context(contract, features))
    candidates.update(baselines(basis, contract, reference, features))
    groups = {
        "month": arrays["month"].astype(np.int64),
        **{g: decoded(contract, features, g) for g in GROUPS[1:]},
    }
    table = basis_table(y, candidates, groups)
    table["predicts"] = PREDICTS[basis]
    table["gain"] = {metric: best_gain(y, candidates, arrays["day"], metric) for metric in ("mae", "rmse")}
    baseline = candidates[table["gain"]["mae"]["baseline"]]
    table["factors"] = factor_table(y, candidates["model"], baseline, factors(contract, arrays))
    return table


def factors(contract: FeatureContract, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each test flight's destination (the busiest), hour and distance band, delay size and holiday week."""
    features = arrays["features"]
    dest = decoded(contract, features, "dest")
    names, counts = np.unique(dest, return_counts=True)
    busiest = set(names[np.argsort(-counts, kind="stable")[:BUSIEST_DESTINATIONS]])
    hour = features[:, contract.feature_names.index("sched_dep_minute")] // 60
    distance = features[:, contract.feature_names.index("distance")]
    return {
        "destination": np.where(np.isin(dest, list(busiest)), dest, "other"),
        "hour of day": banded(hour, HOUR_BANDS),
        "distance": banded(distance, DISTANCE_BANDS),
        "arrival delay": banded(arrays["label"], DELAY_BANDS),
        "holiday week": np.where(holiday_weeks(arrays["day"]), "yes", "no"),
    }


def banded(values: np.ndarray, bands: tuple[tuple[str, float], ...]) -> np.ndarray:
    """Each value's band label: the last band whose lower bound it reaches."""
    labels = np.array([label for label, _ in bands], dtype=object)
    return labels[np.searchsorted([low for _, low in bands], values, side="right") - 1]


def holiday_weeks(days: np.ndarray) -> np.ndarray:
    """Whether each local day (a date ordinal) lies within HOLIDAY_WINDOW_DAYS of a US federal holiday."""
    years = {date.fromordinal(int(d)).year for d in np.unique(days)}
    holidays = np.array(
        [
            h.toordinal()
            for year in years | {y + 1 for y in years} | {y - 1 for y in years}
            for h in federal_holidays(year)
        ]
    )
    return np.abs(days[:, None] - holidays[None, :]).min(axis=1) <= HOLIDAY_WINDOW_DAYS


def federal_holidays(year: int) -> list[date]:
    """The US federal holidays of a year (by their rules; observed dates not moved off weekends)."""

    def nth(month: int, weekday: int, n: int) -> date:
        """The n-th given weekday (0: Monday) of a month; n = -1 for the last."""
        first = date(year, month, 1)
        if n > 0:
            return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
        last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        return last - timedelta(days=(last.weekday() - weekday) % 7)

    return [
        date(year, 1, 1), nth(1, 0, 3), nth(2, 0, 3), nth(5, 0, -1), date(year, 7, 4), nth(9, 0, 1),
        nth(10, 0, 2), date(year, 11, 11), nth(11, 3, 4), date(year, 12, 25),
    ]  # fmt: skip


def factor_table(
    y: np.ndarray, model: np.ndarray, baseline: np.ndarray, groups: Mapping[str, np.ndarray]
) -> dict[str, dict[str, dict[str, float]]]:
    """Per factor and value: flights, the model's MAE and the best baseline's (by MAE overall)."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for factor, values in groups.items():
        table[factor] = {}
        for value in sorted(set(values.tolist()), key=str):
            rows = values == value
            table[factor][str(value)] = {
                "rows": int(rows.sum()),
                "model_mae": float(np.mean(np.abs(model[rows] - y[rows]))),
                "baseline_mae": float(np.mean(np.abs(baseline[rows] - y[rows]))),
            }
    return table


def baselines(
    basis: str, contract: FeatureContract, reference: Mapping[str, np.ndarray], features: np.ndarray
) -> dict[str, np.ndarray]:
    """The baselines' predictions for the rows: the constants, dep_delay (at departure), the route median."""
    label = reference["label"]
    rows = len(features)
    found = {
        "train_median": np.full(rows, float(np.median(label))),
        "train_mean": np.full(rows, float(np.mean(label))),
    }
    if basis == "at_departure":
        found["dep_delay"] = departure_delays(contract, features)
    found["route_median"] = route_medians(contract, reference["features"], label, features)
    return found


def best_gain(
    y: np.ndarray, candidates: Mapping[str, np.ndarray], days: np.ndarray, metric: str
) -> dict[str, Any]:
    """The model's gain over the baseline best on `metric`, with a 95% day-block bootstrap interval."""
    scores = {name: _overall(y, p, metric) for name, p in candidates.items() if name not in NOT_BASELINES}
    best = min(scores, key=scores.__getitem__)
    model, baseline = _overall(y, candidates["model"], metric), scores[best]
    low, high, better = day_block_bootstrap(y, candidates["model"], candidates[best], days, metric)
    return {
        "baseline": best,
        "model": model,
        "baseline_value": baseline,
        "gain": baseline - model,
        "ratio": model / baseline if baseline else None,
        "ci95": [low, high],
        "days": len(np.unique(days)),
        "days_better": better,
    }


def day_block_bootstrap(
    y: np.ndarray, model: np.ndarray, baseline: np.ndarray, days: np.ndarray, metric: str
) -> tuple[float, float, float]:
    """The gain's 95% interval, resampling whole days; and the share of days the model does better."""
    _, day = np.unique(days, return_inverse=True)
    count = np.bincount(day).astype(np.float64)
    power = 1 if metric == "mae" else 2
    ours = np.bincount(day, np.abs(model - y) ** power)
    theirs = np.bincount(day, np.abs(baseline - y) ** power)
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, len(count), (BOOTSTRAP_DRAWS, len(count)))
    rows = count[picks].sum(axis=1)
    ours_drawn, theirs_drawn = ours[picks].sum(axis=1) / rows, theirs[picks].sum(axis=1) / rows
    if power == 2:
        ours_drawn, theirs_drawn = np.sqrt(ours_drawn), np.sqrt(theirs_drawn)
    low, high = np.percentile(theirs_drawn - ours_drawn, [2.5, 97.5])
    return float(low), float(high), float(np.mean(ours < theirs))


def _overall(y: np.ndarray, predicted: np.ndarray, metric: str) -> float:
    """One overall figure: MAE or RMSE."""
    errors = predicted - y
    return float(np.mean(np.abs(errors))) if metric == "mae" else float(np.sqrt(np.mean(errors**2)))


def beats_baselines(metrics: Mapping[str, Any]) -> dict[str, bool]:
    """Per basis, whether the model beats every baseline overall (MAE and RMSE at departure; MAE before)."""
    verdicts = {}
    for basis, table in metrics["bases"].items():
        overall = table["overall"]
        others = [v for k, v in overall.items() if k not in NOT_BASELINES]
        checked = ("mae", "rmse") if basis == "at_departure" else ("mae",)
        verdicts[basis] = all(overall["model"][m] < other[m] for other in others for m in checked)
    return verdicts


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The overall figures of both bases as a text table, their gains, then where the model loses."""
    lines = [f"{'basis':<17} {'predictor':<13} {'MAE':>7} {'RMSE':>7} {'R²':>6} {'MedAE':>7} {'rows':>7}"]
    for basis, table in metrics.get("bases", {}).items():
        for name, m in table["overall"].items():
            r2 = "   n/a" if m["r2"] is None else f"{m['r2']:6.3f}"
            errors = f"{m['mae']:7.2f} {m['rmse']:7.2f} {r2} {m['median_ae']:7.2f}"
            lines.append(f"{basis:<17} {name:<13} {errors} {m['rows']:7d}")
    gains = [line for basis, table in metrics.get("bases", {}).items() for line in gain_lines(basis, table)]
    losing = [f"  {basis}: {line}" for basis, t in metrics.get("bases", {}).items() for line in t["loses_to"]]
    return "\n".join([*lines, *gains, "where a baseline beats the model:", *(losing or ["  nowhere"])])


def gain_lines(basis: str, table: Mapping[str, Any]) -> list[str]:
    """What a basis predicts and its gain over the best baseline per metric (none in older artifacts)."""
    if "gain" not in table:
        return []
    lines = [f"{basis} predicts a {table['predicts']}; gain over the best baseline (95% day-block interval):"]
    for metric, g in table["gain"].items():
        low, high = g["ci95"]
        lines.append(
            f"  {metric.upper()} {g['model']:.2f} vs {g['baseline']} {g['baseline_value']:.2f}: "
            f"{g['gain']:+.2f} min [{low:+.2f}, {high:+.2f}], ratio {g['ratio']:.3f}, "
            f"better on {g['days_better']:.0%} of {g['days']} days"
        )
    return lines
