"""The versions of the traffic split side by side over one window: the active model, a canary, a shadow.

The active model's and a canary's live figures are those of the predictions they answered (the
actuals carry their version); a shadow answered nothing, so its figures are those of its own
predictions against the actual of the prediction each shadows (`shadow_of`). Same window, same
figures (monitoring/report.py's live section), one aggregate each.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from flight_delay.history.models import Actual, Prediction
from flight_delay.monitoring.queries import (
    LiveFigures,
    Range,
    error_sums,
    figures_of,
    in_range,
    live_figures,
)
from flight_delay.serving.lifecycle import read_traffic


def shadow_live_figures(session: Session, version: str, window: Range) -> LiveFigures:
    """A shadow version's errors: its predictions in the window against the actuals of those they shadow."""
    row = session.execute(
        select(*error_sums(Prediction.arr_delay - Actual.arr_delay))
        .select_from(Prediction)
        .join(Actual, Actual.history_id == Prediction.shadow_of)
        .where(Prediction.model_version == version, in_range(Prediction.created_at, window))
    ).one()
    return figures_of(row)


def split_versions(
    session: Session, window: Range, live_section: Any, known: tuple[str, LiveFigures]
) -> list[dict[str, Any]]:
    """Each version of the split now (active, canary, shadow) with its live figures over the window.

    `known`: a served version's figures the report has already (not counted twice).
    """
    traffic = read_traffic(session)
    roles = (("active", traffic.active), ("canary", traffic.canary), ("shadow", traffic.shadow))
    return [
        {
            "version": version,
            "role": role,
            "live": live_section(figures(session, role, version, window, known)),
        }
        for role, version in roles
        if version is not None
    ]


def figures(
    session: Session, role: str, version: str, window: Range, known: tuple[str, LiveFigures]
) -> LiveFigures:
    """A version's live figures in its role: a shadow's through what it shadowed."""
    if role == "shadow":
        return shadow_live_figures(session, version, window)
    if version == known[0]:
        return known[1]
    return live_figures(session, version, window)
