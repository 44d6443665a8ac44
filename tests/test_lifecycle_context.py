"""A version judged with the context its served predictions read: in a replay and as a shadow."""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from flight_delay.context.definitions import CONTEXT_FEATURES, flight_facts, observation
from flight_delay.context.index import ContextIndex
from tests.context_data import synthetic_context
from tests.factories import ADMIN_HEADERS
from tests.test_context_api import asked, post
from tests.test_replay import upload_file


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Keeps every posted day (the data spans three), reads posts and the traffic split at once."""
    return {**app_config, "CONTEXT_RETENTION_H": 24 * 30, "CONTEXT_REFRESH_MS": 0, "MODEL_REFRESH_MS": 0}


@pytest.fixture
def served(loaded_client: FlaskClient) -> tuple[ContextIndex, list[dict[str, Any]], list[dict[str, Any]]]:
    """Context posted, questions asked as of their times (each with an actual): the index, asks, answers."""
    flights, weather, questions = synthetic_context(3)
    post(loaded_client, "/flights/", "flights", flights)
    post(loaded_client, "/weather/", "observations", weather)
    batch = [asked(flight, as_of) for flight, as_of in questions]
    answers = loaded_client.post("/model/predict/", json={"flights": batch}).get_json()["predictions"]
    assert all(answer["context"]["used"] for answer in answers)
    actuals = [
        {"history_id": a["history_id"], "arr_delay": float(i % 40 - 10)} for i, a in enumerate(answers)
    ]
    assert (
        loaded_client.post("/model/actuals/", json={"actuals": actuals}, headers=ADMIN_HEADERS).status_code
        == 200
    )
    index = ContextIndex.of(map(flight_facts, flights), map(observation, weather))
    return index, batch, answers


def _seconds(as_of: str) -> int:
    """An ISO 8601 instant as epoch seconds."""
    return int(datetime.fromisoformat(as_of).timestamp())


def test_replaying_the_served_version_reads_the_context_each_prediction_read(
    loaded_client: FlaskClient, served: tuple
) -> None:
    version = loaded_client.get("/model/").get_json()["version"]

    answer = loaded_client.post(
        f"/model/versions/{version}/replay", json={}, headers=ADMIN_HEADERS
    ).get_json()

    assert answer["flights"] == len(served[2])
    assert answer["candidate"]["mae"] == pytest.approx(answer["served"]["mae"], rel=1e-12)
    assert answer["candidate"]["rmse"] == pytest.approx(answer["served"]["rmse"], rel=1e-12)


def test_a_shadow_scores_each_flight_with_its_context_as_served(
    loaded_client: FlaskClient, served: tuple, model_files: Callable[[int], Path]
) -> None:
    index, batch, _ = served
    shadow = upload_file(loaded_client, model_files(1), activate=False)
    assert (
        loaded_client.put("/model/traffic", json={"shadow": shadow}, headers=ADMIN_HEADERS).status_code == 200
    )

    answers = loaded_client.post("/model/predict/", json={"flights": batch}).get_json()["predictions"]
    rows = shadow_rows(loaded_client, shadow, len(batch))

    model = pickle.loads(model_files(1).read_bytes())
    expected = model.predict([{**f, **context_of(index, f)} for f in batch])
    by_served = {row["shadow_of"]: row["arr_delay"] for row in rows}
    assert [by_served[a["history_id"]] for a in answers] == pytest.approx(list(expected), abs=1e-9)


def context_of(index: ContextIndex, flight: dict[str, Any]) -> dict[str, Any]:
    """The context features of a flight as of its as_of."""
    found = index.context(flight, _seconds(flight["as_of"]))
    assert found.found
    return dict(zip(CONTEXT_FEATURES, found.features, strict=True))


def shadow_rows(client: FlaskClient, version: str, count: int) -> list[dict[str, Any]]:
    """The shadow's recorded predictions, once it has recorded `count` of them."""
    deadline = time.monotonic() + 30
    while True:
        items = client.get(f"/model/history/?model_version={version}&page_size=500").get_json()["items"]
        if len(items) >= count:
            return items
        assert time.monotonic() < deadline, f"the shadow recorded {len(items)} of {count}"
        time.sleep(0.05)
