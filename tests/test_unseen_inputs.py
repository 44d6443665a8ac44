"""Inputs the model never saw in training: flagged on the prediction and counted, or refused when strict."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from flight_delay.api import create_app
from tests.conftest import upload
from tests.factories import minimal_flight


def predictions(client: FlaskClient, *flights: dict[str, Any]) -> list[dict[str, Any]]:
    """Posts a batch and returns its predictions."""
    response = client.post("/model/predict/", json={"flights": list(flights)})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["predictions"]


def test_a_known_flight_has_no_warnings(loaded_client: FlaskClient) -> None:
    [prediction] = predictions(loaded_client, minimal_flight())

    assert "warnings" not in prediction


def test_unseen_categories_and_numbers_out_of_range_are_named(loaded_client: FlaskClient) -> None:
    odd = minimal_flight(origin="XXX", carrier="ZZ", dest="QQQ", dep_delay=9000.0)

    known, flagged = predictions(loaded_client, minimal_flight(), odd)

    assert "warnings" not in known
    warnings = {w["field"]: w for w in flagged["warnings"]}
    assert set(warnings) == {"carrier", "origin", "dest", "dep_delay"}
    assert warnings["origin"] == {"field": "origin", "value": "XXX", "reason": "not seen in training"}
    assert warnings["dep_delay"]["value"] == 9000.0
    assert warnings["dep_delay"]["reason"].startswith("outside the training range ")


def test_warnings_are_counted_in_metrics(loaded_client: FlaskClient) -> None:
    def count() -> float:
        """The unseen-origin counter as /metrics shows it."""
        for line in loaded_client.get("/metrics").get_data(as_text=True).splitlines():
            if line.startswith('flight_delay_unseen_inputs_total{field="origin"}'):
                return float(line.split()[-1])
        return 0.0

    before = count()
    predictions(loaded_client, minimal_flight(origin="XXX"), minimal_flight(origin="YYY"))

    assert count() == before + 2


def test_the_strict_setting_refuses_them_by_field(
    app_config: dict[str, Any], model_files: Callable[[int], Path]
) -> None:
    client = create_app({**app_config, "ML_API_STRICT_INPUTS": True}).test_client()
    assert upload(client, model_files(0)).status_code == 201

    response = client.post(
        "/model/predict/", json={"flights": [minimal_flight(), minimal_flight(dest="QQQ")]}
    )

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"flights": {"1": {"dest": ["'QQQ' is not seen in training."]}}}
    assert client.get("/model/history/").get_json()["total"] == 0
    assert client.post("/model/predict/", json=minimal_flight()).status_code == 200
