"""A worker's context: read by revision (only what changed), from memory between refreshes, in a horizon."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flight_delay.context import state as state_module
from flight_delay.context.definitions import HOUR_S, flight_facts, observation
from flight_delay.context.ingestion import ContextPosts
from flight_delay.context.state import ContextState
from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade
from tests.context_data import synthetic_context


@pytest.fixture
def db(database_url: str) -> Database:
    """A migrated database of the backend under test."""
    upgrade(database_url)
    database = Database().bind(database_url)
    yield database
    database.dispose()


def worker(db: Database, refresh_ms: int = 60_000, retention_h: int = 24 * 30) -> ContextState:
    """A worker's state over the database."""
    return ContextState(db).configure({"CONTEXT_REFRESH_MS": refresh_ms, "CONTEXT_RETENTION_H": retention_h})


def test_a_worker_reads_only_the_posts_after_its_last_refresh(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    flights, weather, _ = synthetic_context(0, count=60)
    posts, state = ContextPosts(db), worker(db)
    posts.post_flights(flights[:40])
    read: list[Any] = []
    changed = state_module.changed_rows
    monkeypatch.setattr(state_module, "changed_rows", lambda s, r: read.append(r) or changed(s, r))

    first = state.refresh()
    posts.post_flights(flights[40:])
    posts.post_weather(weather)
    state.expire()
    second = state.refresh()

    assert len(first.flights) == 40
    assert read == [1]  # the first refresh read from the time horizon; the second only revisions after 1
    assert len(second.flights) == 60
    assert len(second.observations) == len(weather)


def test_between_refreshes_a_worker_answers_from_memory(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    flights, _, _ = synthetic_context(0, count=10)
    state = worker(db)
    index = state.refresh()
    ContextPosts(db).post_flights(flights)
    monkeypatch.setattr(state_module, "changed_rows", lambda *_: pytest.fail("a query between refreshes"))

    assert state.current() is index  # within CONTEXT_REFRESH_MS: no query, the posts not seen yet
    assert state.snapshot() is index


def test_an_unchanged_revision_reads_no_rows(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    flights, _, _ = synthetic_context(0, count=10)
    ContextPosts(db).post_flights(flights)
    state = worker(db, refresh_ms=0)
    index = state.refresh()
    monkeypatch.setattr(state_module, "changed_rows", lambda *_: pytest.fail("rows read for no change"))

    assert state.refresh() is index


def test_another_worker_sees_the_posts_once_it_refreshes(db: Database) -> None:
    flights, _, _ = synthetic_context(0, count=10)
    one, other = worker(db, refresh_ms=0), worker(db, refresh_ms=0)
    assert one.refresh().is_empty()

    ContextPosts(db).post_flights(flights)

    assert other.current() is None  # CONTEXT_REFRESH_MS of 0: every prediction refreshes first
    assert len(other.refresh().flights) == len(one.refresh().flights) == 10


def test_a_repost_replaces_the_flight_in_every_worker(db: Database) -> None:
    flights, _, _ = synthetic_context(0, count=5)
    posts, state = ContextPosts(db), worker(db, refresh_ms=0)
    posts.post_flights([{**f, "dep_delay": None, "arr_delay": None, "air_time": None} for f in flights])
    before = state.refresh()

    posts.post_flights(flights)
    after = state.refresh()

    key = flight_facts(flights[0]).key
    assert before.flights[key].departed is None
    assert after.flights[key] == flight_facts(flights[0])


def test_the_state_keeps_its_horizon_and_a_starting_worker_reads_the_same(db: Database) -> None:
    flights, weather, _ = synthetic_context(0)
    posts, running = ContextPosts(db), worker(db, refresh_ms=0, retention_h=12)
    posts.post_flights(flights[:200])
    running.refresh()
    posts.post_flights(flights[200:])
    posts.post_weather(weather)

    kept = running.refresh()
    started = worker(db, retention_h=12).refresh()

    facts = [t for f in map(flight_facts, flights) for t in (f.departed, f.landed) if t is not None]
    newest = max(*facts, *(observation(o).known for o in weather))
    assert kept.horizon == newest - 12 * HOUR_S
    assert all(max(f.scheduled, f.departed or 0) >= kept.horizon for f in kept.flights.values())
    assert 0 < len(kept.flights) < len(flights)  # older flights dropped
    assert (started.flights, started.observations, started.horizon) == (
        kept.flights,
        kept.observations,
        kept.horizon,
    )


def test_concurrent_refreshes_read_once(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    flights, _, _ = synthetic_context(0, count=10)
    ContextPosts(db).post_flights(flights)
    state = worker(db)
    reads: list[int] = []
    recent = state_module.recent_rows
    monkeypatch.setattr(state_module, "recent_rows", lambda *a: reads.append(1) or recent(*a))

    threads = [threading.Thread(target=state.refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert reads == [1]
    assert len(state.snapshot().flights) == 10
