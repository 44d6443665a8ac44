"""Monitoring's SQL on both backends: actuals written and aggregated, the roll-ups read and written under
their marks, and a range of the history streamed to be counted (monitoring/binning.py).

Live accuracy is an aggregate the database computes over an index; counting the bins of a range reads
its rows once, a batch at a time (the roll-up job: a chunk; a report: its partial hours and the rows
after the mark).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, and_, cast, func, literal_column, select, true, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from flight_delay.history.models import (
    Actual,
    InputCount,
    LiveCount,
    ModelActivation,
    ModelVersion,
    Prediction,
    RollupMark,
)
from flight_delay.monitoring.binning import Counted, batch_of, count_batch, reads_input
from flight_delay.monitoring.measures import ModelMeasures

SCAN_BATCH = 10_000  # rows read at a time when counting a range: bounds the memory a count takes
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


def model_versions(session: Session) -> list[str]:
    """Every model version ever loaded here."""
    return list(session.execute(select(ModelVersion.version).order_by(ModelVersion.created_at)).scalars())


def first_prediction_at(session: Session, version: str) -> datetime | None:
    """When a model's first recorded prediction was made (its index finds it at once); None: none yet."""
    first = select(Prediction.created_at).where(Prediction.model_version == version)
    return session.execute(first.order_by(Prediction.id).limit(1)).scalar()


def _dialect_insert(session: Session, table: Any) -> Any:
    """An INSERT with ON CONFLICT clauses, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def error_sums(error: Any) -> list[Any]:
    """An error expression's count, sums of |error|, error² and error (0 without rows): LiveFigures' order."""
    return [
        func.count().label("count"),
        func.coalesce(func.sum(func.abs(error)), 0.0).label("abs_error"),
        func.coalesce(func.sum(error * error), 0.0).label("squared_error"),
        func.coalesce(func.sum(error), 0.0).label("error"),
    ]


def figures_of(row: Any) -> LiveFigures:
    """The LiveFigures of a row that selected error_sums (first)."""
    return LiveFigures(int(row[0]), float(row[1]), float(row[2]), float(row[3]))


def live_figures(session: Session, version: str, window: Range) -> LiveFigures:
    """Aggregates the errors (predicted - actual) of the window's predictions that have an actual."""
    row = session.execute(
        select(*error_sums(Actual.predicted - Actual.arr_delay)).where(
            Actual.model_version == version, in_range(Actual.predicted_at, window)
        )
    ).one()
    return figures_of(row)


def live_sums(statement: Any) -> list[Any]:
    """The count and error sums an aggregate over actuals selects, beside its other columns."""
    return [*statement, *error_sums(Actual.predicted - Actual.arr_delay)]


def hourly_live(session: Session, version: str, predicted: Range) -> Iterator[tuple[datetime, LiveFigures]]:
    """Live accuracy's sums per hour of prediction over a range, from actuals' covering index."""
    hour = hour_text(session, Actual.predicted_at).label("hour")
    statement = (
        select(*live_sums([hour]))
        .where(Actual.model_version == version, in_range(Actual.predicted_at, predicted))
        .group_by("hour")
    )
    for row in session.execute(statement):
        figures = LiveFigures(
            int(row.count), float(row.abs_error), float(row.squared_error), float(row.error)
        )
        yield parse_hour(row.hour), figures


def touched_hours(session: Session, version: str, recorded: Range) -> set[datetime]:
    """The hours of prediction whose actuals were recorded (or replaced) within a range of recording time."""
    hour = hour_text(session, Actual.predicted_at)
    statement = select(hour).where(Actual.model_version == version, in_range(Actual.recorded_at, recorded))
    return {parse_hour(text) for text in session.execute(statement.distinct()).scalars()}


def rolled_live(
    session: Session, version: str, hours: Range, only: Sequence[datetime] | None = None
) -> LiveFigures:
    """The rolled-up live sums of a model over whole hours (or over the `only` hours among them)."""
    columns = (func.sum(LiveCount.count), func.sum(LiveCount.abs_error), func.sum(LiveCount.squared_error))
    where = [LiveCount.model_version == version, in_range(LiveCount.hour, hours)]
    if only is not None:
        where.append(LiveCount.hour.in_(list(only)))
    row = session.execute(select(*columns, func.sum(LiveCount.error)).where(*where)).one()
    return LiveFigures(int(row[0] or 0), float(row[1] or 0.0), float(row[2] or 0.0), float(row[3] or 0.0))


def replace_live(session: Session, version: str, hours: Iterable[tuple[datetime, LiveFigures]]) -> None:
    """Stores hours' live sums, replacing what an hour held (it was recomputed whole)."""
    rows = [
        {
            "model_version": version,
            "hour": hour,
            "count": f.count,
            "abs_error": f.abs_error,
            "squared_error": f.squared_error,
            "error": f.error,
        }
        for hour, f in hours
    ]
    if not rows:
        return
    insert = _dialect_insert(session, LiveCount.__table__)
    replaced = {name: insert.excluded[name] for name in ("count", "abs_error", "squared_error", "error")}
    statement = insert.on_conflict_do_update(index_elements=["model_version", "hour"], set_=replaced)
    session.connection().execute(statement, rows)


def add_counts(session: Session, rows: Sequence[Mapping[str, Any]]) -> None:
    """Adds counted rows per (model, hour, field, bin) to what the hour already holds."""
    if not rows:
        return
    table = InputCount.__table__
    insert = _dialect_insert(session, table)
    statement = insert.on_conflict_do_update(
        index_elements=["model_version", "hour", "field", "bin"],
        set_={"rows": table.c.rows + insert.excluded.rows},
    )
    session.connection().execute(statement, list(rows))


def in_range(column: Any, window: Range) -> ColumnElement[bool]:
    """`column` within [since, until), either end possibly open."""
    since, until = window
    conditions = [column >= since] if since is not None else []
    if until is not None:
        conditions.append(column < until)
    return and_(*conditions) if conditions else true()


def hour_text(session: Session, column: Any = Prediction.created_at) -> ColumnElement[str]:
    """The UTC hour of a time column as text, 'YYYY-MM-DD HH', on either backend."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    return func.substr(column, 1, 13)  # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC


def parse_hour(text: str) -> datetime:
    """Reads an hour_text value back as an aware UTC datetime."""
    return datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC)


def counted_bins(
    session: Session, version: str, model: ModelMeasures, window: Range, hourly: bool
) -> Counted:
    """Counts the predictions of `window` per bin of each of the model's measures, in one streamed scan.

    Keys (hour text, or None when not hourly; measure; bin) -> rows.
    """
    hour = hour_text(session) if hourly else literal_column("NULL")
    columns = [hour, cast(Prediction.features, Text), Prediction.arr_delay]
    with_inputs = reads_input(model.measures)
    if with_inputs:
        columns.append(cast(Prediction.input, Text))
    # `model_version || ''`: a condition no index answers, so that the time index reads the range (a
    # model's own index would read all its rows: SQLite, without statistics, would pick it).
    where = and_((Prediction.model_version + "") == version, in_range(Prediction.created_at, window))
    counted: Counted = Counter()
    # Core, not the ORM's loading: nothing to build but plain rows, streamed a batch at a time.
    result = (
        session.connection().execution_options(yield_per=SCAN_BATCH).execute(select(*columns).where(where))
    )
    for rows in result.partitions():
        count_batch(model.measures, batch_of(rows, model.width, with_inputs), counted)
    return counted


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
