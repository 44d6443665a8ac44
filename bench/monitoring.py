"""The monitoring report on a large history: `python -m bench.monitoring [--rows N] [--database-url URL]`.

Fills one database (a fresh SQLite file, or the given PostgreSQL database) with N predictions of real
flights spread over the last 30 days, each with an actual, then times GET /model/monitoring/'s report
in process: the first one (it rolls up every finished hour), then warm ones over all time and over the
last 7 days. `make bench/monitoring` runs it on a SQLite file and on a throwaway PostgreSQL server
(analyzed after the fill, as autovacuum would; SQLite gets no ANALYZE, as in service).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import make_url, text

from flight_delay.artifact import to_bundle
from flight_delay.data.nycflights import build_dataset
from flight_delay.features import INPUT_FIELDS
from flight_delay.history.database import Database, sqlite_file
from flight_delay.history.migrate import upgrade
from flight_delay.history.repository import WRITTEN_COLUMNS, stored_values
from flight_delay.monitoring.report import MonitoringService
from flight_delay.serving.registry import ModelRegistry
from flight_delay.training.lightgbm_trainer import train_model

SPAN = timedelta(days=30)
CHUNK = 50_000
ACTUAL_COLUMNS = ("history_id", "model_version", "predicted_at", "predicted", "arr_delay", "recorded_at")


def activate_model(db: Database, store: Path) -> str:
    """Trains a small model on real January-October flights and makes it the active one."""
    flights = build_dataset()
    late = flights["month"].isin((11, 12))
    model = train_model(flights[~late].sample(20_000, random_state=0), flights[late].sample(2_000), rounds=20)
    registry = ModelRegistry().configure(store, db)
    return registry.activate_upload(to_bundle(model), "bench.lgbm.json").version


def real_inputs(count: int) -> list[dict[str, Any]]:
    """Inputs of real flights of the whole year, as the API records them."""
    flights = build_dataset().sample(count, random_state=2, replace=True)
    return json.loads(flights[list(INPUT_FIELDS)].to_json(orient="records"))


def rows(version: str, total: int, inputs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """History rows ending now, spread evenly over SPAN; the predicted delay varies with the flight."""
    start = datetime.now(UTC) - SPAN
    step = SPAN / total
    for i, flight in zip(range(total), itertools.cycle(inputs), strict=False):
        created_at = start + step * i
        yield {
            "created_at": created_at,
            "request_id": f"bench-monitoring-{i}",
            "model_version": version,
            "input": flight,
            "arr_delay": (flight["dep_delay"] or 0.0) * 0.9 + (i % 13),
            "latency_ms": 1.0,
        }


def actual_of(history_id: int, row: dict[str, Any]) -> tuple[Any, ...]:
    """The actuals row of a history row: an actual a few minutes off the prediction."""
    actual = row["arr_delay"] + (history_id % 21) - 10
    return history_id, row["model_version"], row["created_at"], row["arr_delay"], actual, row["created_at"]


def fill(db: Database, version: str, total: int) -> float:
    """Writes `total` predictions and their actuals in bulk; returns the seconds it took."""
    started = time.perf_counter()
    dialect = db.bound_engine().dialect
    source = rows(version, total, real_inputs(20_000))
    next_id = 1
    while chunk := list(itertools.islice(source, CHUNK)):
        history = stored_values(chunk, dialect)
        actuals = [actual_of(next_id + i, row) for i, row in enumerate(chunk)]
        write = write_sqlite if dialect.name == "sqlite" else write_postgres
        write(db, next_id, history, actuals)
        next_id += len(chunk)
    if dialect.name == "postgresql":
        settle_postgres(db)
    return time.perf_counter() - started


def settle_postgres(db: Database) -> None:
    """VACUUM ANALYZE, as autovacuum does after a large insert: without statistics the planner guesses."""
    with db.bound_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE predictions, actuals"))


def write_sqlite(db: Database, first_id: int, history: list[tuple], actuals: list[tuple]) -> None:
    """Inserts a chunk into the SQLite file directly (bulk set-up, not what is measured)."""
    with sqlite3.connect(db.sqlite_path(), timeout=60) as connection:
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.executemany(
            f"INSERT INTO predictions (id, {', '.join(WRITTEN_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join('?' * (len(WRITTEN_COLUMNS) + 1))})",
            [(first_id + i, *row) for i, row in enumerate(history)],
        )
        stamp = db.bound_engine().dialect  # actuals' times as the ORM stores them
        times = stored_values([{**_blank(), "created_at": a[2]} for a in actuals], stamp)
        connection.executemany(
            f"INSERT INTO actuals ({', '.join(ACTUAL_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
            [(a[0], a[1], t[0], a[3], a[4], t[0]) for a, t in zip(actuals, times, strict=True)],
        )


def _blank() -> dict[str, Any]:
    """A history row's other values, for converting times alone through stored_values."""
    return {"request_id": "", "model_version": "", "input": {}, "arr_delay": 0.0, "latency_ms": 0.0}


def write_postgres(db: Database, first_id: int, history: list[tuple], actuals: list[tuple]) -> None:
    """Copies a chunk into PostgreSQL with COPY (ids from the sequence: they follow the chunks' order)."""
    raw = db.bound_engine().raw_connection()
    try:
        with raw.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY predictions ({', '.join(WRITTEN_COLUMNS)}) FROM STDIN") as copy:
                for row in history:
                    copy.write_row(row)
            with cursor.copy(f"COPY actuals ({', '.join(ACTUAL_COLUMNS)}) FROM STDIN") as copy:
                for row in actuals:
                    copy.write_row(row)
        raw.driver_connection.commit()
    finally:
        raw.close()


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median seconds of `repeat` calls, and the last answer."""
    samples, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        answer = call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), answer


def measure(url: str, total: int, work: Path) -> dict[str, Any]:
    """Fills the database, then times the first report and warm ones."""
    upgrade(url)
    db = Database().bind(url)
    try:
        version = activate_model(db, work / "models")
        fill_s = fill(db, version, total)
        service = MonitoringService(db)
        first_s, _ = timed(service.report, 1)
        all_time_s, report = timed(service.report, 5)
        week = datetime.now(UTC) - timedelta(days=7)
        week_s, _ = timed(lambda: service.report(since=week), 5)
    finally:
        db.dispose()
    drifted = sorted(name for name, f in (report["drift"] or {}).items() if f["drifted"])
    return {
        "backend": make_url(url).get_backend_name(),
        "rows": report["predictions"],
        "with_actual": report["live"]["count"],
        "fill_seconds": fill_s,
        "first_report_seconds": first_s,
        "report_seconds": all_time_s,
        "last_7_days_seconds": week_s,
        "drifted": drifted,
    }


def main(argv: list[str] | None = None) -> None:
    """Parses the options, measures one database and prints the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.monitoring", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="predictions in the history")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a new SQLite file)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="flight-delay-bench-monitoring-"))
    url = args.database_url or f"sqlite:///{work / 'monitoring.db'}"
    assert args.database_url or sqlite_file(url) is not None
    try:
        figures = measure(url, args.rows, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"monitoring on {figures['backend']}: {figures['rows']:,} predictions "
        f"({figures['with_actual']:,} with an actual; filled in {figures['fill_seconds']:.0f} s)\n"
        f"  first report {figures['first_report_seconds']:.2f} s (rolls up every finished hour)\n"
        f"  then {figures['report_seconds']:.3f} s over all time, "
        f"{figures['last_7_days_seconds']:.3f} s over the last 7 days\n"
        f"  drifted: {', '.join(figures['drifted']) or 'none'}",
        flush=True,
    )


if __name__ == "__main__":
    main()
