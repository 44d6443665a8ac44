"""GET /model/monitoring/: live accuracy from recorded actuals, PSI drift of the features and prediction."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from flask.testing import FlaskClient

from flight_delay.data.nycflights import build_dataset
from flight_delay.features import CONTEXT_NAMES, CONTRACT_VERSIONS, CURRENT_CONTRACT_VERSION
from flight_delay.monitoring.report import PSI_EPSILON, psi
from flight_delay.training.lightgbm_trainer import train_model
from tests.conftest import upload
from tests.factories import minimal_flight, synthetic_flights, tiny_model, write_pickle
from tests.monitoring_helpers import flights_of, post_actuals, report, serve

V1_BUNDLE = Path(__file__).parent / "data" / "contract_v1.lgbm.json"
CONTRACT = CONTRACT_VERSIONS[CURRENT_CONTRACT_VERSION]
# Compared when nothing is posted: the flight's features (the context ones only over flights with context).
FEATURES = tuple(name for name in CONTRACT.feature_names if name not in CONTEXT_NAMES)
CONTEXT_LEFT_OUT = "no prediction in the window was scored with context; not compared: " + ", ".join(
    name for name in CONTRACT.feature_names if name in CONTEXT_NAMES
)


def test_live_figures_are_exact(loaded_client: FlaskClient) -> None:
    served = serve(loaded_client, flights_of(synthetic_flights(60, seed=5)))
    actual = [float(i % 7) * 3 - 4 for i in range(40)]  # 20 predictions left without an actual
    post_actuals(
        loaded_client,
        [{"history_id": p["history_id"], "arr_delay": a} for p, a in zip(served, actual, strict=False)],
    )

    live = report(loaded_client)["live"]

    errors = np.array([p["arr_delay"] for p in served[:40]]) - np.array(actual)
    assert live["count"] == 40
    assert live["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-12)
    assert live["rmse"] == pytest.approx(math.sqrt((errors**2).mean()), rel=1e-12)
    assert live["mean_error"] == pytest.approx(errors.mean(), rel=1e-12)


def test_without_actuals_the_live_figures_are_null(loaded_client: FlaskClient) -> None:
    serve(loaded_client, [minimal_flight()])

    body = report(loaded_client)

    assert body["predictions"] == 1
    assert body["live"] == {"count": 0, "mae": None, "rmse": None, "mean_error": None}


def test_drift_is_of_the_features_and_the_prediction(loaded_client: FlaskClient) -> None:
    serve(loaded_client, flights_of(synthetic_flights(1_000, seed=0)))

    body = report(loaded_client)

    assert body["predictions"] == 1_000
    assert body["drift_unavailable"] == CONTEXT_LEFT_OUT  # nothing posted: no flight had context
    assert list(body["drift"]) == [*FEATURES, "prediction"]
    assert {name: f["of"] for name, f in body["drift"].items()} == {
        **dict.fromkeys(FEATURES, "feature"),
        "prediction": "prediction",
    }
    assert not any(field["drifted"] for field in body["drift"].values()), body["drift"]
    assert body["reference"] == {
        "of": "features",
        "flights": 322,
        "first_flight": "2013-01-01",
        "last_flight": "2013-10-28",
        "at_departure_share": 1.0,
    }


def test_a_shifted_window_is_flagged(loaded_client: FlaskClient) -> None:
    shifted = synthetic_flights(500, seed=9).assign(carrier="EV")
    shifted["dep_delay"] += 180
    serve(loaded_client, flights_of(shifted))

    drift = report(loaded_client)["drift"]

    assert drift["dep_delay"]["drifted"]
    assert drift["dep_delay"]["psi"] >= 0.2
    assert drift["carrier"]["drifted"]
    assert drift["prediction"]["drifted"]  # three hours late: so are the predictions
    assert not drift["distance"]["drifted"]
    assert not drift["origin"]["drifted"]


def test_asking_before_departure_is_not_drift(loaded_client: FlaskClient) -> None:
    flights = flights_of(synthetic_flights(1_000, seed=0))
    for flight in flights[::2]:
        flight["dep_delay"] = None  # half the clients ask before the flight leaves

    serve(loaded_client, flights)

    body = report(loaded_client)

    assert body["reference"]["at_departure_share"] == 0.5
    assert not body["drift"]["dep_delay"]["drifted"], body["drift"]
    assert not any(body["drift"][name]["drifted"] for name in FEATURES), body["drift"]
    # The prediction is compared as served: with nothing posted, the answers before departure come from
    # the boosters without context, whose shares the training profile (of the model with context) lacks.


@pytest.fixture(scope="module")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A model trained on a sample of the real January-October flights, and the real November-December."""
    flights = build_dataset()
    late = flights["month"].isin((11, 12))
    model = train_model(
        flights[~late].sample(8_000, random_state=0), flights[late].sample(500, random_state=0), rounds=10
    )
    path = write_pickle(model, tmp_path_factory.mktemp("real") / "real.pkl")
    return path, flights[late & flights["arr_delay"].notna()].sample(3_000, random_state=1)


