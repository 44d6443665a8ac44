"""Data locations: URIs reach Spark whole; local paths keep click's checks and become file:// URIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flight_delay.cli import main
from flight_delay.pipeline import dataset as dataset_module
from flight_delay.pipeline.dataset import csv_location
from flight_delay.pipeline.locations import local_path, location_name, scheme, spark_location


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3a://bucket/raw/airports-database.csv", "s3a://bucket/raw/airports-database.csv"),
        ("hdfs://namenode:8020/data/flights", "hdfs://namenode:8020/data/flights"),
        ("file:///data/airports-database.csv", "file:///data/airports-database.csv"),
        ("/data/airports-database.csv", "file:///data/airports-database.csv"),
        ("/data/with space/f.csv", "file:///data/with space/f.csv"),  # Hadoop reads %20 literally
    ],
)
def test_spark_gets_uris_whole_and_local_paths_as_file_uris(location: str, expected: str) -> None:
    assert spark_location(location) == expected


def test_a_relative_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert spark_location("var/f.csv") == f"file://{tmp_path}/var/f.csv"


def test_only_plain_paths_and_file_uris_are_local() -> None:
    assert local_path("s3a://bucket/x.csv") is None
    assert local_path("hdfs:///x.csv") is None
    assert local_path("file:///tmp/a%20b.csv") == Path("/tmp/a b.csv")
    assert local_path(Path("x.csv")) == Path("x.csv")
    assert scheme("C:\\data\\x.csv") == ""  # a drive letter is no scheme
    assert location_name("s3a://bucket/raw/airports-database.csv") == "airports-database.csv"


def test_a_zip_is_read_from_a_local_path_only() -> None:
    with pytest.raises(ValueError, match="local path only"):
        csv_location("s3a://bucket/airports-database.zip")


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records the location each command hands to read_flights, and stops the command there."""
    seen: list[Any] = []

    def read_flights(spark: Any, location: Any) -> None:
        seen.append(location)
        raise SystemExit(0)

    monkeypatch.setattr(dataset_module, "read_flights", read_flights)
    monkeypatch.setattr("flight_delay.pipeline.spark.get_spark", lambda *a, **k: None)
    return seen


@pytest.mark.parametrize("command", [["answers"], ["train", "--out", "model.pkl"]])
def test_commands_pass_a_uri_unchanged(command: list[str], reads: list[Any]) -> None:
    result = CliRunner().invoke(main, [*command, "--data", "s3a://bucket/raw/airports-database.csv"])

    assert result.exit_code == 0, result.output
    assert reads == ["s3a://bucket/raw/airports-database.csv"]


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_missing_local_file_gets_clicks_error(as_uri: bool, tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    result = CliRunner().invoke(main, ["answers", "--data", f"file://{missing}" if as_uri else str(missing)])

    assert result.exit_code == 2
    assert "Invalid value for '--data'" in result.output
    assert f"'{missing}' does not exist" in result.output


def test_the_model_is_written_to_a_local_path_only() -> None:
    result = CliRunner().invoke(main, ["train", "--data", "s3a://b/f.csv", "--out", "s3a://b/model.pkl"])

    assert result.exit_code == 2
    assert "writes this file locally" in result.output
