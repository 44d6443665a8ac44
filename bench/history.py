"""Counts a service's history rows; grows its SQLite history to a million rows and times two pages."""

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


def page_timings(url: str, db_path: Path, page_size: int = 50, repeat: int = 15) -> PageTimings:
    """Times the newest page and a page near the oldest end, over HTTP and in process."""
    depth = 1_000
    cursor = deep_cursor(db_path, depth)
    rows = row_count(db_path)
    with requests.Session() as session:
        first = timed(http_page(session, url, {"page_size": page_size}), repeat)
        deep = timed(http_page(session, url, {"page_size": page_size, "cursor": str(cursor)}), repeat)
    count, first_query, deep_query = query_timings(f"sqlite:///{db_path}", page_size, cursor, repeat)
    return PageTimings(rows, page_size, first, deep, rows - depth, count, first_query, deep_query)
