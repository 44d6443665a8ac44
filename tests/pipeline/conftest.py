"""One local Spark session for the whole test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from flight_delay.pipeline.spark import get_spark


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """A local[2] Spark session shared by every pipeline test."""
    session = get_spark("flight-delay-tests", shuffle_partitions=2)
    yield session
    session.stop()
