"""The roll-up job: what reports read, kept a chunk at a time, stored once; reports say how current."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from flight_delay.api.services import services_of
from flight_delay.cli import main
from flight_delay.history.models import InputCount, LiveCount, RollupMark
from flight_delay.history.repository import insert_predictions
from flight_delay.monitoring import rollup as rollup_module
from flight_delay.monitoring.queries import advance_mark
from flight_delay.monitoring.report import count_plan
from flight_delay.monitoring.rollup import Rollup
from flight_delay.serving.predictions import PredictionService
from flight_delay.validation import FlightInput
from tests.factories import ADMIN_HEADERS, synthetic_flights
from tests.monitoring_helpers import flights_of, report

START = datetime(2026, 3, 1, 10, 41, tzinfo=UTC)
WINDOW = {"since": "2026-03-01T13:17:00+00:00", "until": "2026-03-02T09:05:30+01:00"}


def at(hour: int, minute: int = 0) -> datetime:
    """An instant on 2026-03-01 (hours past 23 run into the next days)."""
    return datetime(2026, 3, 1, tzinfo=UTC) + timedelta(hours=hour, minutes=minute)


def past_rows(app: Flask, count: int, every: timedelta = timedelta(minutes=7)) -> list[int]:
    """Scores `count` flights with the active model and records them as made from START on; returns ids."""
    frame = synthetic_flights(count, seed=3)
    frame.loc[::2, "dep_delay"] = float("nan")
    flights = [FlightInput(values=f, payload=f) for f in flights_of(frame)]
    services = services_of(app)
    scored = PredictionService().score(services.registry.active(), flights, "past", 0.0, single=False)
    rows = [{**row, "created_at": START + every * i} for i, row in enumerate(scored.rows)]
    return insert_predictions(services.db, rows)


def roll(app: Flask, now: datetime) -> Any:
    """Runs one roll-up pass as if it were `now` (grace included)."""
    return Rollup(services_of(app).db, clock=lambda: now).run_once()


@contextmanager
def reporting_at(app: Flask, now: datetime, max_lag: timedelta = timedelta(minutes=15)) -> Iterator[None]:
    """The app's reports run as if it were `now`, with roll-ups allowed to lag `max_lag`."""
    monitoring = services_of(app).monitoring
    clock, lag = monitoring.clock, monitoring.max_lag
    monitoring.clock, monitoring.max_lag = (lambda: now), max_lag
    try:
        yield
    finally:
        monitoring.clock, monitoring.max_lag = clock, lag


def stored_counts(app: Flask) -> int:
    """How many rows monitoring_counts holds."""
    with services_of(app).db.transaction() as session:
        return session.scalar(select(func.count()).select_from(InputCount))


def test_rolled_up_hours_and_the_history_agree(app: Flask, loaded_client: FlaskClient) -> None:
    ids = past_rows(app, 300)
    post_actuals_at(app, loaded_client, ids[::3], 4.0)
    later = START + timedelta(days=3)
    allowed = timedelta(days=30)  # fresh whatever the mark: what is not rolled up is counted from the history
    with reporting_at(app, later, allowed):
        from_history = figures(loaded_client)
    for now in (START + timedelta(hours=9, minutes=20), START + timedelta(hours=20), later):
        roll(app, now)  # three passes: marks inside hours, each pass adding to the hour the last one began

        with reporting_at(app, later, allowed):
            assert figures(loaded_client) == close_to(from_history)
    assert stored_counts(app) > 0
    assert 0 < from_history[0]["predictions"] < 300
    assert from_history[1]["predictions"] == 300
    assert from_history[1]["live"]["count"] == 100


def close_to(expected: Any) -> Any:
    """`expected` with each float as pytest.approx: sums taken in another order differ in the last digits."""
    if isinstance(expected, float):
        return pytest.approx(expected, rel=1e-9, abs=1e-12)
    if isinstance(expected, dict):
        return {key: close_to(value) for key, value in expected.items()}
    if isinstance(expected, list):
        return [close_to(value) for value in expected]
    return expected


def figures(client: FlaskClient) -> list[dict[str, Any]]:
    """Two reports (a window cutting hours, all time) but their freshness (where the counts came from)."""
    return [{**body, "freshness": None} for body in (report(client, **WINDOW), report(client))]


def post_actuals_at(app: Flask, client: FlaskClient, ids: list[int], delay: float) -> None:
    """Posts actuals for the ids, recorded as soon as their predictions were made."""
    monitoring = services_of(app).monitoring
    clock = monitoring.clock
    monitoring.clock = lambda: START
    try:
        body = {"actuals": [{"history_id": i, "arr_delay": delay} for i in ids]}
        assert client.post("/model/actuals/", json=body, headers=ADMIN_HEADERS).status_code == 200
    finally:
        monitoring.clock = clock


