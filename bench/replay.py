"""Replay on a large history: `python -m bench.replay [--rows N] [--database-url URL]`.

Fills one database (a fresh SQLite file, or the given PostgreSQL database) with N predictions of real
flights over the last 30 days, each with an actual (bench/monitoring.py's fill), stores a candidate
trained on another sample, then times the replay job as POST /model/versions/{v}/replay runs it (the
Replays service, waited for): reading the history in pages, scoring each page in one call, the
comparison. Also times reading the pages alone, to say where the time goes. `make bench/replay` runs it
on a SQLite file and on a throwaway PostgreSQL server.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from bench.monitoring import activate_model, fill
from flight_delay.artifact import to_bundle
from flight_delay.data.nycflights import build_dataset
from flight_delay.history.database import Database, sqlite_file
from flight_delay.history.migrate import upgrade
from flight_delay.serving.lifecycle import Actor
from flight_delay.serving.registry import ModelRegistry
from flight_delay.serving.replay import Replays, recorded_pages, replayed_flight
from flight_delay.training.lightgbm_trainer import train_model


def store_candidate(registry: ModelRegistry) -> str:
    """Trains another small model on another sample of real flights and stores it as a candidate."""
    flights = build_dataset()
    late = flights["month"].isin((11, 12))
    model = train_model(
        flights[~late].sample(20_000, random_state=1),
        flights[late].sample(2_000, random_state=1),
        rounds=20,
        seed=1,
    )
    info = registry.store_candidate(to_bundle(model), "candidate.lgbm.json", Actor("bench"))
    return info["version"]


def read_only_seconds(db: Database) -> tuple[float, int]:
    """Seconds to read every page and build every flight, without scoring; the flights read."""
    started = time.perf_counter()
    count = 0
    for page in recorded_pages(db, (None, None)):
        count += len([replayed_flight(row) for row in page])
    return time.perf_counter() - started, count


def measure(url: str, total: int, work: Path) -> dict[str, Any]:
    """Fills the database, stores a candidate, times the replay and the reading alone."""
    upgrade(url)
    db = Database().bind(url)
    try:
        registry = ModelRegistry().configure(work / "models", db)
        version = activate_model(db, work / "models")
        fill_s = fill(db, version, total)
        candidate = store_candidate(registry)
        read_s, read = read_only_seconds(db)
        started = time.perf_counter()
        done, answer = Replays(registry, wait_flights=10 * total).start(candidate, (None, None), "bench")
        replay_s = time.perf_counter() - started
    finally:
        db.dispose()
    if not done or answer["status"] != "done":
        raise RuntimeError(f"the replay did not finish: {answer}")
    return {
        "backend": make_url(url).get_backend_name(),
        "fill_seconds": fill_s,
        "read_seconds": read_s,
        "read": read,
        "replay_seconds": replay_s,
        "answer": answer,
    }


def main(argv: list[str] | None = None) -> None:
    """Parses the options, measures one database and prints the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__)
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="predictions in the history, all with an actual"
    )
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: a new SQLite file)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="flight-delay-bench-replay-"))
    url = args.database_url or f"sqlite:///{work / 'replay.db'}"
    assert args.database_url or sqlite_file(url) is not None
    try:
        figures = measure(url, args.rows, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    answer = figures["answer"]
    print(
        f"replay on {figures['backend']}: {answer['flights']:,} recorded flights with an actual "
        f"(history filled in {figures['fill_seconds']:.0f} s)\n"
        f"  replayed in {figures['replay_seconds']:.1f} s "
        f"({answer['flights'] / figures['replay_seconds']:,.0f} flights/s); goal: under 60 s\n"
        f"  reading the pages alone: {figures['read_seconds']:.1f} s for {figures['read']:,} flights\n"
        f"  candidate MAE {answer['candidate']['mae']:.3f}, RMSE {answer['candidate']['rmse']:.3f}; "
        f"served MAE {answer['served']['mae']:.3f}, RMSE {answer['served']['rmse']:.3f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
