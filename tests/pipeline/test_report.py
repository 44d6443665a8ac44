"""The notebook's presentation helpers: charts drawn from the answers' tables, the gains' table."""

from __future__ import annotations

import matplotlib
import pytest

from flight_delay.pipeline.report import CHARTS, answer_markdown, gains_frame, plot_answer
from tests.factories import tiny_model

matplotlib.use("Agg")

ANSWERS = {
    "q8": [{"month": 1, "pct_dep_delay_over_30": 50.0}, {"month": 2, "pct_dep_delay_over_30": 40.0}],
    "q10": [
        {"day_of_week": "Monday", "mean_dep_delay": 42.0},
        {"day_of_week": "Tuesday", "mean_dep_delay": 30.0},
    ],
    "q15": [{"month": 1, "mean_daily_flights": 13 / 7}, {"month": 2, "mean_daily_flights": 1.4}],
}


@pytest.mark.parametrize("key", sorted(CHARTS))
def test_each_chart_has_a_bar_per_row_of_the_answer(key: str) -> None:
    x, y, _ = CHARTS[key]
    axis = plot_answer(key, ANSWERS).axes[0]

    assert [tick.get_text() for tick in axis.get_xticklabels()] == [str(row[x]) for row in ANSWERS[key]]
    assert [bar.get_height() for bar in axis.patches] == pytest.approx([row[y] for row in ANSWERS[key]])
    assert axis.get_title().startswith(f"Question {key[1:]}: ")


def test_the_final_question_is_rendered_with_its_reading() -> None:
    text = answer_markdown("final", {"final": []}, {"final": "the day it left"})

    assert text.startswith("**Final question.** The 5 flights")
    assert "*Reading:* the day it left" in text


def test_the_gains_table_has_a_row_per_basis_and_metric_with_its_interval() -> None:
    metrics = tiny_model(0).metrics

    gains = gains_frame(metrics)

    assert list(gains.index) == [
        (b, m) for b in ("at_departure", "before_departure") for m in ("MAE", "RMSE")
    ]
    at_mae = metrics["bases"]["at_departure"]["gain"]["mae"]
    assert gains.loc[("at_departure", "MAE"), "95% low"] == at_mae["ci95"][0]
    assert gains.loc[("before_departure", "MAE"), "predicts"] == "median"
