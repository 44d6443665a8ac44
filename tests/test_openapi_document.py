"""/openapi.json says what the service enforces: what it calls valid is served, what it refuses a 422.

The fuzz test (test_openapi_fuzz.py) checks this by chance from outside; here the edges are checked
one by one: the active model's required fields, dates, hhmm times, bounds, text, the history query,
and the upload's security as configured.
"""

from __future__ import annotations

import pickle
from typing import Any

import jsonschema_rs
import pytest
from flask.testing import FlaskClient

from flight_delay.api import create_app
from tests.factories import ADMIN_HEADERS, minimal_flight, tiny_regressor

ABSENT = object()  # a field left out of the flight

# Changes to the project model's minimal flight, each on an edge of what the document says.
FLIGHT_EDGES: list[dict[str, Any]] = [
    {},
    {"month": 2, "day": 29, "year": 2012},
    {"month": 2, "day": 29, "year": 2013},
    {"month": 2, "day": 29, "year": 2000},
    {"month": 2, "day": 29, "year": 1900},
    {"month": 2, "day": 30, "year": 2012},
    {"month": 4, "day": 30},
    {"month": 4, "day": 31},
    {"month": 12, "day": 31},
    {"month": 13},
    {"sched_dep_time": 0},
    {"sched_dep_time": 59},
    {"sched_dep_time": 60},
    {"sched_dep_time": 1259},
    {"sched_dep_time": 1260},
    {"sched_dep_time": 2359},
    {"sched_dep_time": 2400},
    {"sched_dep_time": 2401},
    {"sched_dep_time": -1},
    {"distance": 0},
    {"distance": 0.5},
    {"distance": 20000},
    {"distance": 20000.5},
    {"dep_delay": None},
    {"distance": None},
    {"dest": ABSENT},
    {"carrier": "ua"},
    {"name": ""},
    {"name": "United"},
    {"name": "Uni\x01ted"},
    {"time_hour": "2013-01-01T10:00:00Z"},
    {"time_hour": "yesterday"},
    {"dep_time": None},
    {"colour": "blue"},
]


def openapi(client: FlaskClient) -> dict[str, Any]:
    """Fetches the document as served now."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def json_schema(schema: Any) -> Any:
    """Turns an OpenAPI 3.0 schema into JSON Schema draft 4: `nullable` becomes a null type."""
    if isinstance(schema, list):
        return [json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: json_schema(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable") and "type" in schema:
        converted["type"] = [schema["type"], "null"]
    return converted


def flight_validator(client: FlaskClient) -> jsonschema_rs.Draft4Validator:
    """Validates flights by the served document's Flight schema, formats included."""
    flight = json_schema(openapi(client)["components"]["schemas"]["Flight"])
    return jsonschema_rs.Draft4Validator(flight, validate_formats=True)


def edge_flight(changes: dict[str, Any]) -> dict[str, Any]:
    """The minimal flight with the changes applied (ABSENT removes a field)."""
    flight = minimal_flight(**changes)
    return {name: value for name, value in flight.items() if value is not ABSENT}


def test_the_document_and_the_service_agree_on_every_edge(loaded_client: FlaskClient) -> None:
    validator = flight_validator(loaded_client)

    for changes in FLIGHT_EDGES:
        flight = edge_flight(changes)
        response = loaded_client.post("/model/predict/", json=flight)
        assert response.status_code in (200, 422), (changes, response.get_json())
        assert (response.status_code == 200) == validator.is_valid(flight), (changes, response.get_json())


def test_the_required_fields_are_the_active_models(loaded_client: FlaskClient) -> None:
    flight = openapi(loaded_client)["components"]["schemas"]["Flight"]
    model = loaded_client.get("/model/").get_json()

    assert flight["required"] == model["input_fields"]
    assert flight["properties"]["dep_delay"]["nullable"] is True  # the model reads it, null allowed
    assert flight["properties"]["dep_time"]["nullable"] is True  # not read: as the dataset has it
    assert model["version"][:12] in flight["description"]


