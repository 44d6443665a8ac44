"""`flight-delay monitor`: the monitoring report in a terminal, read from DATABASE_URL's history."""

from __future__ import annotations

import json

from click.testing import CliRunner
from flask.testing import FlaskClient

from flight_delay.cli import main
from tests.factories import synthetic_flights
from tests.monitoring_helpers import flights_of, post_actuals, report, serve


def test_monitor_prints_the_report_as_the_api_answers_it(
    loaded_client: FlaskClient, database_url: str
) -> None:
    served = serve(loaded_client, flights_of(synthetic_flights(30, seed=1)))
    post_actuals(loaded_client, [{"history_id": p["history_id"], "arr_delay": 4.0} for p in served[:10]])
    since = "2000-01-01T00:00:00+00:00"
    expected = report(loaded_client, since=since)
    env = {"DATABASE_URL": database_url}

    as_json = CliRunner().invoke(main, ["monitor", "--since", "2000-01-01T00:00:00", "--json"], env=env)
    table = CliRunner().invoke(main, ["monitor", "--since", since], env=env)

    assert as_json.exit_code == 0, as_json.output
    printed = json.loads(as_json.output)
    assert {**printed, "freshness": None} == {**expected, "freshness": None}  # the same, but read later
    assert printed["freshness"]["lagging"] is False
    assert table.exit_code == 0, table.output
    assert f"model {expected['model_version']}" in table.output
    assert "predictions 30" in table.output
    assert f"MAE {expected['live']['mae']:.2f}" in table.output
    assert "dep_delay" in table.output
    assert "prediction" in table.output
    assert (
        "reference: the training profile of its features, 322 flights of 2013-01-01 .. 2013-10-28"
        in table.output
    )
    assert "rolled up until never" in table.output


def test_monitor_says_what_is_wrong(loaded_client: FlaskClient, database_url: str) -> None:
    env = {"DATABASE_URL": database_url}

    unknown = CliRunner().invoke(main, ["monitor", "--model-version", "b" * 64], env=env)
    bad_time = CliRunner().invoke(main, ["monitor", "--since", "yesterday"], env=env)

    assert unknown.exit_code == 1
    assert "unknown_model_version" in unknown.output
    assert bad_time.exit_code == 2
    assert "ISO 8601" in bad_time.output
