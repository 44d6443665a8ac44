"""The model sandbox: a confined child reads each upload; a crash, timeout or limit is a 422 naming it."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd
import pytest
from flask.testing import FlaskClient
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from flight_delay.artifact import to_bundle
from flight_delay.errors import ModelCheckFailed
from flight_delay.serving.loader import load_native
from flight_delay.serving.sandbox import ModelSandbox, Sandboxed, SandboxLimits, local_process
from tests import hostile
from tests.factories import ADMIN_HEADERS, minimal_flight, synthetic_flights, tiny_model, tiny_regressor

COLUMNS = ["dep_delay", "distance"]
ROOT = Path(__file__).resolve().parents[1]


def many_trees(text: str, count: int) -> bytes:
    """A valid LightGBM text model whose first tree is repeated `count` times (costly to read, for limits)."""
    head, rest = text.split("Tree=0\n", 1)
    body = rest[: rest.index("Tree=1\n")]
    tail = rest[rest.index("end of trees") :]
    blocks = [f"Tree={k}\n{body}" for k in range(count)]
    sizes = " ".join(str(len(block)) for block in blocks)
    lines = [f"tree_sizes={sizes}" if line.startswith("tree_sizes=") else line for line in head.split("\n")]
    return ("\n".join(lines) + "".join(blocks) + tail).encode()


@pytest.fixture(scope="module")
def booster_text() -> str:
    """A tiny booster's text model over two numeric columns."""
    return tiny_regressor(COLUMNS).booster_.model_to_string()


def check(data: bytes, **limits: Any) -> Sandboxed:
    """Checks an upload in this process's sandbox with the given limits (else the defaults)."""
    return ModelSandbox(SandboxLimits(**limits)).check(data)


def refused(data: bytes, **limits: Any) -> ModelCheckFailed:
    """The failure a check of data ends with."""
    with pytest.raises(ModelCheckFailed) as failed:
        check(data, **limits)
    return failed.value


# --- what comes back: each kind's native form -------------------------------------------------


def test_the_project_artifact_comes_back_as_one_bundle_from_either_format() -> None:
    model = tiny_model(0)
    pickled, bundled = check(cloudpickle.dumps(model)), check(to_bundle(model))

    assert pickled.kind == bundled.kind == "flight-delay/lightgbm"
    assert pickled.native == bundled.native
    assert json.loads(pickled.native)["format"] == "flight-delay/lightgbm-text"
    served = load_native(pickled.native, pickled.kind)
    assert served.predict([minimal_flight()]).tolist() == pytest.approx(
        model.predict([minimal_flight()]).tolist()
    )


def test_a_bare_booster_comes_back_as_lightgbm_text_keeping_its_kind(booster_text: str) -> None:
    regressor = tiny_regressor(COLUMNS)

    for data, kind in (
        (booster_text.encode(), "lightgbm.Booster (text)"),
        (pickle.dumps(regressor), "lightgbm.LGBMRegressor"),
        (pickle.dumps(regressor.booster_), "lightgbm.Booster"),
    ):
        sandboxed = check(data)
        assert sandboxed.kind == kind
        assert sandboxed.native.startswith(b"tree\n")
        assert load_native(sandboxed.native, sandboxed.kind).kind == kind


def test_a_pipeline_comes_back_as_the_pickle_the_sandbox_wrote() -> None:
    frame = synthetic_flights(200)
    pipeline = Pipeline([("impute", SimpleImputer()), ("model", tiny_regressor(COLUMNS))])
    pipeline.fit(frame[COLUMNS], frame["arr_delay"])

    sandboxed = check(pickle.dumps(pipeline, protocol=2))

    assert sandboxed.kind == "sklearn.Pipeline"
    assert sandboxed.native != pickle.dumps(pipeline, protocol=2)  # written again, protocol 4
    served = load_native(sandboxed.native, sandboxed.kind)  # through the same allowlist
    flight = minimal_flight()
    expected = pipeline.predict(pd.DataFrame([{name: flight[name] for name in COLUMNS}]))
    assert served.predict([flight]).tolist() == pytest.approx(expected.tolist())


# --- a crash, a timeout, a limit: a 422 naming which, and the sandbox goes on ------------------


def test_a_crash_reading_the_upload_is_a_422_naming_the_signal(booster_text: str) -> None:
    failure = refused(hostile.aborting_text_model(booster_text))

    assert failure.status == 422
    assert failure.code == "model_check_failed"
    assert failure.errors == {"sandbox": {"outcome": "crash", "signal": "SIGABRT"}}
    assert "crashed (SIGABRT)" in failure.message


