"""Who may read, predict and change: every route's role, checked from the headers alone, documented.

In process: the Flask test client (an embedding WSGI server's path) and the ASGI app the workers run
(the gate before the body). tests/test_access_server.py holds the same matrix against real gunicorn.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flight_delay.access import PUBLIC, RULES, rule_for
from flight_delay.api import create_app
from flight_delay.errors import UnsafeConfiguration
from flight_delay.transport.asgi import TRANSPORTS, asgi_app
from tests.access_roles import (
    AS,
    CHANGES,
    PREDICT_HEADERS,
    PREDICT_TOKEN,
    READER_HEADERS,
    READER_TOKEN,
    READS,
    ROLES,
)
from tests.asgi import Answer, call, request
from tests.conftest import upload
from tests.contracts import assert_error_shape
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.test_cost_before_work import Sent, declared
from tests.test_transport import v2_json

FLASK_PARAMETER = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


@pytest.fixture
def roles_app(app_config: dict[str, Any], model_files: Callable[[int], Path]) -> Flask:
    """A production-rules app (testing) with a reader, a predict and the admin token, a model loaded."""
    app = create_app({**app_config, **ROLES})
    assert upload(app.test_client(), model_files(0)).status_code == 201
    return app


def spelt(pattern: str) -> str:
    """A route's pattern with every parameter spelt `{}`, Flask's or ours."""
    return re.sub(r"\{\w+\}", "{}", FLASK_PARAMETER.sub("{}", pattern))


def test_every_route_is_ruled_or_public_and_every_rule_is_a_route(app: Flask) -> None:
    routes = {(m, r.rule) for r in app.url_map.iter_rules() for m in r.methods - {"HEAD", "OPTIONS"}}
    routes |= {(route.method, route.pattern) for transport in TRANSPORTS for route in transport.ROUTES}
    public = {spelt(pattern) for pattern in PUBLIC}

    for method, pattern in routes:
        sample = FLASK_PARAMETER.sub("x", re.sub(r"\{\w+\}", "x", pattern))
        ruled = rule_for(method, sample) is not None
        assert ruled != (spelt(pattern) in public), (method, pattern, "exactly one of RULES and PUBLIC")
    assert {(rule.method, spelt(rule.pattern)) for rule in RULES} <= {(m, spelt(p)) for m, p in routes}
    assert public <= {spelt(p) for _, p in routes}


@pytest.mark.parametrize("path", READS)
def test_reading_needs_a_reader_or_admin_token(roles_app: Flask, path: str) -> None:
    client = roles_app.test_client()
    answers = {who: client.get(path, headers=headers) for who, headers in AS.items()}

    for who in ("none", "wrong"):
        assert answers[who].status_code == 401, (who, answers[who].get_json())
        assert answers[who].headers["WWW-Authenticate"] == 'Bearer realm="flight-delay"'
        assert_error_shape(401, answers[who].get_json())
    assert "needs a reader or admin token" in answers["none"].get_json()["message"]
    forbidden = answers["predict"].get_json()
    assert (answers["predict"].status_code, forbidden["code"]) == (403, "forbidden")
    assert forbidden["message"].endswith("needs a reader or admin token; 'pricing' is a predict token.")
    assert answers["reader"].status_code == 200, answers["reader"].get_json()
    assert answers["admin"].status_code == 200
    assert client.head(path, headers=READER_HEADERS).status_code == 200
    assert client.head(path).status_code == 401


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
def test_a_reader_changes_nothing_and_is_refused_before_the_body(
    roles_app: Flask, method: str, path: str, body: Any
) -> None:
    sent = Sent({**declared(path, 10 * 1024 * 1024, **READER_HEADERS), "method": method}, b"x")

    asyncio.run(asgi_app(roles_app)(sent.scope, sent.receive, sent.send))

    answer = sent.answer()
    assert (answer.status, answer.json()["code"]) == (403, "forbidden"), answer.body
    assert "'dash' is a reader token" in answer.json()["message"]
    assert not sent.asked, "refused from the headers: the body was never asked for"
    assert answer.header("connection") == "close"  # a body was announced: it is never read


def test_a_read_without_a_token_is_refused_before_any_body(roles_app: Flask) -> None:
    sent = Sent({**declared("/model/history/", 10 * 1024 * 1024), "method": "GET"}, b"x")

    asyncio.run(asgi_app(roles_app)(sent.scope, sent.receive, sent.send))

    assert (sent.answer().status, sent.answer().json()["code"]) == (401, "unauthorized")
    assert not sent.asked


@pytest.mark.parametrize(("method", "path", "body"), CHANGES)
def test_a_reader_is_refused_by_flask_alone_too(roles_app: Flask, method: str, path: str, body: Any) -> None:
    client = roles_app.test_client()
    audit = client.get("/model/audit/", headers=READER_HEADERS).get_json()

    answer = client.open(path, method=method, json=body, headers=READER_HEADERS)

    assert (answer.status_code, answer.get_json()["code"]) == (403, "forbidden")
    assert client.get("/model/audit/", headers=READER_HEADERS).get_json() == audit


def test_the_admin_implies_reader_and_predict_and_is_named_in_the_audit(roles_app: Flask) -> None:
    client = roles_app.test_client()

    changed = client.put("/model/traffic", json={"shadow": None}, headers={**ADMIN_HEADERS, "X-Reason": "t"})

    assert changed.status_code == 200, changed.get_json()
    assert client.get("/model/audit/", headers=READER_HEADERS).get_json()["events"][-1]["by"] == "admin"


def front_answer(app: Flask, sent: dict[str, Any]) -> Answer:
    """One request through the ASGI app the workers run."""
    return asyncio.run(call(asgi_app(app), sent))


PREDICTIONS = {
    "native": (request("POST", "/model/predict/", minimal_flight()), "native"),
    "V2 infer": (request("POST", "/v2/models/flight-delay/infer", v2_json([minimal_flight()])), "v2"),
    "V2 metadata": (request("GET", "/v2/models/flight-delay"), "v2"),
    "V2 model ready": (request("GET", "/v2/models/flight-delay/ready"), "v2"),
    "MLflow": (request("POST", "/invocations", {"dataframe_records": [minimal_flight()]}), "mlflow"),
}


def assert_protocol_error(answer: Answer, status: int, protocol: str) -> None:
    """The refusal in the route's protocol's own error shape."""
    assert answer.status == status, answer.body
    body = answer.json()
    if protocol == "native":
        assert_error_shape(status, body)
    else:
        assert set(body) == ({"error"} if protocol == "v2" else {"error_code", "message"}), body


@pytest.mark.parametrize("case", PREDICTIONS)
def test_predicting_needs_a_predict_token_only_when_set(
    roles_app: Flask, app_config: dict[str, Any], case: str
) -> None:
    sent, protocol = PREDICTIONS[case]
    assert front_answer(roles_app, sent).status == 200  # off by default: the case's curl flow
    guarded = create_app({**app_config, **ROLES, "ML_API_PREDICT_NEEDS_TOKEN": True})

    def asked(headers: dict[str, str]) -> Answer:
        return front_answer(guarded, {**sent, "headers": {**sent["headers"], **headers}})

    assert_protocol_error(asked({}), 401, protocol)
    assert asked({}).header("www-authenticate") == 'Bearer realm="flight-delay"'
    assert_protocol_error(asked(READER_HEADERS), 403, protocol)
    assert asked(PREDICT_HEADERS).status == 200, asked(PREDICT_HEADERS).body
    assert asked(ADMIN_HEADERS).status == 200


def test_flasks_predict_view_needs_the_predict_token_too(
    roles_app: Flask, app_config: dict[str, Any]
) -> None:
    client = create_app({**app_config, **ROLES, "ML_API_PREDICT_NEEDS_TOKEN": True}).test_client()

    assert client.post("/model/predict/", json=minimal_flight()).status_code == 401
    assert client.post("/model/predict/", json=minimal_flight(), headers=READER_HEADERS).status_code == 403
    assert client.post("/model/predict/", json=minimal_flight(), headers=PREDICT_HEADERS).status_code == 200


@pytest.mark.parametrize("path", ["/health/", "/health/live", "/metrics", "/ping", "/openapi.json", "/ui/"])
def test_health_metrics_the_document_and_the_page_stay_open(roles_app: Flask, path: str) -> None:
    assert front_answer(roles_app, request("GET", path)).status == 200


def test_v2_health_stays_open_when_predicting_needs_a_token(app_config: dict[str, Any]) -> None:
    app = create_app({**app_config, **ROLES, "ML_API_PREDICT_NEEDS_TOKEN": True})

    assert front_answer(app, request("GET", "/v2/health/live")).status == 200
    assert front_answer(app, request("GET", "/v2")).status == 200


def test_public_reading_is_on_purpose_and_said_at_start(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="flight_delay.api.auth"):
        client = create_app({**app_config, **ROLES, "ML_API_PUBLIC_READ": True}).test_client()

    assert "READING IS PUBLIC (ML_API_PUBLIC_READ=true)" in caplog.text
    assert client.get("/model/history/").status_code == 200
    assert client.put("/model/traffic", json={"shadow": None}, headers=READER_HEADERS).status_code == 403


def test_development_reads_openly_with_tokens_configured(app_config: dict[str, Any]) -> None:
    client = create_app({**app_config, **ROLES, "ENV": "development"}).test_client()

    assert client.get("/model/history/").status_code == 200
    assert client.get("/model/audit/").status_code == 200
    assert client.put("/model/traffic", json={"shadow": None}).status_code == 401  # an admin token is set


def test_without_a_reader_token_outside_development_every_read_is_refused(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    config = {**app_config, "ENV": "production", "ML_API_ADMIN_TOKEN": None, "ML_API_ALLOW_UPLOAD": False}
    with caplog.at_level(logging.WARNING, logger="flight_delay.api.auth"):
        client = create_app({**config, "ML_API_PUBLIC_READ": False}).test_client()

    answer = client.get("/model/history/", headers=READER_HEADERS)
    assert (answer.status_code, answer.get_json()["code"]) == (403, "reader_token_required")
    assert "ML_API_READER_TOKENS" in answer.get_json()["message"]
    assert "ML_API_PUBLIC_READ=true" in answer.get_json()["message"]
    assert "every read is refused" in caplog.text


@pytest.mark.parametrize(
    ("roles", "said"),
    [
        (
            {
                "ML_API_READER_TOKENS": "ops:reader-ops-token-0001",
                "ML_API_ADMIN_TOKENS": "ops:admin-ops-token-0001",
            },
            "'ops' is given twice (ML_API_ADMIN_TOKENS and ML_API_READER_TOKENS)",
        ),
        (
            {"ML_API_READER_TOKENS": f"a:{READER_TOKEN}", "ML_API_PREDICT_TOKENS": f"b:{READER_TOKEN}"},
            "the same token is given under two names",
        ),
        ({"ML_API_READER_TOKENS": "dash:short"}, "token 'dash' (ML_API_READER_TOKENS) is shorter than 16"),
        ({"ML_API_PREDICT_TOKENS": f"pricing {PREDICT_TOKEN}"}, "ML_API_PREDICT_TOKENS entry 1 must be"),
    ],
)
def test_a_bad_role_list_refuses_to_start_without_saying_a_token(
    app_config: dict[str, Any], roles: dict[str, str], said: str
) -> None:
    with pytest.raises(UnsafeConfiguration) as refused:
        create_app({**app_config, **roles})

    assert said in str(refused.value)
    for token in (READER_TOKEN, PREDICT_TOKEN, "reader-ops-token-0001", "admin-ops-token-0001", "dash:short"):
        assert token not in str(refused.value)


def operations(client: FlaskClient) -> dict[tuple[str, str], dict[str, Any]]:
    """The served document's operations, by method and path."""
    paths = client.get("/openapi.json").get_json()["paths"]
    return {(m, p): op for p, ops in paths.items() for m, op in ops.items() if m != "parameters"}


