"""POST /model/load/ and GET /model/: accepted kinds, every refusal, and persistence of the choice."""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from flask.testing import FlaskClient
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from flight_delay.api import create_app
from flight_delay.artifact import BUNDLE_FORMAT
from tests.conftest import upload
from tests.factories import (
    ADMIN_HEADERS,
    minimal_flight,
    reference_flight,
    synthetic_flights,
    tiny_regressor,
)


def active_version(client: FlaskClient) -> str | None:
    """Returns the version GET /model/ reports, or None when no model is loaded."""
    response = client.get("/model/")
    return response.get_json()["version"] if response.status_code == 200 else None


def load_bytes(client: FlaskClient, data: bytes) -> object:
    """Uploads raw bytes as an application/octet-stream body."""
    return client.post(
        "/model/load/", data=data, content_type="application/octet-stream", headers=ADMIN_HEADERS
    )


def test_multipart_upload_is_stored_and_activated(
    client: FlaskClient, model_files: Callable[[int], Path], app_config: dict
) -> None:
    path = model_files(0)
    response = upload(client, path)

    assert response.status_code == 201
    info = response.get_json()
    version = hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["version"] == version
    assert info["kind"] == "flight-delay/lightgbm"
    assert info["filename"] == path.name
    assert "carrier" in info["input_fields"]
    assert info["nullable_fields"] == ["dep_delay"]
    assert set(info["metrics"]) == {"test", "baselines", "bases", "shift"}
    for moment in (info["created_at"], info["loaded_at"]):
        assert datetime.fromisoformat(moment).utcoffset() == timedelta(0)
    # Cached: the native form the sandbox wrote of the pickle (a pickle-free bundle), under its sha256.
    [cached] = app_config["MODEL_STORE_DIR"].iterdir()
    assert cached.name == hashlib.sha256(cached.read_bytes()).hexdigest() != version
    assert json.loads(cached.read_bytes())["format"] == BUNDLE_FORMAT
    assert info.pop("stage") == "active"
    assert client.get("/model/").get_json() == info


def test_a_long_file_name_is_kept_shortened(client: FlaskClient, model_files: Callable[[int], Path]) -> None:
    name = "m" * 300 + ".pkl"
    with model_files(0).open("rb") as handle:
        response = client.post("/model/load/", data={"file": (handle, name)}, headers=ADMIN_HEADERS)

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["filename"] == name[:255]
    assert client.get("/model/").get_json()["filename"] == name[:255]


def test_octet_stream_upload_is_accepted(client: FlaskClient, model_files: Callable[[int], Path]) -> None:
    response = load_bytes(client, model_files(1).read_bytes())

    assert response.status_code == 201
    assert client.post("/model/predict/", json=minimal_flight()).status_code == 200


