"""Replay on recorded traffic: its numbers are those computed directly, whether waited for or polled."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient

from flight_delay.api import create_app
from flight_delay.api.services import services_of
from flight_delay.features import INPUT_FIELDS
from flight_delay.history.models import ReplayJob
from flight_delay.serving.adapters import adapt
from flight_delay.serving.replay import replayed_flight
from tests.factories import ADMIN_HEADERS, synthetic_flights, tiny_regressor

FLIGHTS = 60
WITH_ACTUAL = 50


def upload_file(client: FlaskClient, path: Path, activate: bool) -> str:
    """Uploads a model, active or as a candidate; its version."""
    query = "" if activate else "?activate=false"
    with path.open("rb") as handle:
        response = client.post(
            f"/model/load/{query}", data={"file": (handle, path.name)}, headers=ADMIN_HEADERS
        )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["version"]


class Recorded:
    """An app serving seed 0 that answered FLIGHTS real-shaped flights, WITH_ACTUAL of them with an actual."""

    def __init__(self, app: Flask, model_files: Callable[[int], Path]) -> None:
        self.app = app
        self.client = app.test_client()
        self.active = upload_file(self.client, model_files(0), activate=True)
        table = synthetic_flights(FLIGHTS, seed=7)
        self.flights = json.loads(table[list(INPUT_FIELDS)].to_json(orient="records"))
        self.actual = table["arr_delay"].to_numpy(dtype=np.float64)
        answer = self.client.post("/model/predict/", json={"flights": self.flights})
        assert answer.status_code == 200, answer.get_json()
        self.predictions = answer.get_json()["predictions"]
        self.ids = [p["history_id"] for p in self.predictions]
        actuals = [
            {"history_id": i, "arr_delay": float(a)} for i, a in zip(self.ids, self.actual, strict=True)
        ]
        posted = self.client.post(
            "/model/actuals/", json={"actuals": actuals[:WITH_ACTUAL]}, headers=ADMIN_HEADERS
        )
        assert posted.status_code == 200, posted.get_json()

    def replay(self, version: str, **window: str) -> Any:
        """POST /model/versions/{version}/replay."""
        return self.client.post(f"/model/versions/{version}/replay", json=window, headers=ADMIN_HEADERS)

    def direct(self, model: Any, indexes: list[int]) -> dict[str, Any]:
        """The comparison computed directly: the model on the flights, the answers, against the actuals."""
        flights = [self.flights[i] for i in indexes]
        actual = self.actual[indexes]
        candidate = np.asarray(model.predict(flights), dtype=np.float64) - actual
        served = np.array([self.predictions[i]["arr_delay"] for i in indexes]) - actual
        return {
            "flights": len(indexes),
            "candidate": {"mae": np.abs(candidate).mean(), "rmse": math.sqrt((candidate**2).mean())},
            "served": {"mae": np.abs(served).mean(), "rmse": math.sqrt((served**2).mean())},
        }


@pytest.fixture
def recorded(app: Flask, model_files: Callable[[int], Path]) -> Recorded:
    """The recorded traffic of the default app."""
    return Recorded(app, model_files)


def assert_same_figures(answer: dict[str, Any], direct: dict[str, Any]) -> None:
    """The replay's figures equal the direct computation (to float rounding)."""
    assert answer["flights"] == direct["flights"]
    for part in ("candidate", "served"):
        for figure in ("mae", "rmse"):
            assert answer[part][figure] == pytest.approx(direct[part][figure], rel=1e-9), (part, figure)


def test_a_replay_of_a_candidate_equals_a_direct_computation(
    recorded: Recorded, model_files: Callable
) -> None:
    candidate = upload_file(recorded.client, model_files(1), activate=False)

    response = recorded.replay(candidate)

    assert response.status_code == 200, response.get_json()
    answer = response.get_json()
    model = services_of(recorded.app).registry.model_of(candidate)
    assert_same_figures(answer, recorded.direct(model, list(range(WITH_ACTUAL))))
    assert answer["candidate"]["version"] == candidate
    assert (answer["status"], answer["skipped"]) == ("done", 0)
    assert answer["window"]["until"] is not None  # "until now" is fixed when asked
    assert answer["candidate"]["mae"] != answer["served"]["mae"]


def test_replaying_the_active_version_gives_what_was_served(recorded: Recorded) -> None:
    answer = recorded.replay(recorded.active).get_json()

    assert answer["candidate"]["mae"] == pytest.approx(answer["served"]["mae"], rel=1e-12)
    assert answer["candidate"]["rmse"] == pytest.approx(answer["served"]["rmse"], rel=1e-12)


def test_a_window_replays_only_the_predictions_recorded_in_it(recorded: Recorded) -> None:
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    later = recorded.replay(recorded.active, since=future).get_json()
    everything = recorded.replay(recorded.active, since=past, until=future).get_json()

    assert (later["flights"], later["candidate"]["mae"], later["served"]["mae"]) == (0, None, None)
    assert everything["flights"] == WITH_ACTUAL


def test_flights_lacking_a_field_the_version_reads_are_skipped_and_counted(
    recorded: Recorded, tmp_path: Path
) -> None:
    reads_air_time = tmp_path / "air_time.pkl"
    reads_air_time.write_bytes(cloudpickle.dumps(tiny_regressor(["distance", "air_time"])))
    candidate = upload_file(recorded.client, reads_air_time, activate=False)

    answer = recorded.replay(candidate).get_json()

    assert (answer["flights"], answer["skipped"]) == (0, WITH_ACTUAL)


