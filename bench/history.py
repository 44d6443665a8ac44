"""The history's cost: a service's rows counted, its pages timed; each filter timed on either backend.

`make bench` grows a served SQLite history to a million rows and times two pages (page_timings).
`python -m bench.history [--rows N] [--database-url URL] [--from-revision REV]` fills a fresh
database (SQLite, or the given PostgreSQL one) with N rows of two model versions over 30 days and
times a page of each filter as GET /model/history/ reads it (with --from-revision, it fills at that
revision and times the upgrade to head first). Figures: bench/PROFILE.md, session 10.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, func, select, text

from flight_delay.history.database import Database
from flight_delay.history.models import Prediction
from flight_delay.history.repository import HistoryQuery, find_predictions

# How SQLAlchemy stores a DateTime in SQLite; the template row proves it (see `fill`).
SQLITE_DATETIME = "%Y-%m-%d %H:%M:%S.%f"
INSERT = (
    "INSERT INTO predictions (created_at, request_id, model_version, input, arr_delay, latency_ms) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
CHUNK = 50_000


def template_row(db_path: Path) -> tuple[Any, ...]:
    """Reads the newest row the service wrote itself, to copy its model version and formats."""
    with sqlite3.connect(db_path) as connection:
        row = connection.execute(
            "SELECT created_at, model_version, arr_delay, latency_ms "
            "FROM predictions ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        raise RuntimeError("the service has written no history yet; fill needs one real row to copy")
    datetime.strptime(row[0], SQLITE_DATETIME)  # raises if the service stores dates otherwise
    return row


def synthetic_rows(template: tuple[Any, ...], inputs: list[str], count: int) -> Iterator[tuple[Any, ...]]:
    """Yields history rows like the template: real flight inputs, one request id and time each."""
    _, version, arr_delay, latency_ms = template
    start = datetime.now(UTC).replace(tzinfo=None)
    for i, payload in zip(range(count), itertools.cycle(inputs), strict=False):
        created_at = (start + timedelta(milliseconds=i)).strftime(SQLITE_DATETIME)
        yield created_at, f"bench-fill-{i:09d}", version, payload, arr_delay, latency_ms


def row_count(db_path: Path) -> int:
    """Counts the rows of the history."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute("SELECT count(*) FROM predictions").fetchone()[0]


def recorded_rows(database_url: str) -> int:
    """Counts the history's rows on either backend: how the harness checks every answer was recorded."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.scalar(text("SELECT count(*) FROM predictions")) or 0
    finally:
        engine.dispose()


def fill(db_path: Path, flights: list[dict[str, Any]], total: int) -> int:
    """Adds rows until the history holds `total`; returns how many were added."""
    missing = total - row_count(db_path)
    if missing <= 0:
        return 0
    rows = synthetic_rows(template_row(db_path), [json.dumps(f) for f in flights], missing)
    with sqlite3.connect(db_path, timeout=60) as connection:
        # Bulk set-up, not what is measured: fewer fsyncs, a larger page cache for the indexes.
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA cache_size=-262144")
        while chunk := list(itertools.islice(rows, CHUNK)):
            connection.executemany(INSERT, chunk)
            connection.commit()
    return missing


def deep_cursor(db_path: Path, depth: int) -> int:
    """Returns the cursor whose page is `depth` rows from the oldest end of the history."""
    with sqlite3.connect(db_path) as connection:
        return connection.execute("SELECT min(id) FROM predictions").fetchone()[0] + depth


def timed(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of `repeat` calls after one warm-up call."""
    fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


@dataclass(frozen=True)
class PageTimings:
    """Median times of history pages over HTTP, and of their two queries in process."""

    rows: int
    page_size: int
    first_page: float
    deep_page: float
    deep_rows_skipped: int
    count_query: float
    first_page_query: float
    deep_page_query: float

    @property
    def ratio(self) -> float:
        """Deep page time over first page time."""
        return self.deep_page / self.first_page


