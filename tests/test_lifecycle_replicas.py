"""Two replicas (separate `serve` processes, two workers each) over one database: one traffic split for all.

A traffic change made through one replica is served by every worker of both within 1 s (MODEL_REFRESH_MS
plus loading the canary once), and a request id is answered by the same version wherever it lands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from flight_delay.serving.lifecycle import canary_bucket, canary_share
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.servers import RunningServer, replicas, upload_model

pytestmark = pytest.mark.slow

PERCENT = 30


def answered_by(server: RunningServer, request_id: str) -> str:
    """The version one replica answers a prediction with, for a request id."""
    answer = requests.post(
        f"{server.url}/model/predict/",
        json=minimal_flight(),
        headers={"X-Request-ID": request_id},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


def seconds_until(condition: Callable[[], bool], timeout: float) -> float:
    """Polls until the condition holds; the seconds it took (fails past the timeout)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_traffic_change_reaches_both_replicas_and_an_id_gets_one_version_everywhere(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with replicas(2, tmp_path, database_url, workers=2) as servers:
        active = upload_model(servers[0].url, model_files(0))
        with model_files(1).open("rb") as handle:
            stored = requests.post(
                f"{servers[0].url}/model/load/?activate=false",
                files={"file": handle},
                headers=ADMIN_HEADERS,
                timeout=60,
            )
        candidate = stored.json()["version"]
        inside = next(f"in-{i}" for i in range(10_000) if canary_bucket(f"in-{i}") < canary_share(PERCENT))
        for server in servers:
            seconds_until(lambda s=server: answered_by(s, inside) == active, 5.0)  # both serve the model

        split = {"canary": {"version": candidate, "percent": PERCENT}, "reason": "two replicas"}
        changed = requests.put(
            f"{servers[0].url}/model/traffic", json=split, headers=ADMIN_HEADERS, timeout=10
        )
        assert changed.status_code == 200, changed.text
        for number, server in enumerate(servers):
            # Four answers in a row: with two workers, both have read the new split.
            took = seconds_until(
                lambda s=server: {answered_by(s, inside) for _ in range(4)} == {candidate}, 1.0
            )
            print(f"replica {number} serves the canary {took:.2f} s after the change's answer")

        ids = [f"everywhere-{i}" for i in range(100)]
        first = [answered_by(servers[0], i) for i in ids]
        second = [answered_by(servers[1], i) for i in ids]
        again = [answered_by(servers[0], i) for i in ids]

    expected = [candidate if canary_bucket(i) < canary_share(PERCENT) else active for i in ids]
    assert first == second == again == expected
    assert 15 <= first.count(candidate) <= 45