def test_a_large_window_answers_202_and_its_status_url_the_same_once_done(
    app_config: dict[str, Any], model_files: Callable[[int], Path]
) -> None:
    recorded = Recorded(create_app({**app_config, "REPLAY_WAIT_FLIGHTS": 0}), model_files)
    candidate = upload_file(recorded.client, model_files(1), activate=False)

    started = recorded.replay(candidate)

    assert started.status_code == 202, started.get_json()
    status_url = started.get_json()["status_url"]
    deadline = time.monotonic() + 60
    while (polled := recorded.client.get(status_url)).status_code == 202:
        assert polled.get_json()["status"] == "running"
        assert time.monotonic() < deadline, "the replay never finished"
        time.sleep(0.05)
    assert polled.status_code == 200, polled.get_json()
    model = services_of(recorded.app).registry.model_of(candidate)
    assert_same_figures(polled.get_json(), recorded.direct(model, list(range(WITH_ACTUAL))))
    assert polled.get_json()["id"] == started.get_json()["id"]


def test_a_status_no_replay_has_is_a_404(client: FlaskClient) -> None:
    for replay_id in ("0" * 32, "not-an-id"):
        response = client.get(f"/model/replays/{replay_id}")
        assert response.status_code == 404
        assert response.get_json()["code"] == "unknown_replay"


def test_a_replay_whose_worker_stopped_is_reported_failed(recorded: Recorded) -> None:
    old = datetime.now(UTC) - timedelta(hours=1)
    job = ReplayJob(
        id="a" * 32,
        version=recorded.active,
        state="running",
        flights=10,
        scored=0,
        by="admin",
        created_at=old,
        updated_at=old,
    )
    with services_of(recorded.app).db.transaction() as session:
        session.add(job)

    answer = recorded.client.get(f"/model/replays/{'a' * 32}")

    assert answer.status_code == 200
    assert (answer.get_json()["status"], answer.get_json()["error"]["code"]) == ("failed", "replay_abandoned")


def test_shadow_predictions_are_never_replayed(
    recorded: Recorded, model_files: Callable[[int], Path]
) -> None:
    candidate = upload_file(recorded.client, model_files(1), activate=False)
    recorded.client.put("/model/traffic", json={"shadow": candidate}, headers=ADMIN_HEADERS)
    time.sleep(0.3)  # past MODEL_REFRESH_MS: the next prediction reads the split
    answer = recorded.client.post("/model/predict/", json=recorded.flights[0]).get_json()
    shadow = wait_for_shadow(recorded, candidate)
    actuals = [{"history_id": i, "arr_delay": 1.0} for i in (answer["predictions"][0]["history_id"], shadow)]
    assert (
        recorded.client.post("/model/actuals/", json={"actuals": actuals}, headers=ADMIN_HEADERS).status_code
        == 200
    )

    replayed = recorded.replay(candidate).get_json()

    assert replayed["flights"] == WITH_ACTUAL + 1


def wait_for_shadow(recorded: Recorded, version: str) -> int:
    """The id of the shadow's first recorded prediction, once recorded."""
    deadline = time.monotonic() + 30
    while not (items := recorded.client.get(f"/model/history/?model_version={version}").get_json()["items"]):
        assert time.monotonic() < deadline, "the shadow recorded nothing"
        time.sleep(0.05)
    assert items[0]["shadow_of"] is not None
    return items[0]["id"]


def test_the_replayed_flight_is_the_input_as_of_its_prediction_time() -> None:
    recorded_at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)

    class Row:
        input = json.dumps({"carrier": "UA", "dep_delay": None})
        created_at = recorded_at

    class SentAsOf(Row):
        input = json.dumps({"carrier": "UA", "as_of": "2013-05-01T06:00:00+00:00"})

    assert replayed_flight(Row()) == {"carrier": "UA", "dep_delay": None, "as_of": recorded_at.isoformat()}
    assert replayed_flight(SentAsOf())["as_of"] == "2013-05-01T06:00:00+00:00"


def test_a_bare_booster_replays_too(recorded: Recorded, tmp_path: Path) -> None:
    bare = tmp_path / "bare.pkl"
    bare.write_bytes(cloudpickle.dumps(tiny_regressor(["distance", "dep_delay"])))
    candidate = upload_file(recorded.client, bare, activate=False)

    answer = recorded.replay(candidate).get_json()

    model = adapt(cloudpickle.loads(bare.read_bytes()))
    assert_same_figures(answer, recorded.direct(model, list(range(WITH_ACTUAL))))


def test_the_newest_replays_are_listed_newest_first(recorded: Recorded, model_files: Callable) -> None:
    candidate = upload_file(recorded.client, model_files(1), activate=False)
    first = recorded.replay(recorded.active).get_json()
    second = recorded.replay(candidate).get_json()

    listed = recorded.client.get("/model/replays/?limit=5").get_json()["replays"]

    assert [entry["id"] for entry in listed] == [second["id"], first["id"]]
    assert listed[0]["candidate"] == second["candidate"]
    assert (listed[0]["by"], listed[0]["status"]) == ("admin", "done")
    assert recorded.client.get("/model/replays/?limit=0").status_code == 422