def http_page(session: requests.Session, url: str, params: dict[str, Any]) -> Callable[[], Any]:
    """Returns a call that fetches one history page and checks it is full."""

    def get() -> None:
        answer = session.get(f"{url}/model/history/", params=params, timeout=60)
        answer.raise_for_status()
        if len(answer.json()["items"]) != params["page_size"]:
            raise RuntimeError(f"history page {params} is not full")

    return get


def query_timings(db_url: str, page_size: int, cursor: int, repeat: int) -> tuple[float, float, float]:
    """Times in process: the filtered count alone, the first page and the deep page (both with count)."""
    db = Database().bind(db_url)
    try:

        def count() -> int:
            with db.transaction() as session:
                return session.scalar(select(func.count(Prediction.id))) or 0

        def page(before_id: int | None) -> Callable[[], Any]:
            def run() -> Any:
                with db.transaction() as session:
                    return find_predictions(session, HistoryQuery(page_size=page_size, before_id=before_id))

            return run

        return timed(count, repeat), timed(page(None), repeat), timed(page(cursor), repeat)
    finally:
        db.dispose()


def page_timings(
    url: str, db_path: Path, headers: dict[str, str], page_size: int = 50, repeat: int = 15
) -> PageTimings:
    """Times the newest page and a page near the oldest end, over HTTP (a reading token) and in process."""
    depth = 1_000
    cursor = deep_cursor(db_path, depth)
    rows = row_count(db_path)
    with requests.Session() as session:
        session.headers.update(headers)
        first = timed(http_page(session, url, {"page_size": page_size}), repeat)
        deep = timed(http_page(session, url, {"page_size": page_size, "cursor": str(cursor)}), repeat)
    count, first_query, deep_query = query_timings(f"sqlite:///{db_path}", page_size, cursor, repeat)
    return PageTimings(rows, page_size, first, deep, rows - depth, count, first_query, deep_query)


# --- `python -m bench.history`: the filters on a large history, in process, on either backend -------

FILTER_SPAN = timedelta(days=30)
OLD_SHARE = 0.2  # the oldest rows were served by an older model, the rest by the active one


def filter_rows(
    versions: tuple[str, str], total: int, flights: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """History rows ending now, evenly over FILTER_SPAN; the oldest OLD_SHARE by the older model."""
    start = datetime.now(UTC) - FILTER_SPAN
    step = FILTER_SPAN / total
    for i, flight in zip(range(total), itertools.cycle(flights), strict=False):
        yield {
            "created_at": start + step * i,
            "request_id": f"bench-history-{i}",
            "model_version": versions[0] if i < total * OLD_SHARE else versions[1],
            "input": flight,
            "arr_delay": 1.0,
            "latency_ms": 1.0,
        }


def fill_any(db: Database, total: int, flights: list[dict[str, Any]]) -> tuple[str, str]:
    """Writes `total` rows of two model versions in bulk (SQLite executemany, PostgreSQL COPY)."""
    from flight_delay.history.database import insert_absent
    from flight_delay.history.models import ModelVersion, utcnow
    from flight_delay.history.repository import WRITTEN_COLUMNS, stored_values

    versions = ("a" * 64, "b" * 64)
    with db.transaction() as session:
        for version in versions:
            row = {
                "version": version,
                "kind": "bench",
                "size_bytes": 0,
                "details": {},
                "created_at": utcnow(),
            }
            insert_absent(session, ModelVersion, row)
    dialect = db.bound_engine().dialect
    source = filter_rows(versions, total, flights)
    next_id = 1
    while chunk := list(itertools.islice(source, CHUNK)):
        values = stored_values(chunk, dialect)
        if dialect.name == "sqlite":
            with sqlite3.connect(db.sqlite_path(), timeout=60) as connection:
                connection.execute("PRAGMA synchronous=NORMAL")
                marks = ", ".join("?" * (len(WRITTEN_COLUMNS) + 1))
                connection.executemany(
                    f"INSERT INTO predictions (id, {', '.join(WRITTEN_COLUMNS)}) VALUES ({marks})",  # noqa: S608
                    [(next_id + i, *row) for i, row in enumerate(values)],
                )
        else:
            copy_rows(db, WRITTEN_COLUMNS, values)
        next_id += len(chunk)
    if dialect.name == "postgresql":
        with db.bound_engine().connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("VACUUM ANALYZE predictions"))  # as autovacuum would after the fill
    return versions