def test_actuals_replaced_after_the_roll_up_count_at_once(app: Flask, loaded_client: FlaskClient) -> None:
    ids = past_rows(app, 100)
    post_actuals_at(app, loaded_client, ids, 4.0)
    now = START + timedelta(days=1)
    roll(app, now)
    with reporting_at(app, now):
        before = report(loaded_client)["live"]

    body = {"actuals": [{"history_id": i, "arr_delay": 40.0} for i in ids[:10]]}
    assert loaded_client.post("/model/actuals/", json=body, headers=ADMIN_HEADERS).status_code == 200

    with reporting_at(app, datetime.now(UTC) + timedelta(minutes=1), max_lag=timedelta(days=10_000)):
        after = report(loaded_client)["live"]
    assert after["count"] == before["count"] == 100
    assert after["mae"] != before["mae"]
    roll(app, datetime.now(UTC) + timedelta(minutes=5))
    with reporting_at(app, datetime.now(UTC) + timedelta(minutes=5)):
        assert report(loaded_client)["live"] == close_to(after)


def test_a_lagging_roll_up_is_said_and_not_counted_past(app: Flask, loaded_client: FlaskClient) -> None:
    past_rows(app, 200, every=timedelta(minutes=3))  # 10 hours from START
    roll(app, START + timedelta(hours=4))

    with reporting_at(app, START + timedelta(hours=12)):
        lagging = report(loaded_client)

    mark = START + timedelta(hours=4) - rollup_module.ROLLUP_GRACE
    assert lagging["freshness"] == {
        "counted_until": mark.isoformat(),
        "rolled_up_until": mark.isoformat(),
        "lag_seconds": (START + timedelta(hours=12) - mark).total_seconds(),
        "lagging": True,
    }
    assert lagging["predictions"] == 80  # made before the mark, 3:58 after START: minutes 0, 3, ..., 237
    assert lagging["drift"] is not None
    with reporting_at(app, START + timedelta(hours=12)):
        later = report(loaded_client, since=(START + timedelta(hours=5)).isoformat())
    assert later["predictions"] == 0
    assert "the roll-ups lag" in later["drift_unavailable"]


def test_two_jobs_at_once_store_each_chunk_once(
    app: Flask, loaded_client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    past_rows(app, 300)
    now = START + timedelta(days=2)
    with reporting_at(app, now, max_lag=timedelta(days=30)):
        expected = report(loaded_client)
    # Without the lock both count every chunk: the marks alone decide which stores it.
    monkeypatch.setattr(rollup_module, "rollup_lock", lambda _db: _held())
    jobs = [threading.Thread(target=roll, args=(app, now)) for _ in range(3)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()

    with reporting_at(app, now):
        assert {**report(loaded_client), "freshness": None} == close_to({**expected, "freshness": None})


@contextmanager
def _held() -> Iterator[bool]:
    """A roll-up lock every job gets."""
    yield True


def test_a_job_holding_the_lock_makes_the_others_skip(app: Flask, loaded_client: FlaskClient) -> None:
    with rollup_module.rollup_lock(services_of(app).db) as held:
        assert held
        assert roll(app, datetime.now(UTC)).skipped
    assert not roll(app, datetime.now(UTC)).skipped


def test_a_mark_is_moved_once_whoever_moves_it(app: Flask, loaded_client: FlaskClient) -> None:
    version = loaded_client.get("/model/").get_json()["version"]
    hour = at(10)
    db = services_of(app).db
    with db.transaction() as session:
        assert advance_mark(session, version, None, hour)
    with db.transaction() as session:
        assert not advance_mark(session, version, None, hour + timedelta(hours=1))
        assert advance_mark(session, version, hour, hour + timedelta(hours=2))
    with db.transaction() as session:
        assert not advance_mark(session, version, hour, hour + timedelta(hours=3))


def test_the_cli_runs_a_pass(app: Flask, loaded_client: FlaskClient, database_url: str) -> None:
    past_rows(app, 50)

    result = CliRunner().invoke(main, ["rollup"], env={"DATABASE_URL": database_url})

    assert result.exit_code == 0, result.output
    with services_of(app).db.transaction() as session:
        assert session.scalar(select(RollupMark.rolled_until)) is not None
        assert session.scalar(select(func.count()).select_from(LiveCount)) == 0  # no actuals
    assert stored_counts(app) > 0


def test_the_plan_reads_whole_rolled_hours_and_counts_the_rest() -> None:
    plan = count_plan((at(1, 30), at(5, 10)), at(4), fresh=True)
    assert (plan.hours, plan.raw, plan.end) == (
        (at(2), at(5)),
        [(at(1, 30), at(2)), (at(4), at(5, 10))],
        at(5, 10),
    )

    within = count_plan((at(2), at(3)), at(4), fresh=True)
    assert (within.hours, within.raw) == ((at(2), at(3)), [])

    open_end = count_plan((at(4, 5), None), at(4, 20), fresh=True)
    assert (open_end.hours, open_end.raw) == ((at(5), None), [(at(4, 5), at(5)), (at(5), None)])

    lagging = count_plan((None, None), at(4, 20), fresh=False)
    assert (lagging.hours[1], lagging.raw, lagging.end) == (at(5), [], at(4, 20))

    after_the_mark = count_plan((at(6), None), at(4, 20), fresh=False)
    assert (after_the_mark.hours, after_the_mark.raw) == (None, [])
