"""Writes predictions to the history and reads it back newest first, a keyset page at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.orm import Session

from flight_delay.history.models import Heartbeat, Prediction

HEARTBEAT_ID = 1


@dataclass(frozen=True)
class HistoryQuery:
    """Which predictions to list: filters, a page size and the cursor of the previous page."""

    page_size: int = 50
    before_id: int | None = None
    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class HistoryPage:
    """One page of the history and where the next one starts."""

    items: list[Prediction]
    total: int
    next_before_id: int | None


def record_predictions(session: Session, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Inserts prediction rows in one statement and returns their ids in the order given."""
    statement = insert(Prediction).returning(Prediction.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, list(rows)))


def _filtered(statement: Select[Any], query: HistoryQuery) -> Select[Any]:
    """Applies the query's filters (not the cursor) to a statement over predictions."""
    if query.model_version is not None:
        statement = statement.where(Prediction.model_version == query.model_version)
    if query.since is not None:
        statement = statement.where(Prediction.created_at >= query.since)
    if query.until is not None:
        statement = statement.where(Prediction.created_at < query.until)
    return statement


def find_predictions(session: Session, query: HistoryQuery) -> HistoryPage:
    """Returns the page of predictions after the cursor, newest first, with the filtered total."""
    page = _filtered(select(Prediction), query)
    if query.before_id is not None:
        page = page.where(Prediction.id < query.before_id)
    rows = list(session.scalars(page.order_by(Prediction.id.desc()).limit(query.page_size + 1)))
    total = session.scalar(_filtered(select(func.count(Prediction.id)), query)) or 0
    has_more = len(rows) > query.page_size
    items = rows[: query.page_size]
    return HistoryPage(items=items, total=total, next_before_id=items[-1].id if has_more else None)


def beat(session: Session, now: datetime) -> None:
    """Rewrites the heartbeat row (recreating it if it was deleted)."""
    updated = session.execute(update(Heartbeat).where(Heartbeat.id == HEARTBEAT_ID).values(beat_at=now))
    if updated.rowcount == 0:
        session.add(Heartbeat(id=HEARTBEAT_ID, beat_at=now))
