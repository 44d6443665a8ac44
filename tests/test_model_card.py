"""The two bases as a client sees them, and the model card: `flight-delay card` and GET /model/card."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient

from flight_delay.cli import main
from flight_delay.model_metadata import InvalidMetadata, check_metadata
from flight_delay.training.evaluation import day_block_bootstrap, metrics_table, regression_metrics
from tests.factories import minimal_flight, tiny_model


def test_each_prediction_names_its_basis(loaded_client: FlaskClient) -> None:
    flights = [minimal_flight(dep_delay=30.0), minimal_flight(dep_delay=None)]

    predictions = loaded_client.post("/model/predict/", json={"flights": flights}).get_json()["predictions"]

    assert [p["basis"] for p in predictions] == ["at_departure", "before_departure"]


def test_the_bases_are_two_boosters_and_at_departure_adds_the_departure_delay(
    loaded_client: FlaskClient,
) -> None:
    late, later = (
        loaded_client.post("/model/predict/", json=minimal_flight(dep_delay=d)).get_json()["predictions"][0]
        for d in (60.0, 600.0)
    )

    # The residual model adds dep_delay back: 540 more minutes late, about 540 more minutes predicted.
    assert abs((later["arr_delay"] - late["arr_delay"]) - 540) < 60


def test_get_model_carries_both_bases_beside_their_baselines(loaded_client: FlaskClient) -> None:
    metrics = loaded_client.get("/model/").get_json()["metrics"]

    at, before = (metrics["bases"][basis] for basis in ("at_departure", "before_departure"))
    constants = {"train_median", "train_mean", "route_median"}
    assert set(at["overall"]) == {"model", "schedule_only", "dep_delay", *constants}
    assert set(before["overall"]) == {"model", "schedule_only", *constants}
    assert set(at["by"]) == {"month", "origin", "carrier"}
    assert set(at["overall"]["model"]) == {"mae", "rmse", "r2", "median_ae", "rows"}
    assert metrics["test"] == at["overall"]["model"]
    assert isinstance(before["loses_to"], list)
    assert (at["predicts"], before["predicts"]) == ("mean", "median")
    assert set(metrics["shift"]) == {"before_test", "test"}


FACTORS = {"destination", "hour of day", "distance", "arrival delay", "holiday week"}


def test_each_basis_states_its_gain_over_the_best_baseline_with_an_interval(
    loaded_client: FlaskClient,
) -> None:
    metrics = loaded_client.get("/model/").get_json()["metrics"]

    for basis, table in metrics["bases"].items():
        overall = table["overall"]
        for metric, gain in table["gain"].items():
            baselines = {k: v[metric] for k, v in overall.items() if k not in ("model", "schedule_only")}
            assert gain["baseline"] == min(baselines, key=baselines.__getitem__), (basis, metric)
            assert gain["gain"] == pytest.approx(baselines[gain["baseline"]] - overall["model"][metric])
            low, high = gain["ci95"]
            assert low <= high
            assert 0 <= gain["days_better"] <= 1
        assert set(table["factors"]) == {
            "destination",
            "hour of day",
            "distance",
            "arrival delay",
            "holiday week",
        }


def test_the_day_block_interval_resamples_whole_days() -> None:
    rng = np.random.default_rng(0)
    days = np.repeat(np.arange(30), 50)
    y = rng.normal(0, 10, len(days)) + np.repeat(rng.normal(0, 20, 30), 50)  # days differ a lot
    better, worse = y + rng.normal(0, 2, len(y)), y + rng.normal(0, 8, len(y))

    low, high, share = day_block_bootstrap(y, better, worse, days, "mae")
    same_low, same_high, _ = day_block_bootstrap(y, better, better, days, "mae")

    assert 0 < low < high  # clearly better, and the interval says so
    assert same_low == same_high == 0
    assert share > 0.9
    low_rmse, high_rmse, _ = day_block_bootstrap(y, better, worse, days, "rmse")
    assert 0 < low_rmse < high_rmse


def test_get_model_card_serves_markdown(loaded_client: FlaskClient) -> None:
    response = loaded_client.get("/model/card")

    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    card = response.get_data(as_text=True)
    for heading in (
        "## Model details",
        "## Intended use",
        "## Factors",
        "## Metrics",
        "## Evaluation data",
        "## Training data",
        "## Quantitative analyses",
        "## Ethical considerations",
        "## Caveats and recommendations",
        "## Environment",
    ):
        assert heading in card
    assert "before_departure  model" in card
    assert "git_commit" in card
    assert "Licence: MIT" in card
    assert "Out of scope" in card
    assert "| holiday week | yes |" in card or "| holiday week | no |" in card
    assert "95% day-block interval" in card
    assert "not flag" not in card  # unseen inputs are flagged


def test_no_model_no_card(client: FlaskClient) -> None:
    response = client.get("/model/card")

    assert response.status_code == 503
    assert response.get_json()["code"] == "model_not_loaded"


def test_the_cli_writes_the_same_card(
    loaded_client: FlaskClient, model_files: Callable[[int], Path], tmp_path: Path
) -> None:
    out = tmp_path / "card.md"

    result = CliRunner().invoke(main, ["card", str(model_files(0)), "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert out.read_text() == loaded_client.get("/model/card").get_data(as_text=True)


def test_metrics_are_json_where_r2_is_undefined() -> None:
    one_flight = regression_metrics(np.array([5.0]), np.array([7.0]))

    assert one_flight["r2"] is None
    json.dumps(one_flight, allow_nan=False)  # no NaN: a browser's JSON.parse refuses it
    table = {"bases": {"at_departure": {"overall": {"model": one_flight}, "loses_to": []}}}
    assert "   n/a" in metrics_table(table)


def test_the_gains_factors_and_shift_are_checked_when_a_model_is_read() -> None:
    model = tiny_model(0)
    check_metadata(model.metrics, model.training, model.profile, model.contract)
    bad_gain = copy.deepcopy(model.metrics)
    bad_gain["bases"]["at_departure"]["gain"]["mae"]["ci95"] = [1.0]
    bad_shift = {**model.metrics, "shift": {"test": {"rows": 1}}}

    for metrics, named in ((bad_gain, "ci95"), (bad_shift, "shift")):
        with pytest.raises(InvalidMetadata) as refused:
            check_metadata(metrics, model.training, model.profile, model.contract)
        assert named in str(refused.value)
