"""GET /model/history/: newest first, keyset pages with a next link, filters, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.conftest import upload
from tests.factories import minimal_flight


def predict_n(client: FlaskClient, count: int) -> list[int]:
    """Makes `count` single-flight predictions and returns their history ids."""
    ids = []
    for i in range(count):
        body = client.post("/model/predict/", json=minimal_flight(dep_delay=float(i))).get_json()
        ids.append(body["predictions"][0]["history_id"])
    return ids


def test_empty_history(client: FlaskClient) -> None:
    body = client.get("/model/history/").get_json()

    assert body == {"items": [], "total": 0, "page_size": 50, "next_cursor": None, "next": None}


def test_pages_walk_the_whole_history_newest_first(loaded_client: FlaskClient) -> None:
    ids = predict_n(loaded_client, 7)
    seen, url = [], "/model/history/?page_size=3"
    while url:
        body = loaded_client.get(url).get_json()
        assert body["total"] == 7
        assert len(body["items"]) <= 3
        seen.extend(item["id"] for item in body["items"])
        url = body["next"]

    assert seen == sorted(ids, reverse=True)


def test_item_carries_payload_output_version_time_request_and_latency(
    loaded_client: FlaskClient,
) -> None:
    before = datetime.now(UTC)
    loaded_client.post("/model/predict/", json=minimal_flight(), headers={"X-Request-ID": "abc"})
    [item] = loaded_client.get("/model/history/").get_json()["items"]

    assert item["input"] == minimal_flight()
    assert item["request_id"] == "abc"
    assert len(item["model_version"]) == 64
    assert isinstance(item["arr_delay"], float)
    assert item["latency_ms"] > 0
    created_at = datetime.fromisoformat(item["created_at"])
    assert created_at >= before - timedelta(seconds=1)
    assert created_at.utcoffset() == timedelta(0), "times are answered in UTC whatever the database's zone"


def test_filter_by_model_version(loaded_client: FlaskClient, model_files: Callable[[int], Path]) -> None:
    predict_n(loaded_client, 2)
    version_b = upload(loaded_client, model_files(1)).get_json()["version"]
    ids_b = predict_n(loaded_client, 3)

    body = loaded_client.get(f"/model/history/?model_version={version_b}").get_json()

    assert body["total"] == 3
    assert [item["id"] for item in body["items"]] == sorted(ids_b, reverse=True)
    assert {item["model_version"] for item in body["items"]} == {version_b}


def test_filter_by_request_id(loaded_client: FlaskClient) -> None:
    predict_n(loaded_client, 2)
    batch = {"flights": [minimal_flight(), minimal_flight(day=2)]}
    answer = loaded_client.post("/model/predict/", json=batch, headers={"X-Request-ID": "wanted-1"})
    ids = [prediction["history_id"] for prediction in answer.get_json()["predictions"]]

    body = loaded_client.get("/model/history/?request_id=wanted-1").get_json()

    assert body["total"] == 2
    assert [item["id"] for item in body["items"]] == sorted(ids, reverse=True)
    assert loaded_client.get("/model/history/?request_id=nobody").get_json()["total"] == 0


def test_filter_by_time_range(loaded_client: FlaskClient) -> None:
    predict_n(loaded_client, 2)
    middle = datetime.now(UTC)
    later_ids = predict_n(loaded_client, 2)

    since = loaded_client.get("/model/history/", query_string={"since": middle.isoformat()})
    until = loaded_client.get("/model/history/", query_string={"until": middle.isoformat()})

    assert [item["id"] for item in since.get_json()["items"]] == sorted(later_ids, reverse=True)
    assert until.get_json()["total"] == 2


def test_next_link_keeps_the_filters(loaded_client: FlaskClient) -> None:
    predict_n(loaded_client, 3)
    version = loaded_client.get("/model/").get_json()["version"]
    body = loaded_client.get(f"/model/history/?page_size=1&model_version={version}").get_json()

    assert f"model_version={version}" in body["next"]
    assert "cursor=" in body["next"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page_size=501", "page_size"),
        ("page_size=0", "page_size"),
        ("cursor=abc", "cursor"),
        ("cursor=9223372036854775808", "cursor"),  # past the largest id: used to be a 500
        ("since=0001-01-01T00:00:00%2B14:00", "since"),  # before year 1 in UTC: used to be a 503
        ("until=9999-12-31T23:59:59-14:00", "until"),  # after year 9999 in UTC
        ("model_version=xyz", "model_version"),
        ("request_id=a%20b", "request_id"),
        ("request_id=" + "x" * 129, "request_id"),
        ("since=yesterday", "since"),
        ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ("colour=blue", "colour"),
    ],
)
def test_bad_queries_name_the_field(client: FlaskClient, query: str, field: str) -> None:
    response = client.get(f"/model/history/?{query}")

    assert response.status_code == 422
    assert field in response.get_json()["errors"]


def test_the_largest_cursor_is_accepted(loaded_client: FlaskClient) -> None:
    response = loaded_client.get("/model/history/?cursor=9223372036854775807")

    assert response.status_code == 200
