"""Where the Spark session runs: Spark's configuration decides; local settings only in local mode."""

from __future__ import annotations

import os

import pytest
from pyspark import SparkContext
from pyspark.sql import SparkSession

from flight_delay.pipeline import spark as spark_module
from flight_delay.pipeline.spark import (
    LOOPBACK_DRIVER,
    environment_defaults,
    get_spark,
    is_local,
    launch_conf,
    session_defaults,
)

LOCAL_ONLY = {"spark.driver.host", "spark.driver.bindAddress", "spark.ui.enabled"}
# What spark-submit gives pyspark's own launch when told nothing.
SHELL = {
    "spark.master": "local[*]",
    "spark.app.name": "pyspark-shell",
    "spark.ui.showConsoleProgress": "true",
}


@pytest.fixture(autouse=True)
def no_local_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without SPARK_LOCAL_IP (a test sets it when it is the point)."""
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)


def test_local_mode_keeps_the_driver_on_loopback_without_a_ui() -> None:
    settings = session_defaults(SHELL, "flight-delay-x", 4)

    assert {k: settings[k] for k in LOOPBACK_DRIVER} == dict.fromkeys(LOOPBACK_DRIVER, "127.0.0.1")
    assert settings["spark.ui.enabled"] == "false"
    # "pyspark-shell" is the name spark-submit gives pyspark's own launch, not one the user chose.
    assert settings["spark.app.name"] == "flight-delay-x"
    assert settings["spark.ui.showConsoleProgress"] == "false"
    assert settings["spark.sql.shuffle.partitions"] == "4"


def test_a_cluster_master_gets_no_local_setting_and_keeps_the_master(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["/opt/job/src/spark_job.py", "answers"])
    given = {"spark.master": "spark://10.213.1.1:7077", "spark.app.name": "spark_job.py"}

    settings = session_defaults(given, "flight-delay-answers", 8)

    assert not LOCAL_ONLY & set(settings)
    assert not {"spark.master", "spark.driver.memory"} & set(settings)
    assert settings["spark.app.name"] == "flight-delay-answers"  # spark-submit named it after the script


@pytest.mark.parametrize("master", ["yarn", "k8s://https://10.0.0.1:6443", "spark://h:7077"])
def test_no_cluster_master_is_local(master: str) -> None:
    assert not is_local(master)
    assert not LOCAL_ONLY & set(session_defaults({"spark.master": master}, "x", 8))


@pytest.mark.parametrize("master", ["local", "local[2]", "local[*]", "local-cluster[2,1,1024]"])
def test_local_masters_are_local(master: str) -> None:
    assert is_local(master)


def test_what_spark_was_told_is_never_overridden() -> None:
    given = {
        "spark.master": "local[2]",
        "spark.app.name": "my-name",
        "spark.driver.host": "10.0.0.5",
        "spark.sql.shuffle.partitions": "64",
        "spark.sql.session.timeZone": "Europe/Paris",
    }

    settings = session_defaults(given, "flight-delay-x", 8)

    assert not set(given) & set(settings)
    assert "spark.driver.bindAddress" not in settings  # the driver's address is given: no half loopback


def test_spark_local_ip_moves_a_local_driver_off_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_LOCAL_IP", "10.0.0.5")

    settings = session_defaults(SHELL, "x", 8)

    assert not set(LOOPBACK_DRIVER) & set(settings)
    assert settings["spark.ui.enabled"] == "false"


def test_spark_master_reaches_spark_submit_below_its_own_configuration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = {}

    def launch(key: str) -> str:
        seen.update({k: os.environ.get(k) for k in ("MASTER", "SPARK_DRIVER_MEMORY")})
        return "17"

    monkeypatch.setenv("SPARK_MASTER", "spark://10.213.1.1:7077")
    monkeypatch.delenv("MASTER", raising=False)
    monkeypatch.delenv("SPARK_DRIVER_MEMORY", raising=False)
    monkeypatch.setattr(SparkContext, "getSystemProperty", launch)
    monkeypatch.setattr(spark_module, "SparkConf", lambda: type("Conf", (), {"getAll": lambda self: []})())

    launch_conf()

    # MASTER and SPARK_DRIVER_MEMORY are spark-submit's own variables, below --master and
    # spark-defaults.conf; they are set while it starts only.
    assert seen == {"MASTER": "spark://10.213.1.1:7077", "SPARK_DRIVER_MEMORY": "4g"}
    assert "MASTER" not in os.environ
    assert "SPARK_DRIVER_MEMORY" not in os.environ


def test_environment_defaults_never_replace_a_set_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "2g")

    with environment_defaults(SPARK_DRIVER_MEMORY="4g", MASTER=None):
        assert os.environ["SPARK_DRIVER_MEMORY"] == "2g"
        assert "MASTER" not in os.environ
    assert os.environ["SPARK_DRIVER_MEMORY"] == "2g"


def test_the_local_session_listens_on_loopback_only(spark: SparkSession) -> None:
    assert spark.sparkContext.master.startswith("local")
    assert spark.conf.get("spark.driver.host") == "127.0.0.1"
    assert spark.sparkContext.uiWebUrl is None
    assert spark.sparkContext.appName == "flight-delay-tests"
    assert get_spark("another-name") is spark
