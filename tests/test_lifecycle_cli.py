"""The command line of a model's life on DATABASE_URL: versions, traffic, activate, rollback, --candidate."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from flight_delay.api import create_app
from flight_delay.cli import main


@pytest.fixture
def run(app_config: dict[str, Any], tmp_path: Path) -> Callable[..., Result]:
    """Runs `flight-delay ARGS` on the test's database, as an operator's one-off task."""
    env = {
        "DATABASE_URL": app_config["DATABASE_URL"],
        "DATA_DIR": str(tmp_path / "task"),
        "MODEL_STORE_DIR": str(tmp_path / "task" / "models"),
    }

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=env)

    return invoke


def loaded(run: Callable[..., Result], path: Path, *options: str) -> str:
    """Loads a model file with the CLI; its version."""
    result = run("load", str(path), *options)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.splitlines()[-1])["version"]


def test_an_operator_stores_splits_activates_and_rolls_back_from_the_command_line(
    run: Callable[..., Result], model_files: Callable[[int], Path], app_config: dict[str, Any]
) -> None:
    first = loaded(run, model_files(0), "--reason", "first model")
    second = loaded(run, model_files(1), "--candidate")

    table = run("versions").stdout.splitlines()
    split = run("traffic", "--canary", second[:8], "--percent", "25", "--shadow", second[:8], "--json")
    activated = run("activate", second[:10], "--reason", "it replays better", "--json")
    rolled = run("rollback", "--json")
    refused = run("rollback")

    assert table[0].split()[:3] == ["VERSION", "STAGE", "TRAFFIC"]
    assert [line.split()[:3] for line in table[1:]] == [
        [second[:12], "candidate", "0.0%"],
        [first[:12], "active", "100.0%"],
    ]
    assert json.loads(split.stdout)["canary"] == {"version": second, "percent": 25.0}
    assert json.loads(activated.stdout)["active"] == second
    assert json.loads(rolled.stdout)["active"] == first
    assert refused.exit_code == 1
    assert "no_previous_version" in refused.output
    audit = create_app(app_config).test_client().get("/model/audit/").get_json()["events"]
    operator = f"cli:{getpass.getuser()}"
    assert [(e["action"], e["by"], e["reason"]) for e in audit] == [
        ("upload", operator, "first model"),
        ("activate", operator, "first model"),
        ("upload", operator, None),
        ("canary", operator, None),
        ("shadow", operator, None),
        ("activate", operator, "it replays better"),
        ("canary", operator, "it replays better"),
        ("shadow", operator, "it replays better"),
        ("rollback", operator, None),
    ]


def test_the_traffic_command_refuses_what_cannot_be(
    run: Callable[..., Result], model_files: Callable
) -> None:
    active = loaded(run, model_files(0))

    unknown = run("traffic", "--shadow", "ffff0000")
    half = run("traffic", "--canary", active[:8])
    too_much = run("traffic", "--canary", active[:8], "--percent", "60")
    of_active = run("traffic", "--canary", active[:8], "--percent", "10")

    assert "names no stored version" in unknown.output
    assert "--percent P go together" in half.output
    assert too_much.exit_code == 2
    assert "invalid_traffic" in of_active.output
    assert "canary:      none" in run("traffic").stdout


def test_the_command_line_imports_no_metrics_before_serve_sets_them_up() -> None:
    """`flight-delay serve` chooses the workers' shared metrics folder before prometheus_client loads."""
    script = "import sys, flight_delay.cli; print('prometheus_client' in sys.modules)"

    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert found.stdout.strip() == "False"
