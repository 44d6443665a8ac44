"""Contract versions: a model keeps the contract it was trained with, and still loads and scores (#13)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from flask.testing import FlaskClient

from flight_delay.artifact import from_bundle
from flight_delay.errors import InvalidArtifact
from flight_delay.features import (
    CONTRACT_VERSIONS,
    INPUT_FIELDS,
    REFERENCE_FLIGHT,
    ContractShape,
    FeatureContract,
)
from flight_delay.serving.loader import read_model
from tests.conftest import upload

# A bundle written by `to_bundle` before contracts had versions beyond 1 (the tiny model of seed 3,
# 200 rows): its contract is version 1 exactly as training writes it. The reference flight's score then:
V1_BUNDLE = Path(__file__).parent / "data" / "contract_v1.lgbm.json"
V1_REFERENCE_SCORE = 0.28335771286750383
# A bundle written before contract version 3 (the tiny model of seed 3, 200 rows, two bases, no
# context), and its scores of the reference flight at and before departure then:
V2_BUNDLE = Path(__file__).parent / "data" / "contract_v2.lgbm.json"
V2_REFERENCE_SCORES = {"at_departure": -3.106701118098913, "before_departure": 5.715990618704799}
V1_FEATURES = [
    "month",
    "day_of_week",
    "sched_dep_minute",
    "sched_arr_minute",
    "dep_delay",
    "distance",
    "carrier",
    "origin",
    "dest",
]


def stored_bundle(**contract_changes: Any) -> bytes:
    """The stored version-1 bundle, its contract changed as given."""
    bundle = json.loads(V1_BUNDLE.read_bytes())
    bundle["contract"] = {**bundle["contract"], **contract_changes}
    return json.dumps(bundle).encode()


def test_the_stored_version_1_contract_is_what_training_writes() -> None:
    contract = json.loads(V1_BUNDLE.read_bytes())["contract"]
    assert contract["version"] == 1
    assert contract["feature_names"] == V1_FEATURES
    assert contract["input_fields"] == list(INPUT_FIELDS)


def test_a_version_1_bundle_keeps_loading_and_scoring() -> None:
    checked = read_model(V1_BUNDLE.read_bytes())
    assert checked.describe()["contract"] == json.loads(V1_BUNDLE.read_bytes())["contract"]
    assert checked.input_fields == INPUT_FIELDS
    assert checked.predict([REFERENCE_FLIGHT]).tolist() == pytest.approx([V1_REFERENCE_SCORE], abs=1e-9)


def test_a_version_2_bundle_keeps_loading_and_scoring_both_bases() -> None:
    checked = read_model(V2_BUNDLE.read_bytes())

    assert checked.describe()["contract"]["version"] == 2
    assert checked.context_features == ()
    scores = checked.predict([REFERENCE_FLIGHT, {**REFERENCE_FLIGHT, "dep_delay": None}]).tolist()
    assert scores == pytest.approx(list(V2_REFERENCE_SCORES.values()), abs=1e-9)


def test_the_api_serves_a_version_2_model_without_context(client: FlaskClient, tmp_path: Path) -> None:
    path = tmp_path / "model.lgbm.json"
    path.write_bytes(V2_BUNDLE.read_bytes())
    assert upload(client, path).status_code == 201

    answer = client.post("/model/predict/", json={**REFERENCE_FLIGHT, "as_of": "2013-01-01T08:00:00Z"})

    [prediction] = answer.get_json()["predictions"]
    assert prediction["arr_delay"] == pytest.approx(V2_REFERENCE_SCORES["at_departure"], abs=1e-12)
    assert "context" not in prediction  # a model that reads no context answers as before


def test_a_pickled_version_1_model_keeps_loading_and_scoring() -> None:
    pickled = cloudpickle.dumps(from_bundle(V1_BUNDLE.read_bytes()))
    checked = read_model(pickled)
    assert checked.predict([REFERENCE_FLIGHT]).tolist() == pytest.approx([V1_REFERENCE_SCORE], abs=1e-9)


def test_the_api_serves_a_version_1_model(client: FlaskClient, tmp_path: Path) -> None:
    path = tmp_path / "model.lgbm.json"
    path.write_bytes(V1_BUNDLE.read_bytes())
    assert upload(client, path).status_code == 201

    response = client.post("/model/predict/", json=REFERENCE_FLIGHT)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["predictions"][0]["arr_delay"] == pytest.approx(V1_REFERENCE_SCORE, abs=1e-12)
    assert client.get("/model/").get_json()["contract"]["version"] == 1


@pytest.mark.parametrize("version", [0, 4, 99, "1", None, True, [1]])
def test_an_unknown_version_is_refused_clearly(version: Any) -> None:
    with pytest.raises(InvalidArtifact) as refused:
        read_model(stored_bundle(version=version))
    assert f"contract version {version!r} is unknown: this code reads versions 1, 2, 3" in str(refused.value)


def test_the_api_says_which_versions_it_reads(client: FlaskClient, tmp_path: Path) -> None:
    path = tmp_path / "model.lgbm.json"
    path.write_bytes(stored_bundle(version=7))

    response = upload(client, path)

    assert response.status_code == 400
    assert "contract version 7 is unknown: this code reads versions 1, 2, 3" in response.get_json()["message"]


VERSION_2 = ContractShape(
    input_fields=tuple(name for name in INPUT_FIELDS if name != "distance"),
    feature_names=tuple(name for name in V1_FEATURES if name != "distance"),
)


def test_each_version_loads_and_encodes_with_its_own_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CONTRACT_VERSIONS, 2, VERSION_2)
    v1 = json.loads(V1_BUNDLE.read_bytes())["contract"]
    v2 = {**v1, "version": 2, "input_fields": list(VERSION_2.input_fields)}
    v2["feature_names"] = list(VERSION_2.feature_names)

    old, new = FeatureContract.from_dict(v1), FeatureContract.from_dict(v2)

    assert (old.version, old.input_fields, old.feature_names) == (1, INPUT_FIELDS, tuple(V1_FEATURES))
    assert (new.version, new.input_fields) == (2, VERSION_2.input_fields)
    both = old.encode_flights([REFERENCE_FLIGHT])[0].tolist()
    assert new.encode_flights([REFERENCE_FLIGHT])[0].tolist() == both[:5] + both[6:]
    assert FeatureContract.from_dict(new.to_dict()) == new


def test_a_contract_must_have_the_fields_of_its_own_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CONTRACT_VERSIONS, 2, VERSION_2)
    v1 = json.loads(V1_BUNDLE.read_bytes())["contract"]
    with pytest.raises(ValueError, match="contract feature_names must be"):
        FeatureContract.from_dict({**v1, "feature_names": list(VERSION_2.feature_names)})
    with pytest.raises(ValueError, match="contract input_fields must be"):
        FeatureContract.from_dict({**v1, "version": 2, "feature_names": list(VERSION_2.feature_names)})


def test_a_model_pickled_before_contract_ranges_existed_still_loads() -> None:
    model = from_bundle(V1_BUNDLE.read_bytes())
    object.__delattr__(model.contract, "ranges")  # as an older release pickled it
    object.__delattr__(model.contract, "_context")  # nor the context features of version 3
    del model.before_departure, model.residual, model.without_context  # one booster, arr_delay directly

    checked = read_model(cloudpickle.dumps(model))

    assert checked.model.contract.ranges == {}
    assert checked.model.before_departure is None
    assert (
        checked.predict([REFERENCE_FLIGHT])[0]
        == model.booster.predict(model.contract.encode_flights([REFERENCE_FLIGHT]))[0]
    )
