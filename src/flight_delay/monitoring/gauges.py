"""Monitoring's figures as Prometheus gauges, renewed at most every MONITORING_REFRESH_S.

A scrape that finds them older than that renews them first (one report, for the active model over the
last MONITORING_WINDOW_S), so scrapes cost a report per interval and per worker, never one each. A
failed renewal keeps the last figures and is tried again after the interval.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from flask import Flask

from flight_delay.history.models import utcnow
from flight_delay.monitoring.report import MonitoringService
from flight_delay.observability.metrics import DRIFT_PSI, LIVE_ACTUALS, LIVE_MAE

log = logging.getLogger(__name__)


class MonitoringGauges:
    """Renews the live MAE and drift PSI gauges from a monitoring report when they are stale."""

    def __init__(self, service: MonitoringService) -> None:
        self.service = service
        self.refresh_s = 60.0
        self.window_s = 86400
        self._due = 0.0  # monotonic time of the next renewal
        self._lock = threading.Lock()

    def init_app(self, app: Flask) -> None:
        """Reads the interval and the window from the configuration."""
        self.refresh_s = app.config["MONITORING_REFRESH_S"]
        self.window_s = app.config["MONITORING_WINDOW_S"]
        self._due = 0.0

    def refresh_if_stale(self) -> None:
        """Renews the gauges if they are due and no other thread of this worker is renewing them."""
        now = time.monotonic()
        if now < self._due or not self._lock.acquire(blocking=False):
            return
        try:
            self._due = now + self.refresh_s
            since = utcnow() - timedelta(seconds=self.window_s) if self.window_s else None
            publish(self.service.report(since=since))
        except Exception:  # observation only: /metrics answers with the figures it has
            log.warning("monitoring gauges not renewed; next try in %ss", self.refresh_s, exc_info=True)
        finally:
            self._lock.release()


def publish(report: dict[str, Any]) -> None:
    """Sets the gauges of the report's model version (a figure that is null is left unset)."""
    version = report["model_version"]
    live = report["live"]
    LIVE_ACTUALS.labels(version).set(live["count"])
    if live["mae"] is not None:
        LIVE_MAE.labels(version).set(live["mae"])
    for field, figures in (report["drift"] or {}).items():
        DRIFT_PSI.labels(version, field).set(figures["psi"])
