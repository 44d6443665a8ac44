"""GET /metrics: the counts a Prometheus scrape sees, in one process and across gunicorn workers."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from flight_delay.api.services import services_of
from flight_delay.observability import metrics
from flight_delay.observability.metrics import HTTP_REQUESTS, PREDICTIONS
from flight_delay.observability.multiprocess import ENV_VAR, use_fresh_metrics_dir
from tests.conftest import upload
from tests.databases import refuse_inserts
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.servers import serve


def samples(body: str) -> dict[tuple[str, frozenset], float]:
    """Indexes a scrape's samples by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(scrape: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    """One sample's value, 0 when the series does not exist yet."""
    return scrape.get((name, frozenset(labels.items())), 0.0)


def scrape(client: FlaskClient) -> dict[tuple[str, frozenset], float]:
    """Scrapes /metrics through the test client."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return samples(response.get_data(as_text=True))


def test_predictions_requests_and_loads_are_counted(
    loaded_client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    version = loaded_client.get("/model/").get_json()["version"]
    before = scrape(loaded_client)

    for _ in range(3):
        assert loaded_client.post("/model/predict/", json=minimal_flight()).status_code == 200
    batch = {"flights": [minimal_flight(), minimal_flight()]}
    assert loaded_client.post("/model/predict/", json=batch).status_code == 200
    assert loaded_client.post("/model/predict/", json={"month": 13}).status_code == 422
    refused = loaded_client.post(
        "/model/load/", data=b"junk", content_type="application/octet-stream", headers=ADMIN_HEADERS
    )
    assert refused.status_code == 400
    assert upload(loaded_client, model_files(1)).status_code == 201
    after = scrape(loaded_client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("flight_delay_predictions_total", model_version=version) == 5
    requests_total = "flight_delay_http_requests_total"
    assert delta(requests_total, endpoint="/model/predict/", method="POST", status="200") == 4
    assert delta(requests_total, endpoint="/model/predict/", method="POST", status="422") == 1
    assert delta(requests_total, endpoint="/model/load/", method="POST", status="400") == 1
    assert delta("flight_delay_model_loads_total", outcome="refused", code="invalid_artifact") == 1
    assert delta("flight_delay_model_loads_total", outcome="accepted", code="") == 1
    latency = "flight_delay_http_request_duration_seconds_count"
    assert delta(latency, endpoint="/model/predict/", method="POST") == 5


def test_history_write_failures_are_counted(loaded_client: FlaskClient) -> None:
    before = scrape(loaded_client)
    with services_of(loaded_client.application).db.transaction() as session:
        refuse_inserts(session, "predictions", "disk is full")

    assert loaded_client.post("/model/predict/", json=minimal_flight()).status_code == 503
    after = scrape(loaded_client)

    failures = "flight_delay_history_write_failures_total"
    assert value(after, failures) - value(before, failures) == 1


def test_unknown_paths_share_one_label(client: FlaskClient) -> None:
    before = scrape(client)
    for path in ("/nope", "/nope/again", "/x" * 50):
        assert client.get(path).status_code == 404
    after = scrape(client)

    labels = {"endpoint": "unmatched", "method": "GET", "status": "404"}
    name = "flight_delay_http_requests_total"
    assert value(after, name, **labels) - value(before, name, **labels) == 3
    assert not any("/nope" in str(key) for key in after)


def test_a_fresh_metrics_dir_drops_a_previous_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "metrics"))
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "counter_123.db").write_bytes(b"old counts")

    assert use_fresh_metrics_dir() == tmp_path / "metrics"
    assert list((tmp_path / "metrics").iterdir()) == []


@pytest.mark.slow
def test_counts_add_up_across_gunicorn_workers(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    sent = 120
    with serve(tmp_path / "data", database_url, workers=4, DEFAULT_MODEL_PATH=str(model_files(0))) as server:
        version = requests.get(f"{server.url}/model/", timeout=30).json()["version"]
        for i in range(sent):
            response = requests.post(
                f"{server.url}/model/predict/",
                json=minimal_flight(dep_delay=float(i)),
                headers={"Connection": "close", "X-Request-ID": f"metrics-{i}"},
                timeout=30,
            )
            assert response.status_code == 200
        scrapes = [samples(requests.get(f"{server.url}/metrics", timeout=30).text) for _ in range(8)]
        log = server.log()

    workers = set(re.findall(r"pid=<?(\d+)>? request_id=metrics-", log))
    assert len(workers) >= 2  # the requests really were spread over several processes
    for scraped in scrapes:  # whichever worker answers the scrape sees every worker's counts
        assert value(scraped, "flight_delay_predictions_total", model_version=version) == sent
        assert (
            value(
                scraped,
                "flight_delay_http_requests_total",
                endpoint="/model/predict/",
                method="POST",
                status="200",
            )
            == sent
        )


def test_a_failing_metrics_update_never_fails_the_request(
    loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(*_: object) -> None:
        raise OSError(27, "File too large")  # what growing a metrics file gives on a full disk

    for counter in (HTTP_REQUESTS, PREDICTIONS):
        monkeypatch.setattr(counter, "labels", full_disk)
    monkeypatch.setattr(metrics, "_children", {})  # no child looked up before: each update fails

    response = loaded_client.post("/model/predict/", json=minimal_flight())

    assert response.status_code == 200
    history = loaded_client.get("/model/history/").get_json()["items"]
    assert [item["request_id"] for item in history] == [response.get_json()["request_id"]]


def test_children_are_looked_up_once_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_children", {})
    monkeypatch.setattr(metrics, "CACHED_CHILDREN", 2)
    first = metrics.labelled(HTTP_REQUESTS, "/x/", "GET", "200")

    assert metrics.labelled(HTTP_REQUESTS, "/x/", "GET", "200") is first
    assert first is HTTP_REQUESTS.labels("/x/", "GET", "200")
    metrics.labelled(PREDICTIONS, "v1")
    beyond = metrics.labelled(PREDICTIONS, "v2")  # the third label set: looked up, not kept
    assert beyond is PREDICTIONS.labels("v2")
    assert len(metrics._children) == 2