def test_a_check_past_its_wall_clock_timeout_is_killed(booster_text: str) -> None:
    failure = refused(many_trees(booster_text, 20_000), timeout_s=0.2)

    assert failure.errors == {"sandbox": {"outcome": "timeout", "signal": "SIGKILL"}}
    assert "MODEL_SANDBOX_TIMEOUT_S=0.2 s" in failure.message


def test_a_check_past_its_cpu_time_is_stopped(booster_text: str) -> None:
    failure = refused(many_trees(booster_text, 60_000), cpu_s=1, timeout_s=60)

    assert failure.errors == {"sandbox": {"outcome": "cpu_limit", "signal": "SIGXCPU"}}
    assert "MODEL_SANDBOX_CPU_S=1" in failure.message


def test_a_check_past_its_memory_is_stopped(booster_text: str) -> None:
    failure = refused(many_trees(booster_text, 60_000), memory_mb=8)  # 45 MB to read

    assert failure.errors["sandbox"]["outcome"] == "memory_limit"
    assert "MODEL_SANDBOX_MEMORY_MB=8" in failure.message


def test_the_same_sandbox_process_checks_again_after_a_crash(booster_text: str) -> None:
    before = local_process().process.pid
    refused(hostile.aborting_text_model(booster_text))

    assert check(booster_text.encode()).kind == "lightgbm.Booster (text)"
    assert local_process().process.pid == before


def test_a_sandbox_process_that_died_is_started_again(booster_text: str) -> None:
    sandbox = local_process()
    sandbox.process.kill()
    sandbox.process.wait()
    sandbox.started_at -= 60  # as if it had run a while (a process dying at once is restarted later)

    assert check(booster_text.encode()).kind == "lightgbm.Booster (text)"
    assert local_process().process.poll() is None


# --- the confinement itself ----------------------------------------------------------------------

