"""Monitoring's figures as Prometheus gauges of the active model, renewed at most every MONITORING_REFRESH_S.

They are not kept in the workers' metric files: each worker renders them at scrape time from the last
report it read (over the last MONITORING_WINDOW_S), so only the active model's series exist; a model
that is no longer active has none. A scrape renews the report first when it is older than the interval
or names another model than the active one; a report only reads the roll-ups (monitoring/report.py),
and every worker reads the same ones. A failed renewal keeps the last figures and is tried again after
the interval.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from flask import Flask
from prometheus_client.core import GaugeMetricFamily, Metric

from flight_delay.history.models import utcnow
from flight_delay.monitoring.report import MonitoringService, floor_hour

log = logging.getLogger(__name__)


class MonitoringGauges:
    """Keeps the active model's last report and renders its live MAE, drift and lag as gauges."""

    def __init__(self, service: MonitoringService) -> None:
        self.service = service
        self.refresh_s = 60.0
        self.window_s = 86400
        self.report: dict[str, Any] | None = None
        self._due = 0.0  # monotonic time of the next renewal
        self._lock = threading.Lock()

    def init_app(self, app: Flask) -> None:
        """Reads the interval and the window from the configuration."""
        self.refresh_s = app.config["MONITORING_REFRESH_S"]
        self.window_s = app.config["MONITORING_WINDOW_S"]
        self.report = None
        self._due = 0.0

    def refresh_if_stale(self) -> None:
        """Renews the report if it is due or of a retired model, unless another thread of this worker is."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if time.monotonic() >= self._due or self._retired():
                self._due = time.monotonic() + self.refresh_s
                self.report = self.service.report(since=self._since())
        except Exception:  # observation only: /metrics answers with the figures it has
            log.warning("monitoring gauges not renewed; next try in %ss", self.refresh_s, exc_info=True)
        finally:
            self._lock.release()

    def _retired(self) -> bool:
        """Whether the report held is of a model that is no longer the active one."""
        return self.report is not None and self.report["model_version"] != self.service.active_version()

    def _since(self) -> Any:
        """The window's start: MONITORING_WINDOW_S ago, on an hour (whole hours come from the roll-ups)."""
        return floor_hour(utcnow() - timedelta(seconds=self.window_s)) if self.window_s else None

    def collect(self) -> Iterator[Metric]:
        """The gauges of the report held (none before the first report)."""
        report = self.report
        if report is not None:
            yield from families(report)


def families(report: dict[str, Any]) -> Iterator[Metric]:
    """The report's figures as metric families labelled with its model version (a null figure: no sample)."""
    version = report["model_version"]
    actuals = GaugeMetricFamily(
        "flight_delay_live_actuals",
        "Predictions with an actual over MONITORING_WINDOW_S (what the live MAE rests on)",
        labels=["model_version"],
    )
    actuals.add_metric([version], report["live"]["count"])
    mae = GaugeMetricFamily(
        "flight_delay_live_mae",
        "MAE (minutes) of the predictions with an actual, over MONITORING_WINDOW_S",
        labels=["model_version"],
    )
    if report["live"]["mae"] is not None:
        mae.add_metric([version], report["live"]["mae"])
    drift = GaugeMetricFamily(
        "flight_delay_drift_psi",
        "Population stability index over MONITORING_WINDOW_S against the training profile, per feature "
        'and for the prediction (field="prediction")',
        labels=["model_version", "field"],
    )
    for name, figures in (report["drift"] or {}).items():
        drift.add_metric([version, name], figures["psi"])
    lag = GaugeMetricFamily(
        "flight_delay_monitoring_lag_seconds",
        "How far behind now the roll-ups the figures come from are",
        labels=["model_version"],
    )
    lag.add_metric([version], report["freshness"]["lag_seconds"])
    yield from (actuals, mae, drift, lag)
