"""POST /model/actuals/: actual delays recorded by history_id, all or none, replaced when sent again."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from flight_delay.api.services import services_of
from flight_delay.history.models import Actual
from tests.factories import minimal_flight
from tests.monitoring_helpers import post_actuals, serve


def recorded(app: Flask) -> dict[int, float]:
    """Every recorded actual: history id -> actual delay."""
    with services_of(app).db.transaction() as session:
        return {
            row.history_id: row.arr_delay
            for row in session.execute(select(Actual.history_id, Actual.arr_delay))
        }


@pytest.fixture
def served(loaded_client: FlaskClient) -> list[dict[str, Any]]:
    """Three predictions served in one batch: each has its own history_id."""
    return serve(loaded_client, [minimal_flight(dep_delay=d) for d in (0.0, 30.0, None)])


def test_each_flight_of_a_batch_is_its_own_prediction(served: list[dict[str, Any]]) -> None:
    assert len({p["history_id"] for p in served}) == 3


def test_actuals_are_recorded_beside_their_predictions(
    app: Flask, loaded_client: FlaskClient, served: list[dict[str, Any]]
) -> None:
    actuals = [{"history_id": p["history_id"], "arr_delay": 10.0 * i} for i, p in enumerate(served)]

    response = post_actuals(loaded_client, actuals)

    assert response.status_code == 200
    assert response.get_json() == {"recorded": 3}
    assert recorded(app) == {a["history_id"]: a["arr_delay"] for a in actuals}
    with services_of(app).db.transaction() as session:
        row = session.get(Actual, served[0]["history_id"])
        assert row.predicted == served[0]["arr_delay"]


def test_posting_again_replaces_the_actual(
    app: Flask, loaded_client: FlaskClient, served: list[dict[str, Any]]
) -> None:
    first = served[0]["history_id"]
    assert post_actuals(loaded_client, [{"history_id": first, "arr_delay": 5}]).status_code == 200

    again = post_actuals(
        loaded_client, [{"history_id": first, "arr_delay": -3}, {"history_id": first, "arr_delay": 8}]
    )

    assert again.get_json() == {"recorded": 1}
    assert recorded(app) == {first: 8.0}


def test_an_unknown_history_id_refuses_all(
    app: Flask, loaded_client: FlaskClient, served: list[dict[str, Any]]
) -> None:
    actuals = [
        {"history_id": served[0]["history_id"], "arr_delay": 1},
        {"history_id": 999_999, "arr_delay": 2},
    ]

    response = post_actuals(loaded_client, actuals)

    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "unknown_prediction"
    assert body["errors"] == {"actuals": {"1": {"history_id": ["No prediction has this id."]}}}
    assert recorded(app) == {}


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"arr_delay": "late"}, "arr_delay"),
        ({"arr_delay": None}, "arr_delay"),
        ({"arr_delay": 99999}, "arr_delay"),
        ({"history_id": 0}, "history_id"),
        ({"history_id": "1"}, "history_id"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_a_bad_value_names_its_index_and_records_nothing(
    app: Flask, loaded_client: FlaskClient, served: list[dict[str, Any]], bad: dict[str, Any], field: str
) -> None:
    good = {"history_id": served[0]["history_id"], "arr_delay": 1.0}
    response = post_actuals(loaded_client, [good, {**good, **bad}])

    assert response.status_code == 422
    assert response.get_json()["code"] == "invalid_input"
    assert field in response.get_json()["errors"]["actuals"]["1"]
    assert recorded(app) == {}


@pytest.mark.parametrize(
    "body", [{"actuals": []}, {}, {"actuals": [{"history_id": 1, "arr_delay": 0}] * 10_001}]
)
def test_between_1_and_10000_actuals(loaded_client: FlaskClient, body: dict[str, Any]) -> None:
    response = loaded_client.post(
        "/model/actuals/", json=body, headers={"Authorization": "Bearer test-admin-token"}
    )

    assert response.status_code == 422


def test_the_admin_token_is_needed_when_set(loaded_client: FlaskClient, served: list[dict[str, Any]]) -> None:
    actual = [{"history_id": served[0]["history_id"], "arr_delay": 1}]

    assert post_actuals(loaded_client, actual, headers={}).status_code == 401
    wrong = post_actuals(loaded_client, actual, headers={"Authorization": "Bearer wrong-token-wrong-token"})
    assert wrong.status_code == 401
    assert wrong.get_json()["code"] == "unauthorized"


@pytest.mark.parametrize("environment", ["production", "testing"])
def test_outside_development_without_a_token_actuals_are_refused(
    app_config: dict[str, Any], model_files: Any, environment: str
) -> None:
    from flight_delay.api import create_app

    config = {**app_config, "ENV": environment, "ML_API_ADMIN_TOKEN": None, "ML_API_ALLOW_UPLOAD": False}
    client = create_app(config).test_client()

    response = post_actuals(client, [{"history_id": 1, "arr_delay": 3}], headers={})

    assert response.status_code == 403
    assert response.get_json()["code"] == "admin_token_required"
    assert "ML_API_ADMIN_TOKEN" in response.get_json()["message"]


def test_no_token_configured_in_development_lets_actuals_in(
    app_config: dict[str, Any], model_files: Any
) -> None:
    from flight_delay.api import create_app
    from tests.conftest import upload

    client = create_app({**app_config, "ENV": "development", "ML_API_ADMIN_TOKEN": None}).test_client()
    assert upload(client, model_files(0)).status_code == 201
    [prediction] = serve(client, [minimal_flight()])

    response = post_actuals(client, [{"history_id": prediction["history_id"], "arr_delay": 3}], headers={})

    assert response.get_json() == {"recorded": 1}
