"""Writes predictions to the history and reads it back newest first, a keyset page at a time.

Newest first is by (created_at, id): every filter has an index ending with those two columns
(history/models.py), so a page of any filter, however deep, is one index range read in order, and
its total is counted up to TOTAL_CAP rows only. A cursor is the id of the last row of a page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Dialect, Select, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from flight_delay.history.database import Database, json_text
from flight_delay.history.models import Heartbeat, Prediction

HEARTBEAT_ID = 1
# A page's total counts at most this many matching rows (then says it is capped): bounded per page.
TOTAL_CAP = 10_000


@dataclass(frozen=True)
class HistoryQuery:
    """Which predictions to list: filters, a page size and the cursor of the previous page."""

    page_size: int = 50
    before_id: int | None = None
    model_version: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class HistoryPage:
    """One page of the history and where the next one starts."""

    items: list[Prediction]
    total: int  # the matching rows, at most TOTAL_CAP
    next_before_id: int | None
    total_capped: bool = False  # more than TOTAL_CAP rows match


# What a prediction row is written with (the id is the database's, or numbered on SQLite).
WRITTEN_COLUMNS = (
    "created_at",
    "request_id",
    "model_version",
    "input",
    "arr_delay",
    "latency_ms",
    "protocol",
    "features",
    "shadow_of",
)
PREDICTIONS = Prediction.__table__
INSERT_RETURNING_IDS = insert(PREDICTIONS).returning(PREDICTIONS.c.id, sort_by_parameter_order=True)
# Built from the table's own names (no input reaches them); the values are bound parameters.
SQLITE_INSERT = (
    f"INSERT INTO {PREDICTIONS.name} (id, {', '.join(WRITTEN_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * (len(WRITTEN_COLUMNS) + 1))})"
)
SQLITE_NEXT_ID = f"SELECT coalesce(max(id), 0) + 1 FROM {PREDICTIONS.name}"  # noqa: S608
# Each written column's type, read back from the JSON text PostgreSQL is sent (input and features
# travel as JSON text, as the ORM writes them, and become jsonb there).
WRITTEN_TYPES = ("timestamptz", "varchar", "varchar", "jsonb", "float8", "float8", "varchar", "jsonb", "int8")
# One statement for any number of rows (so PostgreSQL prepares it once), one parameter: the rows as a
# JSON array of arrays, which orjson writes far faster than psycopg dumps an array a column. Inserted
# in the array's order, so the ids the sequence hands out, sorted, follow the rows (as SQLAlchemy's
# sort_by_parameter_order assumes of an autoincrement key).
POSTGRES_INSERT = (
    f"INSERT INTO {PREDICTIONS.name} ({', '.join(WRITTEN_COLUMNS)}) "  # noqa: S608
    f"SELECT {', '.join(f'(item ->> {n})::{kind}' for n, kind in enumerate(WRITTEN_TYPES))} "
    "FROM json_array_elements(%s::json) WITH ORDINALITY AS written(item, position) "
    "ORDER BY position RETURNING id"
)


def insert_predictions(db: Database, rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Inserts prediction rows in one committed transaction; returns their ids in the order given."""
    engine = db.bound_engine()
    if engine.dialect.name == "sqlite":
        return insert_sqlite_rows(db, stored_values(rows, engine.dialect))
    with engine.begin() as connection:
        return list(connection.execute(INSERT_RETURNING_IDS, list(rows)).scalars())


