"""The Spark session the pipeline, the CLI, the notebook and the tests share.

Spark's own configuration says where the job runs: `spark-submit --master`, spark-defaults.conf,
then SPARK_MASTER (handed to spark-submit as its MASTER variable), else local[*]. The settings here
only fill in what that configuration leaves unset, and the loopback ones apply to local mode only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

LOOPBACK = "127.0.0.1"
# Read by spark-submit when it starts the driver's JVM: below --driver-memory and spark-defaults.conf.
DEFAULT_DRIVER_MEMORY = "4g"

# Defaults for any master.
DEFAULTS = {
    "spark.sql.session.timeZone": "UTC",  # timestamps mean the same on every machine
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.ui.showConsoleProgress": "false",  # progress bars drown notebook outputs
}
# Local mode talks to itself only: nothing would look at the UI, and it takes a port.
LOCAL_DEFAULTS = {"spark.ui.enabled": "false"}
# Local mode keeps the driver on loopback, not the first interface, unless SPARK_LOCAL_IP says where.
LOOPBACK_DRIVER = {"spark.driver.host": LOOPBACK, "spark.driver.bindAddress": LOOPBACK}


def get_spark(app_name: str = "flight-delay", *, shuffle_partitions: int = 8) -> SparkSession:
    """Returns the active Spark session, or starts one where Spark's configuration says (else local)."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder
    for key, value in session_defaults(launch_conf(), app_name, shuffle_partitions).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "ERROR"))
    return spark


@contextmanager
def environment_defaults(**defaults: str | None) -> Iterator[None]:
    """Sets the variables that are unset (None values skipped) for the block, then removes them."""
    added = {k: v for k, v in defaults.items() if v is not None and k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def launch_conf() -> dict[str, str]:
    """Starts Spark's JVM through spark-submit (or joins the one that started us) and returns its settings."""
    master = os.environ.get("SPARK_MASTER")
    with environment_defaults(MASTER=master, SPARK_DRIVER_MEMORY=DEFAULT_DRIVER_MEMORY):
        # A public call that needs the JVM and no SparkContext: spark-submit reads its flags,
        # spark-defaults.conf and MASTER as it starts, and SparkConf() then holds what it decided.
        SparkContext.getSystemProperty("java.version")
    return dict(SparkConf().getAll())


def is_local(master: str) -> bool:
    """True for masters that run every executor on this machine (local, local[n], local-cluster[...])."""
    return master.split("[", 1)[0] in ("local", "local-cluster")


def launcher_choices(given: Mapping[str, str]) -> set[str]:
    """The keys spark-submit filled in itself: a script's or the shell's name, the shell's progress bar."""
    name = given.get("spark.app.name", "pyspark-shell")
    chosen = {"spark.app.name"} if name in ("pyspark-shell", Path(sys.argv[0]).name) else set()
    # pyspark starts Spark as its shell, and spark-submit turns the progress bar on for shells.
    if name == "pyspark-shell" and given.get("spark.ui.showConsoleProgress") == "true":
        chosen.add("spark.ui.showConsoleProgress")
    return chosen


def driver_on_loopback(given: Mapping[str, str]) -> bool:
    """True when nothing says where a local driver listens (SPARK_LOCAL_IP, spark.driver.*): loopback."""
    return "SPARK_LOCAL_IP" not in os.environ and not set(LOOPBACK_DRIVER) & set(given)


def session_defaults(given: Mapping[str, str], app_name: str, shuffle_partitions: int) -> dict[str, str]:
    """Our settings for the keys Spark's configuration (`given`) leaves unset, per master."""
    ours = {**DEFAULTS, "spark.app.name": app_name, "spark.sql.shuffle.partitions": str(shuffle_partitions)}
    if is_local(given.get("spark.master", "local[*]")):
        ours |= LOCAL_DEFAULTS | (LOOPBACK_DRIVER if driver_on_loopback(given) else {})
    unset = launcher_choices(given)
    return {key: value for key, value in ours.items() if key not in given or key in unset}