def copy_rows(db: Database, columns: tuple[str, ...], values: list[tuple[Any, ...]]) -> None:
    """COPY rows into PostgreSQL's history."""
    raw = db.bound_engine().raw_connection()
    try:
        statement = f"COPY predictions ({', '.join(columns)}) FROM STDIN"
        with raw.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in values:
                copy.write_row(row)
        raw.driver_connection.commit()
    finally:
        raw.close()


def filter_cases(versions: tuple[str, str], total: int) -> dict[str, dict[str, Any]]:
    """The pages to time: HistoryQuery arguments by name (the active model is versions[1])."""
    now = datetime.now(UTC)
    empty_hour = {"since": now - timedelta(days=40), "until": now - timedelta(days=40, hours=-1)}
    one_day = {"since": now - timedelta(days=15), "until": now - timedelta(days=14)}
    week = {"since": now - timedelta(days=7)}
    return {
        "no filter, first page": {},
        "no filter, deep page": {"before_id": 1_000},
        "model_version (active)": {"model_version": versions[1]},
        "model_version (older)": {"model_version": versions[0]},
        "empty 1-hour window": empty_hour,
        "model_version + empty 1-hour window": {"model_version": versions[1], **empty_hour},
        "model_version + a 1-day window": {"model_version": versions[1], **one_day},
        "last 7 days": week,
        "model_version + last 7 days": {"model_version": versions[1], **week},
        "model_version + last 7 days, page 2": {
            "model_version": versions[1],
            "before_id": total - 51,
            **week,
        },
        "request_id": {"request_id": f"bench-history-{total // 2}"},
    }


def filter_timings(
    db: Database, cases: dict[str, dict[str, Any]], repeat: int
) -> dict[str, tuple[float, Any]]:
    """Median seconds of each case's page (as GET /model/history/ reads it), and the total it gave."""
    found = {}
    for name, arguments in cases.items():

        def page(arguments: dict[str, Any] = arguments) -> Any:
            with db.transaction() as session:
                return find_predictions(session, HistoryQuery(page_size=50, **arguments))

        found[name] = (timed(page, repeat), page().total)
    return found


def filters_main(argv: list[str] | None = None) -> None:
    """Fills a database (a new SQLite file, or --database-url) and prints each filter's page time."""
    import argparse
    import shutil
    import tempfile

    from flight_delay.history.migrate import upgrade

    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a new SQLite file)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--from-revision", help="fill at this revision, then time the upgrade to head (e.g. 0004)"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="flight-delay-bench-history-"))
    url = args.database_url or f"sqlite:///{work / 'history.db'}"
    try:
        upgrade(url, args.from_revision or "head")
        db = Database().bind(url)
        flights = [{"carrier": "UA", "dep_delay": float(i % 50), "distance": 1400.0} for i in range(100)]
        started = time.perf_counter()
        versions = fill_any(db, args.rows, flights)
        filled_s = time.perf_counter() - started
        if args.from_revision:
            migrated = time.perf_counter()
            upgrade(url)
            print(
                f"upgrade from {args.from_revision} to head on {args.rows:,} rows: "
                f"{time.perf_counter() - migrated:.1f} s",
                flush=True,
            )
        print(
            f"history on {db.bound_engine().dialect.name}: {args.rows:,} rows, filled in "
            f"{filled_s:.0f} s; median of {args.repeat} pages of 50",
            flush=True,
        )
        for name, (seconds, total) in filter_timings(
            db, filter_cases(versions, args.rows), args.repeat
        ).items():
            print(f"  {name:<40} {seconds * 1000:9.1f} ms   total {total}", flush=True)
        db.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    filters_main()