STABLE_FEATURES = (
    "day_of_week",
    "sched_dep_minute",
    "sched_arr_minute",
    "distance",
    "carrier",
    "origin",
    "dest",
)


def test_month_never_drifts_on_november_december(client: FlaskClient, real_model: tuple[Path, Any]) -> None:
    path, november_december = real_model
    assert upload(client, path).status_code == 201
    serve(client, flights_of(november_december))

    body = report(client)

    assert "month" not in body["drift"]  # the model does not read it: never compared, never drifted
    assert list(body["drift"]) == [*FEATURES, "prediction"]
    assert {name for name in STABLE_FEATURES if body["drift"][name]["drifted"]} == set(), body["drift"]
    assert body["reference"]["last_flight"] < "2013-11-01"  # the reference is January-October
    assert body["predictions"] == 3_000


def test_the_window_and_the_model_version(
    loaded_client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    serve(loaded_client, [minimal_flight()] * 3)
    first = report(loaded_client)["model_version"]
    upload(loaded_client, model_files(1))
    serve(loaded_client, [minimal_flight()])
    later = datetime.now(UTC) + timedelta(hours=1)

    assert report(loaded_client)["predictions"] == 1
    assert report(loaded_client, model_version=first)["predictions"] == 3
    assert report(loaded_client, model_version=first, since=later.isoformat())["predictions"] == 0
    empty = report(loaded_client, model_version=first, until=datetime(2000, 1, 1, tzinfo=UTC).isoformat())
    assert empty["window"]["until"] == "2000-01-01T00:00:00+00:00"
    assert empty["drift"] is None
    assert empty["drift_unavailable"] == "no predictions in the window"


def test_no_model_is_a_503(client: FlaskClient) -> None:
    response = client.get("/model/monitoring/")

    assert response.status_code == 503
    assert response.get_json()["code"] == "model_not_loaded"


def test_errors(loaded_client: FlaskClient) -> None:
    unknown = loaded_client.get("/model/monitoring/", query_string={"model_version": "a" * 64})
    assert unknown.status_code == 404
    assert unknown.get_json()["code"] == "unknown_model_version"
    reversed_window = {"since": "2013-02-01T00:00:00Z", "until": "2013-01-01T00:00:00Z"}
    assert loaded_client.get("/model/monitoring/", query_string=reversed_window).status_code == 422
    assert loaded_client.get("/model/monitoring/", query_string={"since": "2013-01-01"}).status_code == 422


def test_a_model_without_a_profile_has_no_drift(client: FlaskClient) -> None:
    assert upload(client, V1_BUNDLE).status_code == 201
    serve(client, [minimal_flight()])

    body = report(client)

    assert body["predictions"] == 1
    assert body["drift"] is None
    assert body["reference"] is None
    assert "no training profile" in body["drift_unavailable"]


def test_a_bare_booster_reports_what_it_can(client: FlaskClient, tmp_path: Path) -> None:
    frame = synthetic_flights(300, seed=2)
    names = ["dep_delay", "distance"]
    booster = lgb.train({"verbosity": -1}, lgb.Dataset(frame[names], frame["arr_delay"]), num_boost_round=5)
    assert upload(client, write_pickle(booster, tmp_path / "bare.pkl")).status_code == 201
    served = serve(client, [minimal_flight()] * 4)
    post_actuals(client, [{"history_id": p["history_id"], "arr_delay": 1.0} for p in served])

    body = report(client)

    assert (body["predictions"], body["live"]["count"]) == (4, 4)
    assert body["drift"] is None
    assert body["drift_unavailable"] == "the model's artifact carries no training profile (no contract)"


def test_an_older_profile_compares_only_what_the_model_reads_as_sent(
    client: FlaskClient, tmp_path: Path
) -> None:
    model = tiny_model(0)
    frame = synthetic_flights(400, seed=0)
    model.profile = {  # as artifacts wrote it before feature profiles: every input field as sent
        "version": 1,
        "rows": 400,
        "fields": {
            "month": {"kind": "number", "edges": [6.0], "shares": [0.0, 0.5, 0.5]},
            "distance": {"kind": "number", "edges": [1400.0], "shares": [0.0, 0.5, 0.5]},
            "carrier": {
                "kind": "category",
                "categories": sorted(set(frame["carrier"])),
                "shares": [0.2] * 5 + [0.0],
            },
        },
    }
    assert upload(client, write_pickle(model, tmp_path / "older.pkl")).status_code == 201
    serve(client, flights_of(frame.assign(month=12)))

    body = report(client)

    assert list(body["drift"]) == ["distance", "carrier"]  # month is an input, not a feature, in version 2
    assert not any(f["drifted"] for f in body["drift"].values())
    assert body["reference"]["of"] == "input fields"
    assert "day_of_week" in body["drift_unavailable"]
    assert "prediction" in body["drift_unavailable"]


def test_psi_reads_empty_bins_as_epsilon() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - PSI_EPSILON) * math.log(1 / PSI_EPSILON))