def test_the_document_says_each_routes_security_and_refusals(app_config: dict[str, Any]) -> None:
    client = create_app({**app_config, **ROLES, "ML_API_PREDICT_NEEDS_TOKEN": True}).test_client()
    document = client.get("/openapi.json").get_json()
    documented = operations(client)

    schemes = document["components"]["securitySchemes"]
    bearer = {name: (scheme["type"], scheme["scheme"]) for name, scheme in schemes.items()}
    assert bearer == dict.fromkeys(("adminToken", "readerToken", "predictToken"), ("http", "bearer"))
    for (method, path), operation in documented.items():
        rule = rule_for(method.upper(), path)
        if rule is None:
            assert "security" not in operation, (method, path)
            continue
        granted = {"admin": ["adminToken"], "reader": ["readerToken", "adminToken"]}
        expected = granted.get(rule.need.role, ["predictToken", "adminToken"])
        assert operation["security"] == [{name: []} for name in expected], (method, path)
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], (method, path)
        assert "forbidden" in operation["responses"]["403"]["description"], (method, path)


def test_public_reading_and_open_predicting_are_documented_open(client: FlaskClient) -> None:
    documented = operations(client)

    for path in (*READS, "/model/predict/", "/invocations", "/v2/models/{model}/infer"):
        method = "post" if path in ("/model/predict/", "/invocations") or path.endswith("infer") else "get"
        assert "security" not in documented[(method, path)], path
        assert "401" not in documented[(method, path)]["responses"], path
    assert documented[("post", "/model/actuals/")]["security"] == [{"adminToken": []}]
