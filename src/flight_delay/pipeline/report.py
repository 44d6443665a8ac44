"""Presenting the pipeline's results in the notebook: the questions, tables and plots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

QUESTIONS: dict[str, str] = {
    "q1": "Total number of flights.",
    "q2": "How many flights were cancelled (dep_time and arr_time both null)?",
    "q3": "Mean departure delay (dep_delay).",
    "q4": "The 5 airports with the most landings.",
    "q5": "The most frequent route (origin–dest pair).",
    "q6": "The 5 airlines with the largest mean arrival delay.",
    "q7": "The day of the week with the most flights.",
    "q8": "Per month, the percentage of flights whose departure delay exceeded 30 minutes.",
    "q9": "The most common origin of flights that landed in Seattle (SEA).",
    "q10": "The mean departure delay for each day of the week.",
    "q11": "The route with the largest mean flight time (air_time).",
    "q12": "For each origin airport, the most common destination.",
    "q13": "The 3 routes with the largest variation of flight time (air_time).",
    "q14": "The mean arrival delay of flights whose departure delay exceeded 1 hour.",
    "q15": "The mean number of daily flights for each month.",
    "q16": "The 3 most common routes among flights that arrived more than 30 minutes late.",
    "q17": "For each origin, the main destination.",
    "final": "The 5 flights with the largest arrival delay, with the wind at origin and destination.",
}


def answer_frame(answer: Any) -> pd.DataFrame:
    """Shows any answer shape (scalar, record, list of records) as a small table."""
    if isinstance(answer, list):
        return pd.DataFrame(answer)
    if isinstance(answer, dict):
        return pd.DataFrame([answer])
    return pd.DataFrame({"answer": [answer]})


def answer_markdown(key: str, answers: dict[str, Any], readings: dict[str, str]) -> str:
    """Renders one question, how it was read, and a scalar answer inline, as Markdown."""
    number = "Final question" if key == "final" else f"Question {key[1:]}"
    text = f"**{number}.** {QUESTIONS[key]}\n\n*Reading:* {readings.get(key, '')}"
    answer = answers[key]
    if not isinstance(answer, list | dict):
        shown = f"{answer:,.2f}" if isinstance(answer, float) else f"{answer:,}"
        text += f"\n\n**Answer: {shown}**"
    return text


def show_answer(key: str, answers: dict[str, Any], readings: dict[str, str]) -> None:
    """Displays a question, its reading and its answer in a notebook."""
    from IPython.display import Markdown, display

    display(Markdown(answer_markdown(key, answers, readings)))
    if isinstance(answers[key], list | dict):
        display(answer_frame(answers[key]))


# The answers read best as a chart: (x column, y column, y label), drawn from the answer's table.
CHARTS: dict[str, tuple[str, str, str]] = {
    "q8": ("month", "pct_dep_delay_over_30", "% of departures > 30 min late"),
    "q10": ("day_of_week", "mean_dep_delay", "mean dep_delay (min)"),
    "q15": ("month", "mean_daily_flights", "mean flights a day"),
}


def plot_answer(key: str, answers: dict[str, Any]) -> Any:
    """Draws a per-month or per-weekday answer (a key of CHARTS) as bars, from its answer table."""
    import matplotlib.pyplot as plt

    x, y, label = CHARTS[key]
    frame = answer_frame(answers[key])
    figure, axis = plt.subplots(figsize=(7, 3))
    axis.bar(frame[x].astype(str), frame[y])
    axis.set(xlabel=x, ylabel=label, title=f"Question {key[1:]}: {QUESTIONS[key]}")
    figure.tight_layout()
    return figure


def metrics_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """Lays each basis' test metrics next to its baselines' in one table (basis, predictor) x metric."""
    rows = {
        (basis, name): figures
        for basis, table in metrics["bases"].items()
        for name, figures in table["overall"].items()
    }
    return pd.DataFrame(rows).T[["mae", "rmse", "r2", "median_ae", "rows"]]


def gains_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """Each basis' gain over its best baseline per metric, with the 95% day-block interval, as a table."""
    rows = {
        (basis, metric.upper()): {
            "predicts": table["predicts"],
            "baseline": gain["baseline"],
            "model": gain["model"],
            "baseline value": gain["baseline_value"],
            "gain": gain["gain"],
            "95% low": gain["ci95"][0],
            "95% high": gain["ci95"][1],
            "ratio": gain["ratio"],
            "days better": gain["days_better"],
        }
        for basis, table in metrics["bases"].items()
        for metric, gain in table["gain"].items()
    }
    return pd.DataFrame(rows).T


def plot_residuals(actual: np.ndarray, predicted: np.ndarray, limit: float = 120) -> Any:
    """Draws the residuals (predicted - actual): their spread, and against the prediction."""
    import matplotlib.pyplot as plt

    residuals = predicted - actual
    figure, (spread, against) = plt.subplots(1, 2, figsize=(11, 4))
    spread.hist(np.clip(residuals, -limit, limit), bins=80)
    spread.set(xlabel=f"predicted - actual (min, clipped at ±{limit:g})", ylabel="flights", title="Residuals")
    against.scatter(predicted, residuals, s=2, alpha=0.15)
    against.axhline(0, color="black", linewidth=1)
    against.set(xlabel="predicted (min)", ylabel="predicted - actual (min)", title="Residual vs prediction")
    against.set_ylim(-4 * limit, 2 * limit)
    figure.tight_layout()
    return figure


def importance_frame(booster: Any) -> pd.DataFrame:
    """Returns the booster's gain importance per feature, largest first."""
    gains = booster.feature_importance(importance_type="gain")
    frame = pd.DataFrame({"feature": booster.feature_name(), "gain": gains})
    return frame.sort_values("gain", ascending=False, ignore_index=True)


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray, limit: float = 300) -> Any:
    """Scatters predicted against actual arrival delays with the identity line."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 6))
    axis.scatter(actual, predicted, s=2, alpha=0.15)
    axis.plot([-limit / 4, limit], [-limit / 4, limit], color="black", linewidth=1)
    axis.set(
        xlim=(-limit / 4, limit),
        ylim=(-limit / 4, limit),
        xlabel="actual arr_delay (min)",
        ylabel="predicted arr_delay (min)",
        title="Test split (Nov–Dec): predicted vs actual",
    )
    return figure


def plot_importance(importance: pd.DataFrame) -> Any:
    """Draws the gain importance of each feature as horizontal bars."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    ordered = importance.iloc[::-1]
    axis.barh(ordered["feature"], ordered["gain"])
    axis.set(xlabel="total gain", title="Feature importance (gain)")
    figure.tight_layout()
    return figure