def test_loading_another_model_switches_predictions(
    loaded_client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    first = loaded_client.post("/model/predict/", json=minimal_flight()).get_json()
    version_b = upload(loaded_client, model_files(1)).get_json()["version"]
    second = loaded_client.post("/model/predict/", json=minimal_flight()).get_json()

    assert first["model_version"] != version_b
    assert second["model_version"] == version_b
    assert active_version(loaded_client) == version_b


def test_the_active_model_survives_a_restart(loaded_client: FlaskClient, app_config: dict) -> None:
    version = active_version(loaded_client)
    restarted = create_app(app_config).test_client()

    assert active_version(restarted) == version
    assert restarted.post("/model/predict/", json=minimal_flight()).get_json()["model_version"] == version


def test_no_model_gives_503_on_model_info(client: FlaskClient) -> None:
    response = client.get("/model/")

    assert response.status_code == 503
    assert response.get_json()["code"] == "model_not_loaded"


@pytest.mark.parametrize(
    ("features", "kind"),
    [(["dep_delay", "distance", "month"], "lightgbm.LGBMRegressor")],
)
def test_bare_lightgbm_regressor_is_accepted(client: FlaskClient, features: list, kind: str) -> None:
    response = load_bytes(client, pickle.dumps(tiny_regressor(features)))

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["kind"] == kind
    assert response.get_json()["input_fields"] == features
    predicted = client.post("/model/predict/", json={"dep_delay": 30.0, "distance": 500.0, "month": 3})
    assert predicted.status_code == 200
    missing = client.post("/model/predict/", json={"dep_delay": 30.0})
    assert missing.status_code == 422
    assert set(missing.get_json()["errors"]) == {"distance", "month"}


def test_bare_booster_is_accepted_and_matches_its_regressor(client: FlaskClient) -> None:
    regressor = tiny_regressor(["dep_delay", "distance"])
    response = load_bytes(client, pickle.dumps(regressor.booster_))

    assert response.status_code == 201
    assert response.get_json()["kind"] == "lightgbm.Booster"
    body = client.post("/model/predict/", json={"dep_delay": 45.0, "distance": 900.0}).get_json()
    expected = regressor.booster_.predict(np.array([[45.0, 900.0]]))[0]
    assert body["predictions"][0]["arr_delay"] == pytest.approx(expected)


def test_sklearn_pipeline_ending_in_lightgbm_is_accepted(client: FlaskClient) -> None:
    frame = synthetic_flights(300)
    columns = ["carrier", "dep_delay", "distance"]
    encode = ColumnTransformer(
        [("carrier", OneHotEncoder(handle_unknown="ignore"), ["carrier"])], remainder="passthrough"
    )
    pipeline = Pipeline([("encode", encode), ("model", tiny_regressor(["dep_delay"]).set_params())])
    pipeline.fit(frame[columns], frame["arr_delay"])

    response = load_bytes(client, pickle.dumps(pipeline))

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["kind"] == "sklearn.Pipeline"
    body = client.post("/model/predict/", json={"carrier": "EV", "dep_delay": 5.0, "distance": 700.0})
    assert body.status_code == 200
    expected = pipeline.predict(
        frame[columns]
        .iloc[:0]
        ._append({"carrier": "EV", "dep_delay": 5.0, "distance": 700.0}, ignore_index=True)
    )[0]
    assert body.get_json()["predictions"][0]["arr_delay"] == pytest.approx(expected)


def _pipeline_that_fails_on_predict() -> Pipeline:
    """A fitted pipeline whose encoder has never seen the reference flight's carrier and refuses it."""
    frame = synthetic_flights(200).assign(carrier="ZZ")
    encode = ColumnTransformer([("carrier", OneHotEncoder(handle_unknown="error"), ["carrier"])])
    pipeline = Pipeline([("encode", encode), ("model", tiny_regressor(["dep_delay"]).set_params())])
    pipeline.fit(frame[["carrier", "dep_delay"]], frame["arr_delay"])
    return pipeline


class HasNoPredict:
    """A picklable object that is not a model."""


class PredictsSomethingElse:
    """A picklable object with predict that is none of the accepted kinds."""

    def predict(self, rows: list) -> list:
        return [0.0 for _ in rows]


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        (b"", 400, "empty"),
        (b"this is not a pickle at all", 400, "not a readable pickle"),
        (b"PK\x03\x04zipped", 400, "zip archive"),
        (pickle.dumps({"weights": [1, 2, 3]})[:-5], 400, "not a readable pickle"),
        (pickle.dumps({"weights": [1, 2, 3]}), 422, "no predict method"),
        (pickle.dumps(HasNoPredict()), 400, "tests.test_load.HasNoPredict, which is not allowed"),
        (pickle.dumps(PredictsSomethingElse()), 400, "not allowed"),
        (pickle.dumps(lgb.Booster), 422, "accepted are"),
    ],
    ids=[
        "empty",
        "text",
        "zip",
        "truncated",
        "dict",
        "unknown-class",
        "unknown-class-with-predict",
        "class-not-instance",
    ],
)
def test_bad_uploads_are_refused_and_the_model_keeps_serving(
    loaded_client: FlaskClient, data: bytes, status: int, message: str
) -> None:
    before = active_version(loaded_client)
    response = load_bytes(loaded_client, data)

    assert response.status_code == status
    body = response.get_json()
    assert message in body["message"]
    assert body["status"] == status
    assert active_version(loaded_client) == before
    assert loaded_client.post("/model/predict/", json=minimal_flight()).get_json()["model_version"] == before


def test_model_reading_non_dataset_columns_is_refused(loaded_client: FlaskClient) -> None:
    frame = synthetic_flights(200)
    regressor = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(
        frame[["dep_delay"]].to_numpy(), frame["arr_delay"]
    )
    response = load_bytes(loaded_client, pickle.dumps(regressor))

    assert response.status_code == 422
    assert "Column_0" in response.get_json()["message"]


def test_model_reading_the_target_is_refused(loaded_client: FlaskClient) -> None:
    response = load_bytes(loaded_client, pickle.dumps(tiny_regressor(["arr_delay", "dep_delay"])))

    assert response.status_code == 422
    assert "arr_delay" in response.get_json()["message"]


def test_bare_model_on_text_columns_is_refused(loaded_client: FlaskClient) -> None:
    frame = synthetic_flights(200)
    frame["carrier"] = frame["carrier"].astype("category")
    regressor = lgb.LGBMRegressor(n_estimators=5, verbose=-1, min_child_samples=5)
    regressor.fit(frame[["carrier", "dep_delay"]], frame["arr_delay"])
    response = load_bytes(loaded_client, pickle.dumps(regressor))

    assert response.status_code == 422
    assert "text columns" in response.get_json()["message"]


def test_model_failing_on_the_reference_flight_is_refused(loaded_client: FlaskClient) -> None:
    before = active_version(loaded_client)
    response = load_bytes(loaded_client, pickle.dumps(_pipeline_that_fails_on_predict()))

    assert response.status_code == 422
    assert "failed on the reference flight" in response.get_json()["message"]
    assert active_version(loaded_client) == before


def test_unfitted_regressor_is_refused(loaded_client: FlaskClient) -> None:
    response = load_bytes(loaded_client, pickle.dumps(lgb.LGBMRegressor()))

    assert response.status_code == 422
    assert "not fitted" in response.get_json()["message"]


def test_wrong_content_type_is_a_415(loaded_client: FlaskClient) -> None:
    response = loaded_client.post("/model/load/", json={"model": "base64..."}, headers=ADMIN_HEADERS)

    assert response.status_code == 415
    assert "multipart/form-data" in response.get_json()["message"]


def test_multipart_without_file_field_is_refused(loaded_client: FlaskClient) -> None:
    response = loaded_client.post(
        "/model/load/", data={"model": "x"}, content_type="multipart/form-data", headers=ADMIN_HEADERS
    )

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"file": ["Missing data for required field."]}


def test_reference_flight_prediction_is_finite_for_each_accepted_kind(
    loaded_client: FlaskClient,
) -> None:
    response = loaded_client.post("/model/predict/", json=reference_flight())

    assert np.isfinite(response.get_json()["predictions"][0]["arr_delay"])
