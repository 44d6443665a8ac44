"""A property-based fuzz of the upload: damaged valid models in each accepted format never kill a worker.

Valid models of every accepted format (the project's .pkl and .lgbm.json, a LightGBM text model, a
pickled Pipeline) are truncated, bit-flipped and spliced into one another, and uploaded to a real
server (2 workers, the backend under test). Whatever comes back is a 201 (the damage left a model that
passes every check: it is then served) or a 4xx in the one error shape; never a 5xx, no worker dies,
the service predicts after each, with the model it served before unless the upload was accepted.
Derandomized and bounded (MAX_EXAMPLES), so that CI runs the same examples in under a minute.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import pytest
import requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from flight_delay.artifact import to_bundle
from tests.factories import ADMIN_HEADERS, minimal_flight, synthetic_flights, tiny_model, tiny_regressor
from tests.servers import RunningServer, serve_with_model

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 150
COLUMNS = ["dep_delay", "distance"]


@functools.cache
def valid_uploads() -> dict[str, bytes]:
    """One valid model per accepted format."""
    model = tiny_model(1)
    frame = synthetic_flights(200)
    pipeline = Pipeline([("impute", SimpleImputer()), ("model", tiny_regressor(COLUMNS))])
    pipeline.fit(frame[COLUMNS], frame["arr_delay"])
    return {
        "pkl": cloudpickle.dumps(model),
        "lgbm.json": to_bundle(model),
        "lightgbm text": tiny_regressor(COLUMNS).booster_.model_to_string().encode(),
        "pipeline pkl": pickle.dumps(pipeline, protocol=2),
    }


FORMATS = st.sampled_from(["pkl", "lgbm.json", "lightgbm text", "pipeline pkl"])


@st.composite
def damaged_uploads(draw: st.DrawFn) -> bytes:
    """A valid model of some format, truncated, bit-flipped, or spliced with another."""
    form = draw(FORMATS)
    data = valid_uploads()[form]
    damage = draw(st.sampled_from(["truncated", "bit-flipped", "spliced"]))
    event(f"{damage} {form}")
    if damage == "truncated":
        return data[: draw(st.integers(0, len(data) - 1))]
    if damage == "bit-flipped":
        flipped = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            flipped[position] ^= 1 << draw(st.integers(0, 7))
        return bytes(flipped)
    other = valid_uploads()[draw(FORMATS)]
    return data[: draw(st.integers(0, len(data)))] + other[draw(st.integers(0, len(other))) :]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """A real server with 2 workers serving the tiny model of seed 0, asking each time which is active."""
    valid_uploads()  # trained before the server starts
    data_dir = tmp_path_factory.mktemp("fuzz")
    with serve_with_model(data_dir, module_database_url, model_files(0), MODEL_REFRESH_MS="0") as running:
        yield running


def predicting_version(server: RunningServer) -> str:
    """Predicts one flight and returns the version that answered."""
    answer = requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


@given(upload=damaged_uploads())
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_a_damaged_model_is_refused_or_served_and_never_kills_a_worker(
    server: RunningServer, upload: bytes
) -> None:
    workers, before = server.worker_pids(), predicting_version(server)

    answer = requests.post(
        f"{server.url}/model/load/", files={"file": ("model", upload)}, headers=ADMIN_HEADERS, timeout=120
    )

    body = answer.json()
    assert answer.status_code == 201 or 400 <= answer.status_code < 500, body
    event(str(answer.status_code) + " " + str(body.get("code", "")))
    assert server.worker_pids() == workers, f"a worker died:\n{server.log()[-3000:]}"
    expected = body["version"] if answer.status_code == 201 else before
    assert predicting_version(server) == expected
    if answer.status_code != 201:
        assert body["status"] == answer.status_code
        assert body["message"]