def stored_values(rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> list[tuple[Any, ...]]:
    """Converts rows to the dialect's stored values, in WRITTEN_COLUMNS order (SQLite: JSON, time as text).

    The created_at column's own conversion, and JSON as text by the engines' serializer (json_text):
    rows read back as if the ORM had written them. Plain text and numbers whatever the dialect, so
    that they travel as they are to the host's history writer and inside PostgreSQL's JSON parameter.
    """
    convert_time = _time_processor(dialect)
    stamps: dict[datetime, Any] = {}  # the rows of one request share their timestamp
    parameters = []
    for row in rows:
        created_at = row["created_at"]
        if created_at not in stamps:
            stamps[created_at] = convert_time(created_at)
        parameters.append(
            (
                stamps[created_at],
                row["request_id"],
                row["model_version"],
                json_text(row["input"]),
                float(row["arr_delay"]),
                float(row["latency_ms"]),
                row.get("protocol", "native"),
                _features_text(row.get("features")),
                row.get("shadow_of"),  # a shadow version's row: the served prediction it shadows
            )
        )
    return parameters


def _features_text(features: Any) -> str | None:
    """The recorded features as JSON text (NaN, an unseen category's code, as null), or NULL without any."""
    return None if features is None else json_text(features)


def postgres_rows(rows: Sequence[Mapping[str, Any]], dialect: Dialect) -> str:
    """The rows' values as POSTGRES_INSERT's one parameter: a JSON array of the stored values, row by row."""
    return orjson.dumps(stored_values(rows, dialect)).decode()


def insert_sqlite_rows(db: Database, parameters: Sequence[Sequence[Any]]) -> list[int]:
    """Numbers converted rows after the largest id and inserts them with one executemany, committed.

    SQLAlchemy inserts one statement per row when it must return ids in order on SQLite. Numbering
    them here is safe because the write lock is held from before the SELECT (BEGIN IMMEDIATE).
    """
    with db.sqlite_writing() as driver:
        first = driver.execute(SQLITE_NEXT_ID).fetchone()[0]
        driver.executemany(SQLITE_INSERT, [(first + i, *row) for i, row in enumerate(parameters)])
    return list(range(first, first + len(parameters)))


@functools.cache
def _time_processor(dialect: Dialect) -> Callable[[Any], Any]:
    """The created_at column's own conversion for the dialect (a UTC timestamp; text on SQLite).

    JSON is not the column type's to convert: psycopg's conversion wraps a value for psycopg to dump.
    """
    return PREDICTIONS.c["created_at"].type.dialect_impl(dialect).bind_processor(dialect)


def _filtered(statement: Select[Any], query: HistoryQuery) -> Select[Any]:
    """Applies the query's filters (not the cursor) to a statement over predictions."""
    if query.model_version is not None:
        statement = statement.where(Prediction.model_version == query.model_version)
    if query.request_id is not None:
        statement = statement.where(Prediction.request_id == query.request_id)
    if query.since is not None:
        statement = statement.where(Prediction.created_at >= query.since)
    if query.until is not None:
        statement = statement.where(Prediction.created_at < query.until)
    return statement


def find_predictions(session: Session, query: HistoryQuery) -> HistoryPage:
    """Returns the page of predictions after the cursor, newest first, with the total up to TOTAL_CAP."""
    page = _filtered(select(Prediction), query)
    if query.before_id is not None:
        position = _cursor_position(session, query.before_id)
        if position is None:  # no row at or before the cursor: nothing older
            return HistoryPage(items=[], total=0, next_before_id=None)
        page = page.where(tuple_(Prediction.created_at, Prediction.id) < position)
    newest_first = (Prediction.created_at.desc(), Prediction.id.desc())
    rows = list(session.scalars(page.order_by(*newest_first).limit(query.page_size + 1)))
    matching = _filtered(select(Prediction.id), query).limit(TOTAL_CAP + 1).subquery()
    total = session.scalar(select(func.count()).select_from(matching)) or 0
    has_more = len(rows) > query.page_size
    items = rows[: query.page_size]
    return HistoryPage(
        items=items,
        total=min(total, TOTAL_CAP),
        next_before_id=items[-1].id if has_more else None,
        total_capped=total > TOTAL_CAP,
    )


def _cursor_position(session: Session, before_id: int) -> tuple[datetime, int] | None:
    """Where a cursor stands in (created_at, id) order: its row's time, or the nearest lower id's.

    Rows come after it when (created_at, id) < (that time, cursor): the cursor's own row is not
    listed again, and a cursor naming no row (a crafted one) lists what `id < cursor` reaches there.
    """
    latest = (
        select(Prediction.created_at)
        .where(Prediction.id <= before_id)
        .order_by(Prediction.id.desc())
        .limit(1)
    )
    created_at = session.scalar(latest)
    return None if created_at is None else (created_at, before_id)


def beat(session: Session, now: datetime) -> None:
    """Rewrites the heartbeat row (recreating it if it was deleted)."""
    updated = session.execute(update(Heartbeat).where(Heartbeat.id == HEARTBEAT_ID).values(beat_at=now))
    if updated.rowcount == 0:
        session.add(Heartbeat(id=HEARTBEAT_ID, beat_at=now))
