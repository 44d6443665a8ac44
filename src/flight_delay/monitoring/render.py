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


def reference_line(reference: dict[str, Any]) -> str:
    """What drift is measured against."""
    span = ""
    if reference["first_flight"] is not None:
        span = f" of {reference['first_flight']} .. {reference['last_flight']}"
    mixed = ""
    if reference["at_departure_share"] is not None:
        share = reference["at_departure_share"] * 100
        mixed = f", its bases mixed as the window's ({share:.0f}% at departure)"
    flights = f"{reference['flights']} flights{span}"
    return f"reference: the training profile of its {reference['of']}, {flights}{mixed}"


def drift_lines(report: dict[str, Any]) -> list[str]:
    """The drift table, one feature a row and the prediction, and what of it is unavailable."""
    note = [f"drift unavailable: {report['drift_unavailable']}"] if report["drift_unavailable"] else []
    if report["drift"] is None:
        return note
    lines = [reference_line(report["reference"])]
    lines.append(f"drift (PSI; drifted at >= {report['psi_threshold']}):")
    lines.append(f"  {'of':<11}{'name':<18}{'psi':>9}  drifted")
    for name, figures in report["drift"].items():
        flag = "DRIFTED" if figures["drifted"] else "-"
        lines.append(f"  {figures['of']:<11}{name:<18}{figures['psi']:>9.4f}  {flag}")
    return [*lines, *note]


def freshness_line(freshness: dict[str, Any]) -> str:
    """How current the figures are."""
    rolled = freshness["rolled_up_until"]
    counted = instant(freshness["counted_until"], "now")
    line = f"counted until {counted}; rolled up until {instant(rolled, 'never')}"
    if freshness["lagging"]:
        line += f" (LAGGING by {freshness['lag_seconds'] / 60:.0f} min: later predictions are not counted)"
    return line


def render(report: dict[str, Any]) -> str:
    """The whole report as text."""
    window = report["window"]
    head = [
        f"model {report['model_version']}",
        f"window {instant(window['since'], 'the first prediction')} .. {instant(window['until'], 'now')}",
        freshness_line(report["freshness"]),
        f"predictions {report['predictions']}",
        live_line(report["live"]),
    ]
    return "\n".join([*head, *drift_lines(report)])
