"""`flight-delay feed` replays real hours to a real server: posts, predictions with context, actuals."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from flight_delay.cli import main
from flight_delay.context.definitions import DEFAULT_LEAD_S, flight_facts, instant_seconds
from flight_delay.data.nycflights import build_dataset, load_table
from flight_delay.feed import Replay, ServiceClient, period_frames
from tests.factories import ADMIN_TOKEN
from tests.servers import serve_with_model

pytestmark = pytest.mark.slow

START, END = "2013-01-02T12:00:00+00:00", "2013-01-02T17:00:00+00:00"  # 07:00 to 12:00 in New York


def replayed() -> Replay:
    """The flights and weather the replay reads."""
    start, end = (datetime.fromisoformat(t) for t in (START, END))
    return Replay.of(*period_frames(build_dataset(), load_table("weather"), start, end))


def expected_counts(replay: Replay) -> dict[str, int]:
    """What the replay must ask, from the data: predictions per basis."""
    start, end = (instant_seconds(datetime.fromisoformat(t)) for t in (START, END))
    facts = [flight_facts(r) for r in replay.flights]
    return {
        "before": sum(start <= f.scheduled - DEFAULT_LEAD_S < end for f in facts),
        "at": sum(f.departed is not None and start <= f.departed < end for f in facts),
    }


def test_a_replay_fills_the_history_and_the_live_accuracy(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ML_API_ADMIN_TOKEN", ADMIN_TOKEN)
    replay = replayed()
    expected = expected_counts(replay)
    with serve_with_model(tmp_path / "data", database_url, model_files(0)) as server:
        arguments = ["feed", "--url", server.url, "--start", START, "--end", END, "--speed", "0"]
        result = CliRunner().invoke(main, arguments)
        history = requests.get(f"{server.url}/model/history/?page_size=500", timeout=30).json()
        live = requests.get(f"{server.url}/model/monitoring/", timeout=30).json()["live"]
        asked = next(item["input"] for item in history["items"] if item["input"]["dep_delay"] is not None)
        again = ServiceClient(server.url, None).post("/model/predict/", asked)["predictions"][0]

    assert result.exit_code == 0, result.output
    assert "replayed 5 hours" in result.output
    assert (
        f"predictions: {expected['before']} before departure, {expected['at']} at departure" in result.output
    )
    assert history["total"] == expected["before"] + expected["at"]
    assert all(item["input"]["as_of"] for item in history["items"])
    assert {item["request_id"].split("-")[-1] for item in history["items"]} == {
        "before_departure",
        "at_departure",
    }
    assert again["context"]["used"] is True  # the posted flights and weather, as of the departure
    assert 0 < live["count"] < history["total"]  # the flights that landed within the replay
    assert f"over {live['count']} actuals" in result.output
