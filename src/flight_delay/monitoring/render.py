"""The monitoring report for a terminal: `flight-delay monitor` prints it as a few lines and a table."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def instant(value: datetime | None, open_end: str) -> str:
    """An end of the window in ISO 8601, or what an open end means."""
    return value.isoformat() if value is not None else open_end


def figure(value: float | None) -> str:
    """A figure with two decimals, or a dash when there is none."""
    return "-" if value is None else f"{value:.2f}"


def live_line(live: dict[str, Any]) -> str:
    """One line of live accuracy."""
    return (
        f"live ({live['count']} with an actual): MAE {figure(live['mae'])}  RMSE {figure(live['rmse'])}  "
        f"mean error (predicted - actual) {figure(live['mean_error'])} min"
    )


def drift_lines(report: dict[str, Any]) -> list[str]:
    """The drift table, one field a row, or why there is none."""
    if report["drift"] is None:
        return [f"drift unavailable: {report['drift_unavailable']}"]
    lines = [f"drift (PSI against the training profile; drifted at >= {report['psi_threshold']}):"]
    lines.append(f"  {'field':<16}{'psi':>9}  drifted")
    for name, figures in report["drift"].items():
        flag = "DRIFTED" if figures["drifted"] else "-"
        lines.append(f"  {name:<16}{figures['psi']:>9.4f}  {flag}")
    return lines


def render(report: dict[str, Any]) -> str:
    """The whole report as text."""
    window = report["window"]
    head = [
        f"model {report['model_version']}",
        f"window {instant(window['since'], 'the first prediction')} .. {instant(window['until'], 'now')}",
        f"predictions {report['predictions']}",
        live_line(report["live"]),
    ]
    return "\n".join([*head, *drift_lines(report)])
