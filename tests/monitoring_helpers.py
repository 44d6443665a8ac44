"""Flights to serve and actuals to post for the monitoring tests."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from flask.testing import FlaskClient

from flight_delay.features import INPUT_FIELDS
from tests.factories import ADMIN_HEADERS

BATCH = 1_000


def flights_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as the API's flights: the model's input fields, nulls as null."""
    return json.loads(frame[list(INPUT_FIELDS)].to_json(orient="records"))


def serve(client: FlaskClient, flights: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Predicts the flights through the API, a batch at a time; returns the predictions in order."""
    served = []
    for start in range(0, len(flights), BATCH):
        response = client.post("/model/predict/", json={"flights": flights[start : start + BATCH]})
        assert response.status_code == 200, response.get_json()
        served += response.get_json()["predictions"]
    return served


def post_actuals(client: FlaskClient, actuals: list[dict[str, Any]], headers: Any = ADMIN_HEADERS) -> Any:
    """Posts actual delays and returns the response."""
    return client.post("/model/actuals/", json={"actuals": actuals}, headers=headers)


def report(client: FlaskClient, **query: Any) -> dict[str, Any]:
    """The monitoring report, checked to be a 200."""
    response = client.get("/model/monitoring/", query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()
