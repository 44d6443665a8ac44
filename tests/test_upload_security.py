"""Who may load a model, how big it may be, signatures, and the pickle-free formats."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import lightgbm as lgb
import numpy as np
import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskClient

from flight_delay.api import create_app
from flight_delay.artifact import BUNDLE_FORMAT, bundle_path, save_artifact, to_bundle
from flight_delay.cli import main
from flight_delay.errors import UnsafeConfiguration
from flight_delay.serving.signing import sign
from tests.factories import ADMIN_HEADERS, minimal_flight, tiny_model, tiny_regressor
from tests.servers import serve

KEY = "signing-key-for-tests"


def post_model(client: FlaskClient, data: bytes, headers: dict[str, str] | None = None) -> Any:
    """Uploads data as multipart field `file` with the given headers."""
    return client.post("/model/load/", data={"file": (io.BytesIO(data), "model.bin")}, headers=headers or {})


def active_version(client: FlaskClient) -> str | None:
    """The version /model/ reports, or None without a model."""
    response = client.get("/model/")
    return response.get_json()["version"] if response.status_code == 200 else None


@pytest.fixture
def artifact(model_files: Callable[[int], Path]) -> bytes:
    """The bytes of a valid project artifact."""
    return model_files(0).read_bytes()


# --- the admin token ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": "Basic dGVzdC1hZG1pbi10b2tlbg=="},
        {"Authorization": "Bearer"},
        {"Authorization": "test-admin-token"},
    ],
    ids=["none", "wrong", "basic-scheme", "empty-bearer", "no-scheme"],
)
def test_upload_without_the_right_token_is_a_401(loaded_client: FlaskClient, headers: dict[str, str]) -> None:
    before = active_version(loaded_client)
    response = post_model(loaded_client, tiny_model_bytes(), headers)

    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert active_version(loaded_client) == before


def tiny_model_bytes(seed: int = 3) -> bytes:
    """A valid artifact other than the loaded one."""
    return cloudpickle.dumps(tiny_model(seed))


def test_upload_with_the_token_is_accepted(client: FlaskClient) -> None:
    response = post_model(client, tiny_model_bytes(), ADMIN_HEADERS)

    assert response.status_code == 201
    assert active_version(client) == response.get_json()["version"]


def test_upload_can_be_switched_off(app_config: dict, artifact: bytes) -> None:
    client = create_app({**app_config, "ML_API_ALLOW_UPLOAD": False}).test_client()

    response = post_model(client, artifact, ADMIN_HEADERS)

    assert response.status_code == 403
    assert response.get_json()["code"] == "upload_disabled"
    assert active_version(client) is None


@pytest.mark.parametrize("environment", ["production", "testing"])
@pytest.mark.parametrize("token", [None, "short"])
def test_every_environment_but_development_refuses_to_start_with_open_upload(
    app_config: dict, token: str | None, environment: str
) -> None:
    with pytest.raises(UnsafeConfiguration, match="ML_API_ADMIN_TOKEN"):
        create_app({**app_config, "ENV": environment, "ML_API_ADMIN_TOKEN": token})


def test_production_starts_with_a_token_or_with_upload_off(app_config: dict) -> None:
    with_token = create_app({**app_config, "ENV": "production", "ML_API_ADMIN_TOKEN": "x" * 32})
    upload_off = create_app(
        {**app_config, "ENV": "production", "ML_API_ADMIN_TOKEN": None, "ML_API_ALLOW_UPLOAD": False}
    )

    assert with_token.config["ML_API_ADMIN_TOKEN"] == "x" * 32
    assert upload_off.config["ML_API_ALLOW_UPLOAD"] is False


def test_development_without_token_is_open_and_says_so(
    app_config: dict, artifact: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flight_delay.api.auth"):
        client = create_app({**app_config, "ENV": "development", "ML_API_ADMIN_TOKEN": None}).test_client()

    assert "DEVELOPMENT MODE" in caplog.text
    assert "anyone" in caplog.text
    assert post_model(client, artifact).status_code == 201


@pytest.mark.parametrize("environment", ["production", "testing"])
def test_serve_command_exits_with_the_reason_outside_development_without_token(
    tmp_path: Path, environment: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ML_API_", "FLIGHT_DELAY_"))}
    env |= {"DATA_DIR": str(tmp_path), "FLIGHT_DELAY_ENV": environment, "ML_API_PORT": "1"}
    command = [str(Path(sys.executable).parent / "flight-delay"), "serve"]

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert finished.returncode == 1
    assert f"Refusing to start ({environment})" in finished.stderr
    assert not (tmp_path / "flight_delay.db").exists()  # refused before touching anything


# --- size and signature ------------------------------------------------------------------------


def test_model_larger_than_max_model_bytes_is_a_413(app_config: dict, artifact: bytes) -> None:
    client = create_app({**app_config, "MAX_MODEL_BYTES": len(artifact) - 1}).test_client()

    multipart = post_model(client, artifact, ADMIN_HEADERS)
    raw = client.post(
        "/model/load/", data=artifact, content_type="application/octet-stream", headers=ADMIN_HEADERS
    )

    for response in (multipart, raw):
        assert response.status_code == 413
        assert response.get_json()["code"] == "model_too_large"
        assert "MAX_MODEL_BYTES" in response.get_json()["message"]
    assert active_version(client) is None


def test_model_of_exactly_max_model_bytes_is_accepted(app_config: dict, artifact: bytes) -> None:
    client = create_app({**app_config, "MAX_MODEL_BYTES": len(artifact)}).test_client()

    assert post_model(client, artifact, ADMIN_HEADERS).status_code == 201


def test_max_model_bytes_is_independent_of_the_json_body_limit(app_config: dict, artifact: bytes) -> None:
    client = create_app({**app_config, "MAX_CONTENT_LENGTH": 1024}).test_client()

    assert post_model(client, artifact, ADMIN_HEADERS).status_code == 201


@pytest.mark.slow
def test_chunked_upload_over_the_limit_is_a_413_from_the_real_server(
    tmp_path: Path, database_url: str
) -> None:
    def chunks() -> Iterator[bytes]:
        yield from (b"\x80" * 65536 for _ in range(40))  # 2.5 MiB, no Content-Length

    with serve(tmp_path / "data", database_url, workers=1, MAX_MODEL_BYTES="1048576") as server:
        response = requests.post(
            f"{server.url}/model/load/",
            data=chunks(),
            headers={**ADMIN_HEADERS, "Content-Type": "application/octet-stream"},
            timeout=30,
        )

    assert response.status_code == 413
    assert response.json()["code"] == "model_too_large"


@pytest.fixture
def signed_client(app_config: dict) -> FlaskClient:
    """A client of an app that demands signed models."""
    return create_app({**app_config, "ML_API_MODEL_SIGNING_KEY": KEY}).test_client()


def test_signed_model_is_accepted(signed_client: FlaskClient, artifact: bytes) -> None:
    headers = {**ADMIN_HEADERS, "X-Model-Signature": sign(artifact, KEY)}

    assert post_model(signed_client, artifact, headers).status_code == 201


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "deadbeef", sign(b"another file", KEY), sign(b"x", "another key")],
    ids=["missing", "zeros", "malformed", "other-file", "other-key"],
)
def test_unsigned_or_wrongly_signed_model_is_a_403(
    signed_client: FlaskClient, artifact: bytes, signature: str | None
) -> None:
    headers = dict(ADMIN_HEADERS) | ({"X-Model-Signature": signature} if signature else {})

    response = post_model(signed_client, artifact, headers)

    assert response.status_code == 403
    assert response.get_json()["code"] == "invalid_signature"
    assert active_version(signed_client) is None


def test_sign_command_prints_the_header_the_server_checks(tmp_path: Path, artifact: bytes) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(artifact)

    result = CliRunner().invoke(main, ["sign", str(path)], env={"ML_API_MODEL_SIGNING_KEY": KEY})

    assert result.exit_code == 0, result.output
    assert result.output.strip() == sign(artifact, KEY)


# --- pickle-free models ------------------------------------------------------------------------


def test_bundle_loads_without_pickle_and_predicts_like_the_pickle(
    client: FlaskClient, tmp_path: Path
) -> None:
    model = tiny_model(0)
    pickled = save_artifact(model, tmp_path / "model.pkl")
    assert post_model(client, pickled.read_bytes(), ADMIN_HEADERS).status_code == 201
    from_pickle = client.post("/model/predict/", json=minimal_flight()).get_json()

    response = post_model(client, bundle_path(pickled).read_bytes(), ADMIN_HEADERS)
    from_bundle = client.post("/model/predict/", json=minimal_flight()).get_json()

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["kind"] == "flight-delay/lightgbm"
    assert response.get_json()["contract"] == model.contract.to_dict()
    assert from_bundle["model_version"] == response.get_json()["version"]
    assert from_bundle["predictions"][0]["arr_delay"] == pytest.approx(
        from_pickle["predictions"][0]["arr_delay"]
    )


def test_bundle_model_survives_a_restart(client: FlaskClient, app_config: dict) -> None:
    version = post_model(client, to_bundle(tiny_model(0)), ADMIN_HEADERS).get_json()["version"]

    restarted = create_app(app_config).test_client()

    assert active_version(restarted) == version
    assert restarted.post("/model/predict/", json=minimal_flight()).status_code == 200


def test_lightgbm_text_model_is_accepted_as_a_bare_booster(client: FlaskClient) -> None:
    regressor = tiny_regressor(["dep_delay", "distance"])
    text = regressor.booster_.model_to_string().encode()

    response = post_model(client, text, ADMIN_HEADERS)
    body = client.post("/model/predict/", json={"dep_delay": 30.0, "distance": 700.0}).get_json()

    assert response.status_code == 201, response.get_json()
    assert response.get_json()["kind"] == "lightgbm.Booster (text)"
    expected = regressor.booster_.predict(np.array([[30.0, 700.0]]))[0]
    assert body["predictions"][0]["arr_delay"] == pytest.approx(expected)


def _bundle(**changes: Any) -> bytes:
    """A valid bundle of the tiny model with some top-level fields replaced."""
    bundle = json.loads(to_bundle(tiny_model(0)))
    bundle.update(changes)
    return json.dumps(bundle).encode()


def _contract(**changes: Any) -> dict[str, Any]:
    """The tiny model's contract with some fields replaced."""
    return {**tiny_model(0).contract.to_dict(), **changes}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", BUNDLE_FORMAT),
        (_bundle(format="something/else"), BUNDLE_FORMAT),
        (_bundle(booster=None), "text model"),
        (_bundle(booster="tree\nversion=v4\nnum_class=banana\n"), "malformed"),
        (_bundle(contract=_contract(feature_names=["month"])), "feature_names"),
        (_bundle(contract=_contract(categories={"carrier": [1, 2]})), "categories"),
        (_bundle(contract=_contract(version=99)), "version"),
        (_bundle(metrics={"deep": json.loads("[" * 40 + "]" * 40)}), "too deeply nested"),
        (_bundle(metrics={"long": "x" * 20_000}), "longer than"),
        (
            _bundle(booster=tiny_regressor(["dep_delay"]).booster_.model_to_string()),
            "boosters' features must be",
        ),
        (b'{"format": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON"),
    ],
    ids=[
        "invalid-json",
        "not-an-object",
        "wrong-format",
        "no-booster",
        "garbage-booster",
        "wrong-features",
        "non-string-categories",
        "wrong-version",
        "deep-metrics",
        "long-string",
        "booster-contract-mismatch",
        "json-nesting-bomb",
    ],
)
def test_malformed_bundles_are_refused(loaded_client: FlaskClient, data: bytes, message: str) -> None:
    before = active_version(loaded_client)

    response = post_model(loaded_client, data, ADMIN_HEADERS)

    assert response.status_code == 400, response.get_json()
    assert message in response.get_json()["message"]
    assert active_version(loaded_client) == before


def test_save_artifact_writes_both_forms_with_the_same_predictions(tmp_path: Path) -> None:
    from flight_delay.artifact import from_bundle
    from flight_delay.features import REFERENCE_FLIGHT

    model = tiny_model(0)
    path = save_artifact(model, tmp_path / "model.pkl")
    restored = from_bundle(bundle_path(path).read_bytes())

    assert path.is_file()
    assert bundle_path(path) == tmp_path / "model.lgbm.json"
    assert isinstance(restored.booster, lgb.Booster)
    assert restored.contract == model.contract
    assert restored.predict([REFERENCE_FLIGHT]) == pytest.approx(model.predict([REFERENCE_FLIGHT]))
