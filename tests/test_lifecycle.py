"""A model's life over the API: candidates, activation, rollback, the audit by token name, bad requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, text

from flight_delay.api import create_app
from flight_delay.history.migrate import downgrade, upgrade
from flight_delay.history.models import ModelActivation, Prediction
from flight_delay.services import Services
from flight_delay.transport.asgi import asgi_app
from tests.asgi import request
from tests.conftest import upload
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.test_cost_before_work import Sent

ALICE = {"Authorization": "Bearer alice-token-0123456789"}
BOB = {"Authorization": "Bearer bob-token-0123456789abc"}
NAMED_TOKENS = "alice:alice-token-0123456789, bob:bob-token-0123456789abc"


@pytest.fixture
def named_app(app_config: dict[str, Any]) -> Flask:
    """An app with the single admin token (named admin) and two named ones, alice and bob."""
    return create_app({**app_config, "ML_API_ADMIN_TOKENS": NAMED_TOKENS})


@pytest.fixture
def named(named_app: Flask) -> FlaskClient:
    """A client of that app."""
    return named_app.test_client()


def load(client: FlaskClient, path: Path, headers: dict[str, str], activate: bool = True) -> dict[str, Any]:
    """Uploads a model file (active, or a candidate) and returns the answer, checked to be a 201."""
    query = "" if activate else "?activate=false"
    with path.open("rb") as handle:
        response = client.post(f"/model/load/{query}", data={"file": (handle, path.name)}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def versions(client: FlaskClient) -> dict[str, dict[str, Any]]:
    """GET /model/versions/, by version."""
    return {entry["version"]: entry for entry in client.get("/model/versions/").get_json()["versions"]}


def events(client: FlaskClient) -> list[tuple[Any, ...]]:
    """The audit as (action, version, previous, by, reason)."""
    found = client.get("/model/audit/").get_json()["events"]
    return [(e["action"], e["version"], e["previous"], e["by"], e["reason"]) for e in found]


def served_versions(client: FlaskClient, count: int) -> set[str]:
    """The versions that answered `count` predictions."""
    return {
        client.post("/model/predict/", json=minimal_flight()).get_json()["model_version"]
        for _ in range(count)
    }


def test_a_candidate_serves_nothing_until_activated(
    named: FlaskClient, model_files: Callable[[int], Path], services: Services
) -> None:
    active = load(named, model_files(0), ALICE)["version"]
    candidate = load(named, model_files(1), BOB, activate=False)

    assert candidate["stage"] == "candidate"
    assert candidate["loaded_at"] is None
    listed = versions(named)
    assert (listed[active]["stage"], listed[active]["traffic"]) == ("active", 100.0)
    assert listed[candidate["version"]]["stage"] == "candidate"
    assert listed[candidate["version"]]["traffic"] == 0.0
    assert listed[candidate["version"]]["activated_at"] is None
    assert served_versions(named, 20) == {active}
    assert named.get("/model/").get_json()["version"] == active
    with services.db.transaction() as session:
        by_candidate = session.scalars(
            select(Prediction.id).where(Prediction.model_version == candidate["version"])
        )
        assert list(by_candidate) == []


def test_activate_then_rollback_and_the_audit_says_who_and_why_in_order(
    named: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    first = load(named, model_files(0), ADMIN_HEADERS)["version"]
    second = load(named, model_files(1), {**ALICE, "X-Reason": "retrained on December"}, activate=False)[
        "version"
    ]

    activated = named.post(
        f"/model/versions/{second}/activate", json={"reason": "replay beat it"}, headers=BOB
    )
    assert activated.status_code == 200, activated.get_json()
    assert activated.get_json()["active"] == second
    assert activated.get_json()["rollback_to"] == first
    assert served_versions(named, 5) == {second}
    assert versions(named)[first]["stage"] == "retired"

    rolled = named.post("/model/rollback", headers={**ALICE, "X-Reason": "complaints"})
    assert rolled.status_code == 200, rolled.get_json()
    assert (rolled.get_json()["active"], rolled.get_json()["rollback_to"]) == (first, None)
    assert served_versions(named, 5) == {first}

    assert events(named) == [
        ("upload", first, None, "admin", None),
        ("activate", first, None, "admin", None),
        ("upload", second, None, "alice", "retrained on December"),
        ("activate", second, first, "bob", "replay beat it"),
        ("rollback", first, second, "alice", "complaints"),
    ]
    times = [e["at"] for e in named.get("/model/audit/").get_json()["events"]]
    assert times == sorted(times)


def test_rollbacks_unwind_the_activations_one_by_one(
    client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    one, two, three = (load(client, model_files(seed), ADMIN_HEADERS)["version"] for seed in (0, 1, 2))

    back = [client.post("/model/rollback", headers=ADMIN_HEADERS).get_json()["active"] for _ in range(2)]
    refused = client.post("/model/rollback", headers=ADMIN_HEADERS)

    assert back == [two, one]
    assert refused.status_code == 409
    assert refused.get_json()["code"] == "no_previous_version"
    assert one[:12] in refused.get_json()["message"]
    assert client.get("/model/").get_json()["version"] == one
    assert three in versions(client)


def test_activating_the_active_version_changes_nothing(
    client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    version = load(client, model_files(0), ADMIN_HEADERS)["version"]
    before = events(client)

    again = client.post(f"/model/versions/{version}/activate", headers=ADMIN_HEADERS)

    assert again.status_code == 200
    assert again.get_json()["active"] == version
    assert events(client) == before


def test_activating_a_version_clears_a_canary_or_shadow_of_it(
    client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    first = load(client, model_files(0), ADMIN_HEADERS)["version"]
    second = load(client, model_files(1), ADMIN_HEADERS, activate=False)["version"]
    split = {"canary": {"version": second, "percent": 10}, "shadow": second}
    assert client.put("/model/traffic", json=split, headers=ADMIN_HEADERS).status_code == 200

    answer = client.post(f"/model/versions/{second}/activate", headers=ADMIN_HEADERS).get_json()

    assert (answer["active"], answer["canary"], answer["shadow"]) == (second, None, None)
    assert [e[:3] for e in events(client)[-3:]] == [
        ("activate", second, first),
        ("canary", None, second),
        ("shadow", None, second),
    ]


def test_traffic_changes_are_audited_and_null_clears(
    client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    load(client, model_files(0), ADMIN_HEADERS)
    other = load(client, model_files(1), ADMIN_HEADERS, activate=False)["version"]

    client.put("/model/traffic", json={"canary": {"version": other, "percent": 12.5}}, headers=ADMIN_HEADERS)
    client.put("/model/traffic", json={"shadow": other}, headers=ADMIN_HEADERS)
    kept = client.get("/model/traffic").get_json()
    cleared = client.put("/model/traffic", json={"canary": None, "shadow": None}, headers=ADMIN_HEADERS)

    assert kept["canary"] == {"version": other, "percent": 12.5}
    assert kept["shadow"] == other
    assert (cleared.get_json()["canary"], cleared.get_json()["shadow"]) == (None, None)
    audit = client.get("/model/audit/").get_json()["events"][-4:]
    assert [(e["action"], e["version"], e["previous"], e["percent"]) for e in audit] == [
        ("canary", other, None, 12.5),
        ("shadow", other, None, None),
        ("canary", None, other, 0.0),
        ("shadow", None, other, None),
    ]
    assert versions(client)[other]["traffic"] == 0.0


# --- who may: 401 without a token, and the token never echoed ---------------------------------------

ADMIN_CALLS = [
    ("post", "/model/versions/{version}/activate", None),
    ("post", "/model/rollback", None),
    ("put", "/model/traffic", {"shadow": None}),
    ("post", "/model/versions/{version}/replay", {}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-token-of-ours"}, {"Authorization": "Basic x"}]
)
def test_every_change_needs_an_admin_token(
    named: FlaskClient,
    model_files: Callable[[int], Path],
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
) -> None:
    version = load(named, model_files(0), ALICE)["version"]
    before = events(named)

    response = getattr(named, method)(path.format(version=version), json=body, headers=headers)

    assert response.status_code == 401, response.get_json()
    assert response.get_json()["code"] == "unauthorized"
    assert "not-a-token-of-ours" not in response.get_data(as_text=True)
    assert events(named) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/model/rollback"),
        ("PUT", "/model/traffic"),
        ("POST", f"/model/versions/{'0' * 64}/activate"),
        ("POST", f"/model/versions/{'0' * 64}/replay"),
    ],
)
def test_the_workers_gate_refuses_a_change_without_a_named_token_before_its_body(
    named_app: Flask, method: str, path: str
) -> None:
    wrong = {"Authorization": "Bearer bob-token-guessed-wrong"}
    declared = {
        **request(method, path, b"", content_type="application/json", **wrong),
        "content_length": 1 << 20,
    }
    sent = Sent(declared, b"x")

    asyncio.run(asgi_app(named_app)(sent.scope, sent.receive, sent.send))

    assert sent.answer().status == 401, sent.answer().body
    assert not sent.asked, "the body was not asked for"


def test_the_token_is_checked_before_the_body_is_read(named: FlaskClient) -> None:
    response = named.put("/model/traffic", data=b"{not json", content_type="application/json")

    assert response.status_code == 401


def test_an_upload_without_a_token_is_refused_and_stores_nothing(
    named: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    with model_files(0).open("rb") as handle:
        response = named.post("/model/load/?activate=false", data={"file": (handle, "m.pkl")})

    assert response.status_code == 401
    assert versions(named) == {}
    assert events(named) == []


def test_reading_needs_no_token(named: FlaskClient) -> None:
    for path in ("/model/versions/", "/model/traffic", "/model/audit/"):
        assert named.get(path).status_code == 200, path


# --- bad requests: named, and nothing changed ------------------------------------------------------

UNKNOWN = "0" * 64


def state(client: FlaskClient) -> tuple[Any, ...]:
    """Everything a refused change must leave as it was."""
    return client.get("/model/traffic").get_json(), versions(client), events(client)


@pytest.mark.parametrize(
    ("method", "path", "body", "named_in_message"),
    [
        ("post", f"/model/versions/{UNKNOWN}/activate", None, UNKNOWN),
        ("post", "/model/versions/not-a-version/activate", None, "not-a-version"),
        ("post", f"/model/versions/{UNKNOWN}/replay", {}, UNKNOWN),
        ("put", "/model/traffic", {"canary": {"version": UNKNOWN, "percent": 5}}, UNKNOWN),
        ("put", "/model/traffic", {"shadow": UNKNOWN}, UNKNOWN),
    ],
)
def test_an_unknown_version_is_a_404_naming_it(
    loaded_client: FlaskClient, method: str, path: str, body: Any, named_in_message: str
) -> None:
    before = state(loaded_client)

    response = getattr(loaded_client, method)(path, json=body, headers=ADMIN_HEADERS)

    assert response.status_code == 404, response.get_json()
    assert response.get_json()["code"] == "unknown_model_version"
    assert named_in_message in response.get_json()["message"]
    assert state(loaded_client) == before


@pytest.mark.parametrize("percent", [-1, 50.01, 51, 100])
def test_a_percent_outside_0_to_50_is_a_422_naming_it(
    client: FlaskClient, model_files: Callable[[int], Path], percent: float
) -> None:
    load(client, model_files(0), ADMIN_HEADERS)
    other = load(client, model_files(1), ADMIN_HEADERS, activate=False)["version"]
    before = state(client)

    response = client.put(
        "/model/traffic", json={"canary": {"version": other, "percent": percent}}, headers=ADMIN_HEADERS
    )

    assert response.status_code == 422
    assert "percent" in response.get_json()["errors"]["canary"]
    assert state(client) == before


@pytest.mark.parametrize("part", ["canary", "shadow"])
def test_a_canary_or_shadow_of_the_active_version_is_a_422(loaded_client: FlaskClient, part: str) -> None:
    active = loaded_client.get("/model/").get_json()["version"]
    body = {"canary": {"version": active, "percent": 10}} if part == "canary" else {"shadow": active}
    before = state(loaded_client)

    response = loaded_client.put("/model/traffic", json=body, headers=ADMIN_HEADERS)

    assert response.status_code == 422
    assert response.get_json()["code"] == "invalid_traffic"
    assert part in response.get_json()["errors"]
    assert state(loaded_client) == before


def test_a_traffic_change_that_sets_nothing_is_a_422(loaded_client: FlaskClient) -> None:
    response = loaded_client.put("/model/traffic", json={"reason": "nothing"}, headers=ADMIN_HEADERS)

    assert response.status_code == 422
    assert "_schema" in response.get_json()["errors"]


def test_a_rollback_with_no_previous_version_is_a_409(loaded_client: FlaskClient) -> None:
    before = state(loaded_client)

    response = loaded_client.post("/model/rollback", headers=ADMIN_HEADERS)

    assert response.status_code == 409
    assert "no previous version" in response.get_json()["message"]
    assert state(loaded_client) == before


def test_the_audit_cannot_be_changed_over_the_api(loaded_client: FlaskClient) -> None:
    for method in ("post", "put", "patch", "delete"):
        assert getattr(loaded_client, method)("/model/audit/", headers=ADMIN_HEADERS).status_code == 405


# --- the migration links the activations made before it --------------------------------------------


def test_activations_made_before_the_migration_can_be_rolled_back(
    app_config: dict[str, Any], model_files: Callable[[int], Path]
) -> None:
    url = app_config["DATABASE_URL"]
    app = create_app(app_config)
    client = app.test_client()
    first, second = (upload(client, model_files(seed)).get_json()["version"] for seed in (0, 1))
    app.extensions["flight_delay"].db.dispose()
    downgrade(url, "0007")
    engine = create_engine(url)
    with engine.begin() as connection:  # the same version twice in a row, as an upload repeated did
        connection.execute(
            text("INSERT INTO model_activations (version, activated_at) VALUES (:v, CURRENT_TIMESTAMP)"),
            {"v": second},
        )
    engine.dispose()
    upgrade(url)

    rolled = create_app(app_config).test_client().post("/model/rollback", headers=ADMIN_HEADERS)

    assert rolled.status_code == 200, rolled.get_json()
    assert rolled.get_json()["active"] == first
    engine = create_engine(url)
    with engine.connect() as connection:
        linked = connection.execute(
            select(ModelActivation.id, ModelActivation.previous_id).order_by(ModelActivation.id)
        ).all()
    engine.dispose()
    assert [previous for _, previous in linked[:3]] == [None, linked[0][0], linked[0][0]]
