"""The Spark session the pipeline, the CLI, the notebook and the tests share."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession


def get_spark(app_name: str = "flight-delay", *, shuffle_partitions: int = 8) -> SparkSession:
    """Returns a local Spark session (or the active one) set up for this machine.

    UTC session time zone so that timestamps mean the same everywhere; few shuffle partitions
    because local data is small; the UI is off (nothing would look at it, and it takes a port).
    """
    master = os.environ.get("SPARK_MASTER", "local[*]")
    # Local mode talks to itself only: keep the driver on loopback, not the first interface.
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")  # progress bars drown notebook outputs
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "ERROR"))
    return spark
