"""Security headers on every answer, errors included, and a /docs policy that still lets Swagger UI run."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

import pytest
from flask.testing import FlaskClient

from flight_delay.api import create_app
from flight_delay.serving.registry import ModelRegistry
from tests.contracts import assert_error_shape, assert_security_headers
from tests.factories import minimal_flight

ANSWERS = [
    ("get", "/health/", {}, 200),
    ("get", "/model/", {}, 200),
    ("get", "/model/history/", {}, 200),
    ("post", "/model/predict/", {"json": minimal_flight()}, 200),
    ("get", "/openapi.json", {}, 200),
    ("post", "/model/predict/", {"data": "{", "content_type": "application/json"}, 400),
    ("get", "/nowhere/", {}, 404),
    ("delete", "/model/", {}, 405),
    ("post", "/model/predict/", {"data": "x", "content_type": "text/plain"}, 415),
    ("post", "/model/predict/", {"json": minimal_flight(month=13)}, 422),
    ("get", "/model/history/?cursor=x", {}, 422),
]


def directives(policy: str) -> dict[str, list[str]]:
    """Splits a Content-Security-Policy into its directives and their sources."""
    parsed = [part.split() for part in policy.split(";") if part.strip()]
    return {name: sources for name, *sources in parsed}


def sha256_source(script: str) -> str:
    """The CSP source that allows one inline script."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'"


@pytest.mark.parametrize(("method", "path", "request_args", "status"), ANSWERS)
def test_answers_and_errors_carry_the_security_headers(
    loaded_client: FlaskClient, method: str, path: str, request_args: dict[str, Any], status: int
) -> None:
    response = getattr(loaded_client, method)(path, **request_args)

    assert response.status_code == status
    assert_security_headers(response.headers)
    assert response.headers["Cache-Control"] == "no-store"
    if status >= 400:
        assert_error_shape(status, response.get_json())


def test_a_503_carries_them(client: FlaskClient) -> None:
    response = client.get("/model/")

    assert response.status_code == 503
    assert_security_headers(response.headers)
    assert_error_shape(503, response.get_json())


def test_a_500_carries_them(loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: ModelRegistry) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(ModelRegistry, "active", broken)
    response = loaded_client.get("/model/")

    assert response.status_code == 500
    assert_security_headers(response.headers)
    assert_error_shape(500, response.get_json())


def test_a_413_carries_them(app_config: dict[str, Any]) -> None:
    client = create_app({**app_config, "MAX_CONTENT_LENGTH": 1024}).test_client()
    response = client.post("/model/predict/", json={"flights": [minimal_flight()] * 20})

    assert response.status_code == 413
    assert_security_headers(response.headers)
    assert_error_shape(413, response.get_json())


def test_swagger_ui_files_carry_them_and_stay_revalidatable(client: FlaskClient) -> None:
    response = client.get("/docs/assets/swagger-ui-bundle.js")

    assert response.status_code == 200
    assert_security_headers(response.headers)
    assert response.headers["Cache-Control"] != "no-store"


def test_the_docs_policy_lets_swagger_ui_run_and_nothing_else(client: FlaskClient) -> None:
    response = client.get("/docs")
    page = response.get_data(as_text=True)
    policy = directives(response.headers["Content-Security-Policy"])
    inline_scripts = re.findall(r"<script>(.*?)</script>", page, re.DOTALL)
    loaded = re.findall(r'<script src="([^"]+)"', page) + re.findall(r'<link href="([^"]+)"', page)

    assert_security_headers(response.headers, policy=response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    # Its own inline bootstrap runs (allowed by hash), no other inline or eval'd script can.
    assert inline_scripts
    assert set(policy["script-src"]) == {"'self'", *map(sha256_source, inline_scripts)}
    # Its scripts and stylesheet come from this origin, and are there.
    assert len(loaded) == 3
    for url in loaded:
        assert url.startswith("/"), url
        assert not url.startswith("//"), url
        assert client.get(url).status_code == 200
    assert "'self'" in policy["style-src"]
    # It fetches /openapi.json, and swagger-ui.css draws its icons from data: URIs.
    assert policy["connect-src"] == ["'self'"]
    assert "url(data:image" in client.get("/docs/assets/swagger-ui.css").get_data(as_text=True)
    assert "data:" in policy["img-src"]


def test_the_bundled_swagger_ui_needs_no_eval(client: FlaskClient) -> None:
    bundle = client.get("/docs/assets/swagger-ui-bundle.js").get_data(as_text=True)

    # Its Function(...) calls are fallbacks behind globalThis, which every current browser has.
    assert "eval(" not in bundle.replace("%eval%", "")
    assert "'unsafe-eval'" not in client.get("/docs").headers["Content-Security-Policy"]


def test_the_ui_page_gets_a_strict_policy_and_needs_nothing_inline(client: FlaskClient) -> None:
    response = client.get("/ui/")
    page = response.get_data(as_text=True)
    policy = directives(response.headers["Content-Security-Policy"])
    loaded = re.findall(r'<script[^>]* src="([^"]+)"', page) + re.findall(r'<link[^>]* href="([^"]+)"', page)

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert_security_headers(response.headers, policy=response.headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'none'"]
    for directive in ("script-src", "style-src", "img-src", "connect-src"):
        assert policy[directive] == ["'self'"], directive
    assert policy["frame-ancestors"] == ["'none'"]
    # No inline script, style or handler for the policy to refuse; its files come from this origin.
    assert not re.search(r"<script(?![^>]* src=)[^>]*>", page)
    assert "<style" not in page
    assert not re.search(r"\s(style|on[a-z]+)=", page)
    assert len(loaded) == 3
    for url in loaded:
        assert url.startswith("/ui/static/"), url
        assert client.get(url).status_code == 200


def test_the_ui_files_carry_the_headers_and_stay_revalidatable(client: FlaskClient) -> None:
    response = client.get("/ui/static/ui.js")

    assert response.status_code == 200
    assert_security_headers(response.headers)
    assert response.headers["Cache-Control"] != "no-store"
    assert "eval(" not in response.get_data(as_text=True)
    assert "innerHTML" not in response.get_data(as_text=True)  # text goes in as text, never as markup
