"""Every path with or without its trailing slash, one error shape everywhere, the OpenAPI document."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from flight_delay.serving.predictions import PredictionService
from tests.factories import ADMIN_HEADERS, minimal_flight

PATHS = [
    ("get", "/health/", None),
    ("get", "/model/", None),
    ("get", "/model/history/", None),
    ("post", "/model/predict/", minimal_flight()),
    ("get", "/model/monitoring/", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PATHS)
@pytest.mark.parametrize("slash", [True, False])
def test_paths_answer_with_or_without_slash_and_never_redirect(
    loaded_client: FlaskClient, method: str, path: str, body: dict | None, slash: bool
) -> None:
    url = path if slash else path.rstrip("/")
    response = getattr(loaded_client, method)(url, json=body)

    assert response.status_code == 200, (url, response.get_json())
    assert "Location" not in response.headers


def test_load_without_slash_is_not_redirected(client: FlaskClient) -> None:
    response = client.post(
        "/model/load", data=b"x", content_type="application/octet-stream", headers=ADMIN_HEADERS
    )

    assert response.status_code == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/nowhere/", 404, "not_found"),
        ("get", "/model/predict/", 405, "method_not_allowed"),
        ("delete", "/model/history/", 405, "method_not_allowed"),
    ],
)
def test_http_errors_share_the_json_shape(
    client: FlaskClient, method: str, path: str, status: int, code: str
) -> None:
    response = getattr(client, method)(path)

    assert response.status_code == status
    body = response.get_json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("get", "/model/predict/", "OPTIONS, POST"),
        ("put", "/model/predict", "OPTIONS, POST"),
        ("delete", "/model/history/", "GET, HEAD, OPTIONS"),
        ("post", "/health/ready", "GET, HEAD, OPTIONS"),
        ("get", "/model/load/", "OPTIONS, POST"),
        ("head", "/model/predict/", "OPTIONS, POST"),
    ],
)
def test_405_lists_the_path_methods_in_allow(client: FlaskClient, method: str, path: str, allow: str) -> None:
    response = getattr(client, method)(path)

    assert response.status_code == 405
    assert response.headers["Allow"] == allow
    assert response.content_type == "application/json"
    if method != "head":
        assert response.get_json()["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "allow"), [("/model/predict/", "OPTIONS, POST"), ("/model/history", "GET, HEAD, OPTIONS")]
)
def test_options_answers_204_with_allow_and_no_body(client: FlaskClient, path: str, allow: str) -> None:
    response = client.options(path)

    assert response.status_code == 204
    assert response.headers["Allow"] == allow
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-ID"]


def test_options_on_an_unknown_path_is_a_json_404(client: FlaskClient) -> None:
    response = client.options("/nowhere/")

    assert response.status_code == 404
    assert response.get_json()["code"] == "not_found"


def test_unexpected_errors_are_500_without_a_trace(
    loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(PredictionService, "score", broken)
    response = loaded_client.post("/model/predict/", json=minimal_flight())

    assert response.status_code == 500
    assert response.get_json()["message"] == "Internal server error."
    assert "secret" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_request_id_is_made_when_absent_or_unsafe(client: FlaskClient) -> None:
    made = client.get("/health/").headers["X-Request-ID"]
    unsafe = client.get("/health/", headers={"X-Request-ID": "bad id <script>"})
    too_long = client.get("/health/", headers={"X-Request-ID": "x" * 129})

    assert len(made) == 32
    assert len(unsafe.headers["X-Request-ID"]) == 32
    assert len(too_long.headers["X-Request-ID"]) == 32


def test_openapi_document_describes_every_endpoint(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()

    assert spec["openapi"].startswith("3.")
    assert {"/health/", "/model/", "/model/predict/", "/model/load/", "/model/history/"} <= set(spec["paths"])
    assert {"/model/actuals/", "/model/monitoring/"} <= set(spec["paths"])
    load_body = spec["paths"]["/model/load/"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/octet-stream"} <= set(load_body)
    assert "Flight" in spec["components"]["schemas"]


def test_swagger_ui_is_served_without_a_cdn(client: FlaskClient) -> None:
    page = client.get("/docs").get_data(as_text=True)
    script = client.get("/docs/assets/swagger-ui-bundle.js")

    assert '<script src="/docs/assets/swagger-ui-bundle.js"' in page
    assert "/openapi.json" in page
    assert "cdn" not in page.lower()
    assert script.status_code == 200
    assert len(script.get_data()) > 100_000


def test_oversized_body_is_a_json_413(app_config: dict) -> None:
    from flight_delay.api import create_app

    client = create_app({**app_config, "MAX_CONTENT_LENGTH": 1024}).test_client()
    response = client.post("/model/predict/", data=b"[" * 4096, content_type="application/json")

    assert response.status_code == 413
    assert response.get_json()["code"] == "request_entity_too_large"


def documented_error(path: str) -> dict[str, str]:
    """The error schema a path documents: the one error shape, or its protocol's (V2, MLflow)."""
    if path.startswith("/v2"):
        return {"$ref": "#/components/schemas/V2Error"}
    if path in ("/ping", "/version", "/invocations"):
        return {"$ref": "#/components/schemas/MLflowError"}
    return {"$ref": "#/components/schemas/Error"}


# Errors answered as something else on purpose: /health/'s 503 is its report, readiness says
# {"ready": false}, MLflow's /ping answers an empty body and its 415 plain text, as MLflow's server.
OTHER_ANSWERS = {("/health/", "503"), ("/ping", "503"), ("/invocations", "415")}


def test_every_operation_documents_its_errors_in_the_error_shape(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").get_json()

    for path, operations in spec["paths"].items():
        error = documented_error(path)
        for method, operation in operations.items():
            if method == "parameters":  # a path's own parameters (e.g. {version}), not an operation
                continue
            responses = operation["responses"]
            assert "default" not in responses, (method, path)
            if path != "/ping":
                assert responses["500"]["content"]["application/json"]["schema"] == error, (method, path)
            for status, response in responses.items():
                if int(status) < 400 or (path, status) in OTHER_ANSWERS or path.endswith("/ready"):
                    continue
                assert response["content"]["application/json"]["schema"] == error, (method, path, status)
    assert {"400", "413", "415", "422", "503"} <= set(spec["paths"]["/model/predict/"]["post"]["responses"])
    assert {"400", "413", "415", "422"} <= set(spec["paths"]["/model/load/"]["post"]["responses"])
    assert {"NotFound", "MethodNotAllowed"} <= set(spec["components"]["responses"])
    assert "Allow" in spec["components"]["responses"]["MethodNotAllowed"]["headers"]
    assert set(spec["components"]["schemas"]["Error"]["required"]) == {
        "status",
        "code",
        "message",
        "request_id",
    }


def test_the_documented_predict_examples_are_predicted(loaded_client: FlaskClient) -> None:
    spec = loaded_client.get("/openapi.json").get_json()
    examples = spec["paths"]["/model/predict/"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]

    for example in examples.values():
        response = loaded_client.post("/model/predict/", json=example["value"])
        assert response.status_code == 200, response.get_json()
