"""POST /model/predict/: single flights, batches, every refusal, and the history after each."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url

from flight_delay.api import create_app
from flight_delay.api.services import services_of
from flight_delay.serving.adapters import ProjectModel
from tests.conftest import upload
from tests.databases import refuse_inserts, write_lock
from tests.factories import minimal_flight, reference_flight


def history_rows(client: FlaskClient) -> list[dict]:
    """Returns every history row (newest first)."""
    body = client.get("/model/history/?page_size=500").get_json()
    return body["items"]


def test_single_flight_is_predicted_and_recorded(loaded_client: FlaskClient) -> None:
    flight = reference_flight()
    response = loaded_client.post("/model/predict/", json=flight, headers={"X-Request-ID": "req-1"})

    assert response.status_code == 200
    body = response.get_json()
    assert len(body["model_version"]) == 64
    assert body["request_id"] == "req-1"
    assert response.headers["X-Request-ID"] == "req-1"
    [prediction] = body["predictions"]
    assert math.isfinite(prediction["arr_delay"])
    [row] = history_rows(loaded_client)
    assert row["id"] == prediction["history_id"]
    assert row["input"] == flight
    assert row["arr_delay"] == prediction["arr_delay"]
    assert row["model_version"] == body["model_version"]
    assert row["request_id"] == "req-1"
    assert row["latency_ms"] > 0


def test_only_the_fields_the_model_reads_are_needed(loaded_client: FlaskClient) -> None:
    response = loaded_client.post("/model/predict", json=minimal_flight())

    assert response.status_code == 200
    assert history_rows(loaded_client)[0]["input"] == minimal_flight()


def test_null_departure_delay_means_unknown(loaded_client: FlaskClient) -> None:
    response = loaded_client.post("/model/predict/", json=minimal_flight(dep_delay=None))

    assert response.status_code == 200
    assert math.isfinite(response.get_json()["predictions"][0]["arr_delay"])


def test_batch_keeps_order_and_records_each_flight(loaded_client: FlaskClient) -> None:
    flights = [minimal_flight(dep_delay=float(d)) for d in (0, 60, 180)]
    response = loaded_client.post("/model/predict/", json={"flights": flights})

    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert len(predictions) == 3
    assert predictions[0]["arr_delay"] < predictions[2]["arr_delay"]
    rows = {row["id"]: row for row in history_rows(loaded_client)}
    for flight, prediction in zip(flights, predictions, strict=True):
        assert rows[prediction["history_id"]]["input"] == flight
        assert rows[prediction["history_id"]]["arr_delay"] == prediction["arr_delay"]


def test_batch_of_ten_thousand_is_accepted(loaded_client: FlaskClient) -> None:
    flights = [minimal_flight(dep_delay=float(i % 300)) for i in range(10_000)]
    response = loaded_client.post("/model/predict/", json={"flights": flights})

    assert response.status_code == 200
    assert len(response.get_json()["predictions"]) == 10_000
    assert loaded_client.get("/model/history/").get_json()["total"] == 10_000


def test_same_model_same_flight_same_prediction(loaded_client: FlaskClient) -> None:
    first = loaded_client.post("/model/predict/", json=minimal_flight()).get_json()
    second = loaded_client.post("/model/predict/", json={"flights": [minimal_flight()]}).get_json()

    assert first["predictions"][0]["arr_delay"] == second["predictions"][0]["arr_delay"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (minimal_flight(month=13), "month", "Must be greater than or equal to 1"),
        (minimal_flight(month="1"), "month", "Not a valid integer."),
        (minimal_flight(month=1.5), "month", "Not a valid integer."),
        (minimal_flight(dep_delay="12"), "dep_delay", "Not a valid number."),
        (minimal_flight(dep_delay=True), "dep_delay", "Not a valid number."),
        (minimal_flight(carrier=None), "carrier", "Field may not be null."),
        (minimal_flight(carrier="united"), "carrier", "two-character airline code"),
        (minimal_flight(origin=5), "origin", "Not a valid string."),
        (minimal_flight(day=30, month=2), "day", "Must be at most 28"),
        (minimal_flight(sched_dep_time=1261), "sched_dep_time", "hhmm"),
        (minimal_flight(distance=0), "distance", "Must be greater than 0"),
        (minimal_flight(departure="now"), "departure", "Unknown field."),
        (minimal_flight(time_hour="yesterday"), "time_hour", "ISO 8601"),
        (minimal_flight(dep_delay=10**9), "dep_delay", "less than or equal to 10080"),
        # PostgreSQL's JSONB cannot store NUL or lone surrogates: they used to fail the history write (503).
        (minimal_flight(name="Air\x00line"), "name", "without control characters"),
        (minimal_flight(name="Air\ud800line"), "name", "lone surrogates"),
    ],
)
def test_invalid_flight_names_the_field(
    loaded_client: FlaskClient, body: dict, field: str, message: str
) -> None:
    response = loaded_client.post("/model/predict/", json=body)

    assert response.status_code == 422
    error = response.get_json()
    assert error["code"] == "invalid_input"
    assert message in " ".join(error["errors"][field])
    assert history_rows(loaded_client) == []


def test_missing_fields_the_model_reads_are_named(loaded_client: FlaskClient) -> None:
    flight = minimal_flight()
    del flight["distance"], flight["carrier"]
    response = loaded_client.post("/model/predict/", json=flight)

    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"distance", "carrier"}
    assert history_rows(loaded_client) == []


def test_batch_errors_name_the_flight_index(loaded_client: FlaskClient) -> None:
    flights = [minimal_flight(), minimal_flight(month=0), minimal_flight()]
    response = loaded_client.post("/model/predict/", json={"flights": flights})

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["flights"]) == {"1"}
    assert history_rows(loaded_client) == []


def test_batch_missing_field_names_the_flight_index(loaded_client: FlaskClient) -> None:
    flight = minimal_flight()
    del flight["dest"]
    response = loaded_client.post("/model/predict/", json={"flights": [minimal_flight(), flight]})

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"flights": {"1": {"dest": ["Missing data for required field."]}}}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"flights": []}, 422),
        ({"flights": [minimal_flight()] * 10_001}, 422),
        ({"flights": "all"}, 422),
        ({"flights": [minimal_flight()], "extra": 1}, 422),
        ([minimal_flight()], 422),
        ("a flight", 422),
    ],
)
def test_bad_request_shapes_are_refused(loaded_client: FlaskClient, body: object, status: int) -> None:
    response = loaded_client.post("/model/predict/", json=body)

    assert response.status_code == status
    assert response.get_json()["code"] == "invalid_input"
    assert history_rows(loaded_client) == []


def test_oversized_batch_says_the_limit(loaded_client: FlaskClient) -> None:
    response = loaded_client.post("/model/predict/", json={"flights": [minimal_flight()] * 10_001})

    assert "10000" in str(response.get_json()["errors"]["flights"])


def test_malformed_json_is_a_400(loaded_client: FlaskClient) -> None:
    response = loaded_client.post("/model/predict/", data='{"month": 1,', content_type="application/json")

    assert response.status_code == 400
    body = response.get_json()
    assert body["status"] == 400
    assert body["code"] == "invalid_json"
    assert "Invalid JSON body" in body["message"]
    assert history_rows(loaded_client) == []


def test_unicode_text_is_accepted_and_recorded_as_sent(loaded_client: FlaskClient) -> None:
    flight = minimal_flight(name="Société Aérienne ✈ 航空")
    response = loaded_client.post("/model/predict/", json=flight)

    assert response.status_code == 200
    assert history_rows(loaded_client)[0]["input"] == flight


def test_no_model_is_a_503_that_says_how_to_load_one(client: FlaskClient) -> None:
    response = client.post("/model/predict/", json=minimal_flight())

    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "model_not_loaded"
    assert "/model/load/" in body["message"]
    assert history_rows(client) == []


def test_a_model_that_raises_is_a_422_not_a_500(
    loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(self: ProjectModel, flights: list) -> None:
        raise ValueError("cannot handle this flight")

    monkeypatch.setattr(ProjectModel, "predict_recorded", explode)
    response = loaded_client.post("/model/predict/", json=minimal_flight())

    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == "unscorable_flight"
    assert "cannot handle this flight" in body["message"]
    assert history_rows(loaded_client) == []


def test_a_non_finite_prediction_is_a_422_naming_the_flight(
    loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ProjectModel, "predict_recorded", lambda self, flights: ([1.0, float("nan")], None))
    response = loaded_client.post("/model/predict/", json={"flights": [minimal_flight()] * 2})

    assert response.status_code == 422
    assert response.get_json()["errors"] == {"flights": {"1": ["Prediction is not a finite number."]}}
    assert history_rows(loaded_client) == []


def test_history_write_failure_serves_nothing(loaded_client: FlaskClient) -> None:
    with services_of(loaded_client.application).db.transaction() as session:
        refuse_inserts(session, "predictions", "disk is full")
    response = loaded_client.post("/model/predict/", json=minimal_flight())

    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "history_unavailable"
    assert "predictions" not in body
    assert history_rows(loaded_client) == []


@pytest.mark.sqlite_only
def test_a_database_that_cannot_say_which_model_is_active_is_a_503_with_its_reason(
    app_config: dict[str, Any], model_files: Callable[[int], Path]
) -> None:
    assert upload(create_app(app_config).test_client(), model_files(0)).status_code == 201
    client = create_app(app_config).test_client()  # a fresh worker: it must ask which model is active
    path = Path(make_url(app_config["DATABASE_URL"]).database)
    path.rename(path.with_name("moved.db"))
    path.mkdir()  # where the database was, a folder: SQLite cannot open it

    response = client.post("/model/predict/", json=minimal_flight())

    assert response.status_code == 503
    body = response.get_json()
    assert body["code"] == "database_unavailable"
    assert body["message"] == "The database is unavailable: unable to open database file."
    assert "predictions" not in body


def test_a_locked_history_is_a_503_not_a_hung_request(
    app_config: dict[str, Any], database_url: str, model_files: Callable[[int], Path]
) -> None:
    short_waits = {"SQLITE_BUSY_TIMEOUT_MS": 200, "POSTGRES_LOCK_TIMEOUT_MS": 200}
    client = create_app({**app_config, **short_waits}).test_client()
    assert upload(client, model_files(0)).status_code == 201

    with write_lock(database_url, "predictions"):
        response = client.post("/model/predict/", json=minimal_flight())

    assert response.status_code == 503
    assert response.get_json()["code"] == "history_unavailable"
    assert history_rows(client) == []
    assert client.post("/model/predict/", json=minimal_flight()).status_code == 200, "served once unlocked"
