"""Monitoring's SQL: actuals written and aggregated, the history's inputs counted per bin, on both backends.

Every figure is an aggregate the database computes; Python only adds up bins and hours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from flight_delay.history.models import (
    Actual,
    InputCount,
    ModelActivation,
    ModelVersion,
    Prediction,
    RollupMark,
)
from flight_delay.monitoring.profile import FieldProfile

ALL_ROWS = "*"  # the pseudo-field counting every prediction (one bin, 0)
ID_CHUNK = 1_000  # history ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits
Range = tuple[datetime | None, datetime | None]  # [since, until); None: unbounded


@dataclass(frozen=True)
class LiveFigures:
    """Sums over the predictions that have an actual: how many, |error|, error², error."""

    count: int
    abs_error: float
    squared_error: float
    error: float


def active_version(session: Session) -> str | None:
    """The version of the newest activation (None when no model was ever loaded)."""
    newest = select(ModelActivation.version).order_by(ModelActivation.id.desc()).limit(1)
    return session.execute(newest).scalar()


def version_details(session: Session, version: str) -> dict[str, Any] | None:
    """What was recorded of a model version at its first load (None: never loaded here)."""
    return session.execute(select(ModelVersion.details).where(ModelVersion.version == version)).scalar()


def predictions_by_id(session: Session, ids: Sequence[int]) -> dict[int, Any]:
    """The recorded predictions among `ids`: id -> (id, model_version, created_at, arr_delay)."""
    found = {}
    columns = (Prediction.id, Prediction.model_version, Prediction.created_at, Prediction.arr_delay)
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        for row in session.execute(select(*columns).where(Prediction.id.in_(chunk))):
            found[row.id] = row
    return found


def upsert_actuals(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Inserts actuals, replacing the actual delay of a prediction that already has one."""
    insert = _dialect_insert(session, Actual)
    statement = insert.on_conflict_do_update(
        index_elements=[Actual.history_id],
        set_={"arr_delay": insert.excluded.arr_delay, "recorded_at": insert.excluded.recorded_at},
    )
    session.execute(statement, list(rows))


def _dialect_insert(session: Session, table: Any) -> Any:
    """An INSERT with ON CONFLICT clauses, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def live_figures(session: Session, version: str, window: Range) -> LiveFigures:
    """Aggregates the errors (predicted - actual) of the window's predictions that have an actual."""
    error = Actual.predicted - Actual.arr_delay
    row = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(func.abs(error)), 0.0),
            func.coalesce(func.sum(error * error), 0.0),
            func.coalesce(func.sum(error), 0.0),
        ).where(Actual.model_version == version, in_range(Actual.predicted_at, window))
    ).one()
    return LiveFigures(int(row[0]), float(row[1]), float(row[2]), float(row[3]))


def in_range(column: Any, window: Range) -> ColumnElement[bool]:
    """`column` within [since, until), either end possibly open."""
    since, until = window
    conditions = [column >= since] if since is not None else []
    if until is not None:
        conditions.append(column < until)
    return and_(*conditions) if conditions else true()


def bin_key(field: FieldProfile) -> ColumnElement[Any]:
    """A flight's bin key for a field, read from its stored input: a number's bin, a category's value."""
    if field.kind == "category":
        return Prediction.input[field.name].as_string()
    value = Prediction.input[field.name].as_float()
    whens = [(value.is_(None), 0)]
    whens += [(value < edge, index) for index, edge in enumerate(field.edges, start=1)]
    return case(*whens, else_=len(field.edges) + 1)


def bin_of(field: FieldProfile | None, key: Any) -> int:
    """The bin a key of `bin_key` falls in (a category not trained on: the last bin)."""
    if field is None:
        return 0
    if field.kind == "number":
        return int(key)
    try:
        return field.categories.index(key)
    except ValueError:
        return len(field.categories)


def hour_text(session: Session) -> ColumnElement[str]:
    """The UTC hour of a prediction as text, 'YYYY-MM-DD HH', on either backend."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", Prediction.created_at), "YYYY-MM-DD HH24")
    return func.substr(Prediction.created_at, 1, 13)  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC


def parse_hour(text: str) -> datetime:
    """Reads an hour_text value back as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC)


def counted_bins(
    session: Session,
    version: str,
    fields: Iterable[FieldProfile | None],
    window: Range,
    hourly: bool,
) -> Iterator[tuple[str | None, str, int, int]]:
    """Counts the predictions of `window` per bin of each field (None: every row), one GROUP BY each.

    Yields (hour text or None, field name, bin, rows).
    """
    # `model_version || ''`: a condition no index answers, so that the time index reads the range (a
    # model's own index would read all its rows: SQLite, without statistics, would pick it).
    where = and_((Prediction.model_version + "") == version, in_range(Prediction.created_at, window))
    hour = hour_text(session).label("hour") if hourly else literal_column("NULL").label("hour")
    for field in fields:
        key = (bin_key(field) if field is not None else literal_column("0")).label("key")
        grouping = ["hour", "key"] if hourly else ["key"]
        statement = select(hour, key, func.count().label("rows")).where(where).group_by(*grouping)
        name = field.name if field is not None else ALL_ROWS
        for row in session.execute(statement):
            yield row.hour, name, bin_of(field, row.key), int(row.rows)


def rolled_bins(session: Session, version: str, hours: Range) -> Iterator[tuple[str, int, int]]:
    """The rolled-up counts of a model over whole hours: (field, bin, rows) summed over the hours."""
    statement = (
        select(InputCount.field, InputCount.bin, func.sum(InputCount.rows))
        .where(InputCount.model_version == version, in_range(InputCount.hour, hours))
        .group_by(InputCount.field, InputCount.bin)
    )
    for field, bin_index, rows in session.execute(statement):
        yield field, int(bin_index), int(rows)


def rollup_mark(session: Session, version: str) -> datetime | None:
    """Up to when a model's predictions are rolled up (None: never)."""
    marked = select(RollupMark.rolled_until).where(RollupMark.model_version == version)
    return session.execute(marked).scalar()


def advance_mark(session: Session, version: str, seen: datetime | None, target: datetime) -> bool:
    """Moves a model's mark from `seen` to `target` unless another process moved it first."""
    if seen is None:
        insert = _dialect_insert(session, RollupMark).values(model_version=version, rolled_until=target)
        inserted = insert.on_conflict_do_nothing().returning(RollupMark.model_version)
        return session.execute(inserted).first() is not None  # (psycopg reports no rowcount here)
    moved = session.execute(
        update(RollupMark)
        .where(RollupMark.model_version == version, RollupMark.rolled_until == seen)
        .values(rolled_until=target)
        .returning(RollupMark.model_version)
    )
    return moved.first() is not None
