"""Hostile model files: none runs, each gets a clear 4xx, and the serving model is unchanged."""

from __future__ import annotations

import importlib
import inspect
import pickle
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

import cloudpickle
import pytest
from flask.testing import FlaskClient

from flight_delay.serving.safe_pickle import ALLOWED_GLOBALS, GUARDED_GLOBALS, refused_globals
from tests import hostile
from tests.factories import ADMIN_HEADERS, minimal_flight, tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def canary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The file every code-running payload tries to create."""
    return tmp_path_factory.mktemp("hostile") / "canary"


@pytest.fixture(scope="module")
def corpus(canary: Path) -> dict[str, dict[str, bytes]]:
    """The hostile files by family."""
    model = tiny_model(0)
    return {
        "code": {
            **hostile.every_protocol(hostile.reduce_payloads(canary, canary.parent)),
            **hostile.cloudpickle_payloads(canary),
            **hostile.opcode_payloads(canary),
        },
        "bombs": {**hostile.bomb_payloads(), **hostile.metadata_bombs(model)},
        "malformed": hostile.malformed_files(cloudpickle.dumps(model)),
    }


def upload_bytes(client: FlaskClient, data: bytes) -> tuple[int, dict]:
    """Uploads data as an octet-stream model and returns the status and JSON body."""
    response = client.post(
        "/model/load/", data=data, content_type="application/octet-stream", headers=ADMIN_HEADERS
    )
    return response.status_code, response.get_json()


def serving_version(client: FlaskClient) -> str:
    """Predicts one flight and returns the version that answered."""
    response = client.post("/model/predict/", json=minimal_flight())
    assert response.status_code == 200, response.get_json()
    return response.get_json()["model_version"]


@pytest.mark.parametrize("family", ["code", "bombs", "malformed"])
def test_hostile_files_are_refused_with_a_4xx_and_change_nothing(
    loaded_client: FlaskClient, corpus: dict[str, dict[str, bytes]], canary: Path, family: str
) -> None:
    before = serving_version(loaded_client)
    wrong: list[str] = []
    for name, data in corpus[family].items():
        status, body = upload_bytes(loaded_client, data)
        well_formed = body["status"] == status and body["code"] and body["message"] and body["request_id"]
        if status not in (400, 422) or not well_formed:
            wrong.append(f"{name}: {status} {body}")
    time.sleep(0.5)  # a payload that spawned a process would have touched the canary by now

    assert wrong == []
    assert not canary.exists()
    assert serving_version(loaded_client) == before
    assert loaded_client.get("/model/").get_json()["version"] == before


def test_code_payloads_are_refused_by_name_before_anything_runs(
    loaded_client: FlaskClient, corpus: dict[str, dict[str, bytes]]
) -> None:
    for name, data in corpus["code"].items():
        status, body = upload_bytes(loaded_client, data)
        named = body.get("errors", {}).get("refused_globals") or "dynamically" in body["message"]
        trailing = "after the end of its pickle" in body["message"]
        assert status == 400, f"{name}: {body}"
        assert named or trailing, f"{name}: {body}"


@pytest.mark.parametrize(
    "name",
    [
        "os.system-p2",
        "builtins.exec-p0",
        "subprocess.Popen-p5",
        "getattr-import-chain-p4",
        "pkgutil.resolve_name-p3",
        "numpy.load-p4",
        "pandas.read_pickle-p1",
        "cloudpickle-function-by-value",
        "protocol-0-INST",
        "stack-global-memoised",
        "stack-global-behind-pop",
    ],
)
def test_the_corpus_is_live_plain_pickle_runs_it(tmp_path: Path, name: str) -> None:
    """Control: in a separate process, plain pickle.loads of the same payload creates the canary."""
    canary = tmp_path / "canary"
    payloads = {
        **hostile.every_protocol(hostile.reduce_payloads(canary, tmp_path)),
        **hostile.cloudpickle_payloads(canary),
        **hostile.opcode_payloads(canary),
    }
    payload = tmp_path / "payload.pkl"
    payload.write_bytes(payloads[name])
    code = f"import pickle; pickle.loads(open({str(payload)!r}, 'rb').read())"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, timeout=60)
    deadline = time.monotonic() + 10
    while not canary.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # Popen returns before its child has run
    assert canary.exists()


def test_a_forged_numpy_state_crashes_plain_pickle_but_not_the_service(loaded_client: FlaskClient) -> None:
    data = hostile.forged_object_array()
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    crashed = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60)

    status, body = upload_bytes(loaded_client, data)

    assert crashed.returncode < 0  # killed by a signal (SIGSEGV) in numpy's __setstate__
    assert status == 400
    assert "does not hold the data its shape promises" in body["message"]


def _resolve(qualified: str) -> object:
    """Imports module.name the way the unpickler would."""
    module, name = qualified.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def test_the_allowlist_names_classes_and_guarded_reconstructors_never_modules_or_functions() -> None:
    for qualified in sorted(ALLOWED_GLOBALS - GUARDED_GLOBALS.keys()):
        target = _resolve(qualified)
        assert inspect.isclass(target), qualified
        assert not isinstance(target, types.ModuleType), qualified
    assert all(callable(guard) for guard in GUARDED_GLOBALS.values())


@pytest.mark.parametrize(
    "target",
    [
        "numpy.load",
        "pandas.read_pickle",
        "pkgutil.resolve_name",
        "importlib.import_module",
        "builtins.getattr",
        "builtins.__import__",
        "builtins.eval",
        "builtins.exec",
        "builtins.compile",
        "builtins.open",
        "os.system",
        "posix.system",
        "subprocess.Popen",
        "pip.main",
        "types.CodeType",
        "types.FunctionType",
        "cloudpickle.cloudpickle._make_function",
        "joblib.numpy_pickle.NumpyArrayWrapper",
    ],
)
def test_dangerous_globals_are_not_allowed(target: str) -> None:
    module, name = target.rsplit(".", 1)
    data = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n."

    assert target not in ALLOWED_GLOBALS
    assert refused_globals(data) == [target]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_real_artifacts_pass_the_allowlist_in_every_protocol(
    client: FlaskClient, model_files: Callable[[int], Path], protocol: int, dumps: Callable[..., bytes]
) -> None:
    model = pickle.loads(model_files(0).read_bytes())

    status, body = upload_bytes(client, dumps(model, protocol=protocol))

    assert status == 201, body
    assert body["kind"] == "flight-delay/lightgbm"
