"""GET /model/monitoring/: live accuracy from recorded actuals, PSI drift against the training profile."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from flight_delay.api.services import services_of
from flight_delay.data.nycflights import build_dataset
from flight_delay.history.models import InputCount
from flight_delay.history.repository import insert_predictions
from flight_delay.monitoring.report import PSI_EPSILON, psi, split_window
from flight_delay.training.lightgbm_trainer import train_model
from tests.conftest import upload
from tests.factories import minimal_flight, synthetic_flights, write_pickle
from tests.monitoring_helpers import flights_of, post_actuals, report, serve

V1_BUNDLE = Path(__file__).parent / "data" / "contract_v1.lgbm.json"


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


def test_flights_like_training_do_not_drift(loaded_client: FlaskClient) -> None:
    serve(loaded_client, flights_of(synthetic_flights(1_000, seed=0)))

    body = report(loaded_client)

    assert body["predictions"] == 1_000
    assert body["drift_unavailable"] is None
    assert not any(field["drifted"] for field in body["drift"].values()), body["drift"]


def test_a_shifted_window_is_flagged(loaded_client: FlaskClient) -> None:
    shifted = synthetic_flights(500, seed=9).assign(carrier="EV")
    shifted["dep_delay"] += 180
    serve(loaded_client, flights_of(shifted))

    drift = report(loaded_client)["drift"]

    assert drift["dep_delay"]["drifted"]
    assert drift["dep_delay"]["psi"] >= 0.2
    assert drift["carrier"]["drifted"]
    assert not drift["distance"]["drifted"]
    assert not drift["origin"]["drifted"]


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


STABLE_FIELDS = ("year", "day", "sched_dep_time", "sched_arr_time", "distance", "carrier", "origin", "dest")


def test_real_november_december_flights_do_not_drift_on_stable_fields(
    client: FlaskClient, real_model: tuple[Path, Any]
) -> None:
    path, november_december = real_model
    assert upload(client, path).status_code == 201
    serve(client, flights_of(november_december))

    drift = report(client)["drift"]

    assert {name for name in STABLE_FIELDS if drift[name]["drifted"]} == set(), drift
    assert drift["month"]["drifted"]  # months never seen in training: drift, rightly


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
    assert "no training profile" in body["drift_unavailable"]


def past_rows(version: str, flights: list[dict[str, Any]], start: datetime) -> list[dict[str, Any]]:
    """History rows of the flights, one every 7 minutes from `start`."""
    return [
        {
            "created_at": start + timedelta(minutes=7 * i),
            "request_id": f"past-{i}",
            "model_version": version,
            "input": flight,
            "arr_delay": 1.0,
            "latency_ms": 1.0,
        }
        for i, flight in enumerate(flights)
    ]


def test_rolled_up_hours_and_the_history_agree(app: Flask, loaded_client: FlaskClient) -> None:
    version = loaded_client.get("/model/").get_json()["version"]
    start = datetime(2026, 3, 1, 10, 41, tzinfo=UTC)
    shifted = synthetic_flights(300, seed=3)
    shifted.loc[::2, "dep_delay"] = np.nan
    db, monitoring = services_of(app).db, services_of(app).monitoring
    insert_predictions(db, past_rows(version, flights_of(shifted), start))
    window = {"since": "2026-03-01T13:17:00+00:00", "until": "2026-03-02T09:05:30+01:00"}
    monitoring.grace = timedelta(days=10_000)  # nothing is rolled up: every count from the history
    try:
        from_history = report(loaded_client, **window)
    finally:
        monitoring.grace = timedelta(minutes=5)

    rolled = report(loaded_client, **window)
    again = report(loaded_client, **window)

    with db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(InputCount)) > 0
    assert rolled == from_history == again
    assert 0 < rolled["predictions"] < 300


def test_psi_reads_empty_bins_as_epsilon() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(2 * (1 - PSI_EPSILON) * math.log(1 / PSI_EPSILON))


def test_split_window_counts_whole_rolled_hours_only() -> None:
    at = lambda h, m=0: datetime(2026, 3, 1, h, m, tzinfo=UTC)  # noqa: E731

    assert split_window((at(1, 30), at(5, 10)), at(4)) == (
        (at(2), at(4)),
        [(at(1, 30), at(2)), (at(4), at(5, 10))],
    )
    assert split_window((at(2), at(3)), at(4)) == ((at(2), at(3)), [])
    assert split_window((at(4, 5), None), at(4)) == (None, [(at(4, 5), None)])


def test_a_rollup_is_stored_once_whoever_counts_it(app: Flask, loaded_client: FlaskClient) -> None:
    from flight_delay.monitoring.queries import advance_mark

    version = loaded_client.get("/model/").get_json()["version"]
    hour = datetime(2026, 3, 1, 10, tzinfo=UTC)
    db = services_of(app).db
    with db.transaction() as session:
        assert advance_mark(session, version, None, hour)
    with db.transaction() as session:
        assert not advance_mark(session, version, None, hour + timedelta(hours=1))
        assert advance_mark(session, version, hour, hour + timedelta(hours=2))
    with db.transaction() as session:
        assert not advance_mark(session, version, hour, hour + timedelta(hours=3))
