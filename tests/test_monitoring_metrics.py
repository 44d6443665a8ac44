"""/metrics: the active model's live MAE, drift PSI and roll-up lag, renewed every MONITORING_REFRESH_S."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from flight_delay.services import Services
from tests.conftest import upload
from tests.factories import minimal_flight, synthetic_flights
from tests.monitoring_helpers import flights_of, post_actuals, report, serve


def gauge(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition (None when absent)."""
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))  # as prometheus_client sorts them
    found = re.search(rf"^{name}\{{{re.escape(rendered)}\}} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else None


def test_live_mae_and_drift_are_gauges(loaded_client: FlaskClient) -> None:
    served = serve(loaded_client, flights_of(synthetic_flights(50, seed=2)))
    post_actuals(loaded_client, [{"history_id": p["history_id"], "arr_delay": 12.5} for p in served[:20]])
    expected = report(loaded_client)
    version = expected["model_version"]

    text = loaded_client.get("/metrics").get_data(as_text=True)

    assert gauge(text, "flight_delay_live_mae", model_version=version) == pytest.approx(
        expected["live"]["mae"]
    )
    assert gauge(text, "flight_delay_live_actuals", model_version=version) == 20
    psi = gauge(text, "flight_delay_drift_psi", model_version=version, field="dep_delay")
    assert psi == pytest.approx(expected["drift"]["dep_delay"]["psi"])
    predicted = gauge(text, "flight_delay_drift_psi", model_version=version, field="prediction")
    assert predicted == pytest.approx(expected["drift"]["prediction"]["psi"])
    assert gauge(text, "flight_delay_monitoring_lag_seconds", model_version=version) is not None


GAUGES = ("flight_delay_live_", "flight_delay_drift_psi", "flight_delay_monitoring_lag_seconds")


def series_of(text: str, version: str) -> list[str]:
    """The exposition's monitoring gauge samples labelled with a model version."""
    return [
        line for line in text.splitlines() if line.startswith(GAUGES) and f'model_version="{version}"' in line
    ]


def test_the_gauges_follow_the_active_model(
    loaded_client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    serve(loaded_client, flights_of(synthetic_flights(20, seed=2)))
    retired = report(loaded_client)["model_version"]
    assert series_of(loaded_client.get("/metrics").get_data(as_text=True), retired)

    assert upload(loaded_client, model_files(1)).status_code == 201
    serve(loaded_client, flights_of(synthetic_flights(20, seed=3)))
    active = report(loaded_client)["model_version"]
    text = loaded_client.get("/metrics").get_data(as_text=True)

    assert series_of(text, retired) == []  # within the refresh interval: the retired model's series are gone
    assert gauge(text, "flight_delay_drift_psi", model_version=active, field="dep_delay") is not None
    assert 'flight_delay_predictions_total{model_version="' + retired in text  # counters stay


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch, services: Services) -> list[Any]:
    """Counts the reports the gauges ask for."""
    monitoring = services.monitoring
    calls: list[Any] = []
    original = monitoring.report

    def counted(**query: Any) -> Any:
        calls.append(query)
        return original(**query)

    monkeypatch.setattr(monitoring, "report", counted)
    return calls


def test_a_scrape_renews_the_figures_only_when_they_are_stale(
    loaded_client: FlaskClient, reports: list[Any]
) -> None:
    serve(loaded_client, [minimal_flight()])

    for _ in range(3):
        assert loaded_client.get("/metrics").status_code == 200

    assert len(reports) == 1
    assert reports[0]["since"] is not None  # the last MONITORING_WINDOW_S


def test_a_failed_renewal_leaves_metrics_answering(client: FlaskClient, reports: list[Any]) -> None:
    response = client.get("/metrics")  # no model: the report fails

    assert response.status_code == 200
    assert len(reports) == 1
    assert "flight_delay_http_requests_total" in response.get_data(as_text=True)
