"""GET /model/history/: newest first, keyset pages with a next link, filters, limits."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

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

    assert body == {
        "items": [],
        "total": 0,
        "total_capped": False,
        "page_size": 50,
        "next_cursor": None,
        "next": None,
    }


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


# --- newest first by time, whatever the ids; totals counted up to a cap --------------------------


def write_rows(app_config: dict, version: str, times: list[datetime], request_id: str = "r") -> list[int]:
    """Writes history rows straight into the database (times as given, ids as the database hands out)."""
    from flight_delay.history.database import Database
    from flight_delay.history.repository import insert_predictions

    db = Database().bind(app_config["DATABASE_URL"])
    rows = [
        {
            "created_at": at,
            "request_id": request_id,
            "model_version": version,
            "input": minimal_flight(),
            "arr_delay": 1.0,
            "latency_ms": 1.0,
        }
        for at in times
    ]
    try:
        return insert_predictions(db, rows)
    finally:
        db.dispose()


def walk(client: FlaskClient, url: str) -> list[int]:
    """Follows `next` from url to the last page; returns the ids in the order listed."""
    seen = []
    while url:
        body = client.get(url).get_json()
        seen.extend(item["id"] for item in body["items"])
        url = body["next"]
    return seen


def test_pages_list_by_time_then_id_and_walk_every_row_once(
    loaded_client: FlaskClient, app_config: dict
) -> None:
    version = loaded_client.get("/model/").get_json()["version"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    # A row committed after a later-stamped one (a slow request), and a batch sharing one time.
    times = [start + timedelta(seconds=s) for s in (5, 3, 9, 7, 7, 7, 1)]
    ids = write_rows(app_config, version, times)
    expected = [i for _, i in sorted(zip(times, ids, strict=True), reverse=True)]

    assert walk(loaded_client, "/model/history/?page_size=2") == expected
    assert walk(loaded_client, f"/model/history/?page_size=3&model_version={version}") == expected
    since, until = start + timedelta(seconds=3), start + timedelta(seconds=9)
    window = urlencode({"page_size": 2, "since": since.isoformat(), "until": until.isoformat()})
    in_window = [i for at, i in sorted(zip(times, ids, strict=True), reverse=True) if since <= at < until]
    assert walk(loaded_client, f"/model/history/?{window}") == in_window


def test_a_cursor_naming_no_row_lists_what_lies_below_its_id(
    loaded_client: FlaskClient, app_config: dict
) -> None:
    version = loaded_client.get("/model/").get_json()["version"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ids = write_rows(app_config, version, [start + timedelta(seconds=s) for s in range(4)])

    listed = loaded_client.get(f"/model/history/?cursor={ids[-1] + 1000}").get_json()["items"]
    below = loaded_client.get(f"/model/history/?cursor={ids[2]}").get_json()["items"]
    nothing = loaded_client.get(f"/model/history/?cursor={ids[0]}").get_json()["items"]

    assert [item["id"] for item in listed] == list(reversed(ids))
    assert [item["id"] for item in below] == [ids[1], ids[0]]
    assert nothing == []


def test_the_total_is_counted_up_to_the_cap(loaded_client: FlaskClient, app_config: dict) -> None:
    from flight_delay.history.repository import TOTAL_CAP

    version = loaded_client.get("/model/").get_json()["version"]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    write_rows(app_config, version, [start + timedelta(milliseconds=i) for i in range(TOTAL_CAP + 1)])
    write_rows(app_config, version, [start - timedelta(days=1)], request_id="old")

    everything = loaded_client.get("/model/history/?page_size=1").get_json()
    deep = loaded_client.get(f"/model/history/?page_size=1&cursor={everything['next_cursor']}").get_json()
    one = loaded_client.get("/model/history/?request_id=old").get_json()
    until = urlencode({"until": (start + timedelta(seconds=5)).isoformat()})
    exactly = loaded_client.get(f"/model/history/?{until}").get_json()

    assert (everything["total"], everything["total_capped"]) == (TOTAL_CAP, True)
    assert (deep["total"], deep["total_capped"]) == (TOTAL_CAP, True)
    assert (one["total"], one["total_capped"]) == (1, False)
    assert (exactly["total"], exactly["total_capped"]) == (5001, False)


def test_the_openapi_document_says_the_order_and_the_cap(client: FlaskClient) -> None:
    from flight_delay.history.repository import TOTAL_CAP

    operation = client.get("/openapi.json").get_json()["paths"]["/model/history/"]["get"]
    page = client.get("/openapi.json").get_json()["components"]["schemas"]["HistoryPage"]["properties"]

    assert "Newest first by the time it was recorded" in " ".join(operation["description"].split())
    assert f"{TOTAL_CAP:,}" in operation["description"]
    assert f"{TOTAL_CAP:,}" in page["total"]["description"]
    assert page["total_capped"]["type"] == "boolean"