def test_the_required_fields_change_with_the_model(loaded_client: FlaskClient) -> None:
    regressor = pickle.dumps(tiny_regressor(["dep_delay", "distance", "month"]))
    loaded = loaded_client.post(
        "/model/load/", data=regressor, content_type="application/octet-stream", headers=ADMIN_HEADERS
    )
    assert loaded.status_code == 201, loaded.get_json()
    flight = openapi(loaded_client)["components"]["schemas"]["Flight"]

    assert flight["required"] == ["dep_delay", "distance", "month"]
    nullable = set(loaded.get_json()["nullable_fields"])
    assert flight["properties"]["dep_delay"].get("nullable", False) == ("dep_delay" in nullable)
    assert loaded_client.post("/model/predict/", json={"dep_delay": 1.0}).status_code == 422


def test_without_a_model_nothing_is_required_and_a_valid_flight_is_a_503(client: FlaskClient) -> None:
    flight = openapi(client)["components"]["schemas"]["Flight"]
    response = client.post("/model/predict/", json={})

    assert "required" not in flight
    assert "503" in flight["description"]
    assert response.status_code == 503
    assert response.get_json()["code"] == "model_not_loaded"


def test_an_empty_body_is_invalid_by_the_document_once_a_model_is_active(loaded_client: FlaskClient) -> None:
    assert not flight_validator(loaded_client).is_valid({})
    assert loaded_client.post("/model/predict/", json={}).status_code == 422


def test_the_load_needs_the_token_in_the_document_only_when_one_is_configured(app_config: dict) -> None:
    with_token = openapi(create_app(app_config).test_client())["paths"]["/model/load/"]["post"]
    development = {**app_config, "ENV": "development", "ML_API_ADMIN_TOKEN": None}
    without = openapi(create_app(development).test_client())["paths"]["/model/load/"]["post"]
    disabled = {**app_config, "ML_API_ALLOW_UPLOAD": False}
    refused = openapi(create_app(disabled).test_client())["paths"]["/model/load/"]["post"]

    assert with_token["security"] == [{"adminToken": []}]
    assert "401" in with_token["responses"]
    for operation in (without, refused):
        assert "security" not in operation
        assert "401" not in operation["responses"]
        assert "403" in operation["responses"]


def test_the_development_load_is_served_without_a_token(app_config: dict) -> None:
    development = {**app_config, "ENV": "development", "ML_API_ADMIN_TOKEN": None}
    client = create_app(development).test_client()
    response = client.post("/model/load/", data=b"x", content_type="application/octet-stream")

    assert response.status_code == 400  # read, not refused for a missing token
    assert response.get_json()["code"] == "invalid_artifact"


@pytest.mark.parametrize(
    ("cursor", "valid"),
    [
        ("0", True),
        ("9223372036854775807", True),
        ("0009223372036854775", True),
        ("9223372036854775808", False),
        ("9999999999999999999", False),
        ("00000000000000000001", False),
        ("1\n", False),
        ("", False),
    ],
)
def test_the_cursor_pattern_is_the_check(client: FlaskClient, cursor: str, valid: bool) -> None:
    parameters = openapi(client)["paths"]["/model/history/"]["get"]["parameters"]
    (schema,) = [p["schema"] for p in parameters if p["name"] == "cursor"]
    response = client.get("/model/history/", query_string={"cursor": cursor})

    assert jsonschema_rs.Draft4Validator(schema).is_valid(cursor) == valid
    assert response.status_code == (200 if valid else 422), response.get_json()


def test_since_equal_to_until_is_an_empty_window(loaded_client: FlaskClient) -> None:
    assert loaded_client.post("/model/predict/", json=minimal_flight()).status_code == 200
    moment = loaded_client.get("/model/history/").get_json()["items"][0]["created_at"]
    response = loaded_client.get("/model/history/", query_string={"since": moment, "until": moment})

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["total"] == 0
    assert response.get_json()["items"] == []