# Confines a forked child as the sandbox does, then reports on fd 3 what it can still do.
PROBE = """
import json, os, resource, socket, sys
from flight_delay.serving.sandbox_server import ANSWER_FD, Limits, confine

upload, log = os.memfd_create("upload"), os.memfd_create("log")
answer_r, answer_w = os.pipe()
spare = open(sys.executable, "rb")  # a descriptor the child must not keep
pid = os.fork()
if pid == 0:
    confine(Limits(memory_mb=64, cpu_s=5, timeout_s=10), upload, answer_w, log)
    def attempt(action):
        try:
            action()
            return "allowed"
        except OSError as exc:
            return exc.errno
    open_fds = []
    for fd in range(256):
        try:
            os.fstat(fd)
            open_fds.append(fd)
        except OSError:
            pass
    report = {
        "fds": open_fds,
        "open": attempt(lambda: open("/etc/hostname", "rb")),
        "socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
        "unix_socket": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
        "limits": {name: resource.getrlimit(getattr(resource, name)) for name in
                   ("RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE")},
        "uid": os.getuid(),
        "net": os.readlink("/proc/self/ns/net"),
    }
    os.write(ANSWER_FD, json.dumps(report).encode())
    os._exit(0)
os.close(answer_w)
report = json.loads(os.read(answer_r, 65536))
os.waitpid(pid, 0)
report["parent_net"] = os.readlink("/proc/self/ns/net")
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def probe() -> dict[str, Any]:
    """What a confined child can still do."""
    finished = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(finished.stdout)


def test_the_child_keeps_only_the_upload_its_log_and_the_answer_pipe(probe: dict[str, Any]) -> None:
    assert probe["fds"] == [0, 1, 2, 3]
    assert probe["limits"]["RLIMIT_NOFILE"] == [4, 4]


def test_the_child_can_open_no_file_nor_socket(probe: dict[str, Any]) -> None:
    too_many_open_files = 24  # EMFILE
    assert probe["open"] == too_many_open_files
    assert probe["socket"] == too_many_open_files
    assert probe["unix_socket"] == too_many_open_files


def test_the_child_has_its_cpu_memory_and_core_limits(probe: dict[str, Any]) -> None:
    assert probe["limits"]["RLIMIT_CPU"] == [5, 6]
    assert probe["limits"]["RLIMIT_CORE"] == [0, 0]
    soft, hard = probe["limits"]["RLIMIT_AS"]
    assert soft == hard
    assert 64 << 20 < soft < 64 << 30  # what it had at the fork, plus 64 MiB


@pytest.mark.skipif(os.geteuid() != 0, reason="started as root only: another network, the nobody user")
def test_a_child_started_as_root_leaves_its_network_and_root(probe: dict[str, Any]) -> None:
    assert probe["uid"] == 65534  # nobody: it cannot raise its limits again
    assert probe["net"] != probe["parent_net"]  # a network namespace of its own, nothing up in it


def test_the_sandbox_process_forks_from_one_thread() -> None:
    process = local_process().process
    deadline = time.monotonic() + 60
    while not Path(local_process().socket_path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # warming up: it may run the libraries' threads meanwhile

    assert len(os.listdir(f"/proc/{process.pid}/task")) == 1


# --- over HTTP: the refusal's shape, the previous model kept, the card always rendered -----------


def test_a_crashing_upload_is_a_422_and_the_previous_model_still_serves(
    loaded_client: FlaskClient, booster_text: str
) -> None:
    before = loaded_client.get("/model/").get_json()["version"]

    response = loaded_client.post(
        "/model/load/",
        data=hostile.aborting_text_model(booster_text),
        content_type="application/octet-stream",
        headers=ADMIN_HEADERS,
    )

    body = response.get_json()
    assert response.status_code == 422
    assert body["code"] == "model_check_failed"
    assert body["errors"] == {"sandbox": {"outcome": "crash", "signal": "SIGABRT"}}
    assert loaded_client.post("/model/predict/", json=minimal_flight()).get_json()["model_version"] == before


def test_a_bundle_whose_metrics_break_the_schema_is_a_422_naming_the_field(
    loaded_client: FlaskClient,
) -> None:
    data = hostile.bundle_with_metrics(to_bundle(tiny_model(0)), {"bases": 1})

    response = loaded_client.post(
        "/model/load/", data=data, content_type="application/octet-stream", headers=ADMIN_HEADERS
    )

    assert response.status_code == 422
    assert response.get_json()["code"] == "unusable_model"
    assert response.get_json()["errors"] == {"metrics": {"bases": ["Not a valid mapping type."]}}
    assert loaded_client.get("/model/card").status_code == 200


@pytest.mark.parametrize("kind", ["project", "booster", "pipeline"])
def test_a_model_that_loads_renders_its_info_and_card(client: FlaskClient, kind: str) -> None:
    frame = synthetic_flights(200)
    pipeline = Pipeline([("impute", SimpleImputer()), ("model", tiny_regressor(COLUMNS))])
    uploads = {
        "project": lambda: to_bundle(tiny_model(1)),
        "booster": lambda: tiny_regressor(COLUMNS).booster_.model_to_string().encode(),
        "pipeline": lambda: pickle.dumps(pipeline.fit(frame[COLUMNS], frame["arr_delay"])),
    }
    loaded = client.post(
        "/model/load/", data=uploads[kind](), content_type="application/octet-stream", headers=ADMIN_HEADERS
    )

    assert loaded.status_code == 201, loaded.get_json()
    assert client.get("/model/").status_code == 200
    card = client.get("/model/card")
    assert card.status_code == 200
    assert card.get_data(as_text=True).startswith("# Model card")


def test_the_operator_load_command_checks_in_the_sandbox_too(
    tmp_path: Path, database_url: str, booster_text: str
) -> None:
    from click.testing import CliRunner

    from flight_delay.cli import main

    path = tmp_path / "crashing.txt"
    path.write_bytes(hostile.aborting_text_model(booster_text))
    env = {"DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url, "FLIGHT_DELAY_ENV": "production"}

    result = CliRunner().invoke(main, ["load", str(path)], env=env)

    assert result.exit_code == 1
    assert "model_check_failed: The model check crashed (SIGABRT)" in result.output


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "without pidfd_open"])
def test_the_wait_for_a_child_ends_with_it_or_kills_it_at_the_timeout(
    monkeypatch: pytest.MonkeyPatch, pidfd: bool
) -> None:
    from flight_delay.serving import sandbox_server

    if not pidfd:  # as under a seccomp profile that refuses pidfd_open

        def refused(pid: int) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(sandbox_server.os, "pidfd_open", refused)
    quick = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])

    ended, killed = sandbox_server._wait(quick.pid, 30), sandbox_server._wait(slow.pid, 0.5)

    assert (ended["exit_code"], ended["timed_out"]) == (3, False)
    assert (killed["exit_code"], killed["timed_out"]) == (-9, True)
