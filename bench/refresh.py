"""How a worker learns which model is active: `python -m bench.refresh [--database-url URL]`.

Prints, for one database, the cost of `ModelRegistry.active()` when it asks the database on every
call (MODEL_REFRESH_MS=0, as every request did on PostgreSQL before) and when it asks at most every
interval, and how long a model activated by one worker takes to be served by another.
`make bench/refresh` runs it on a SQLite file and on a throwaway PostgreSQL server.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from flight_delay.artifact import to_bundle
from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade
from flight_delay.serving.registry import ModelRegistry
from flight_delay.training.dummy import train_dummy

SWITCHES = 10


def per_call_us(registry: ModelRegistry, calls: int) -> float:
    """Mean microseconds of registry.active() over `calls` calls, after a first one that loads."""
    registry.active()
    started = time.perf_counter()
    for _ in range(calls):
        registry.active()
    return (time.perf_counter() - started) / calls * 1e6


def propagation_ms(activator: ModelRegistry, watcher: ModelRegistry, models: list[bytes]) -> list[float]:
    """Milliseconds until `watcher` serves each model `activator` activates (polled every 1 ms)."""
    lags = []
    for number in range(SWITCHES):
        version = activator.activate_upload(models[number % 2], "bench.pkl").version
        started = time.perf_counter()
        while watcher.active().version != version:
            time.sleep(0.001)
        lags.append((time.perf_counter() - started) * 1000)
    return lags


def main() -> None:
    """Measures one database (a fresh SQLite file unless --database-url names an empty database)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="an empty database (default: a temporary SQLite file)")
    parser.add_argument("--refresh-ms", type=int, default=250)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    url = args.database_url or f"sqlite:///{folder / 'flight_delay.db'}"
    upgrade(url)
    models = [to_bundle(train_dummy(seed, sample_rows=2_000)) for seed in (0, 1)]

    def worker(name: str, refresh_ms: int) -> ModelRegistry:
        return ModelRegistry().configure(folder / name, Database().bind(url), refresh_ms)

    activator = worker("activator", args.refresh_ms)
    activator.activate_upload(models[0], "bench.pkl")
    every_call = per_call_us(worker("every-call", 0), 500)
    interval = per_call_us(worker("interval", args.refresh_ms), 20_000)
    lags = propagation_ms(activator, worker("watcher", args.refresh_ms), models)
    backend = url.split(":", 1)[0]
    print(
        f"{backend}: registry.active() asking every call {every_call:.1f} us, "
        f"every {args.refresh_ms} ms {interval:.2f} us ({every_call / interval:,.0f}x less)"
    )
    print(
        f"{backend}: a model activated by one worker served by another after "
        f"median {statistics.median(lags):.0f} ms, max {max(lags):.0f} ms ({SWITCHES} switches)"
    )


if __name__ == "__main__":
    main()
