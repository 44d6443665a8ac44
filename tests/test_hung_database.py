"""A database that hangs (PostgreSQL stopped with SIGSTOP mid-load): answered within bounds, never a hang.

While the server is stopped every prediction is refused (503) within HISTORY_WRITE_TIMEOUT_S and the
health routes say `unavailable` within HEALTH_TIMEOUT_S; once it runs again predictions succeed;
nothing answered 200 is missing from the history.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from bench.postgres import stopped

from tests.factories import minimal_flight
from tests.servers import serve_with_model
from tests.test_database_faults import recorded_request_ids

pytestmark = [pytest.mark.slow, pytest.mark.postgresql_only]

STOPPED_S = 8.0
# A refusal takes HISTORY_WRITE_TIMEOUT_S (5 s) at most, plus the machine's own delays.
ANSWERED_WITHIN_S = 10.0


class Load:
    """Clients predicting in a loop, each answer noted with its status and how long it took."""

    def __init__(self, url: str, clients: int = 3) -> None:
        self.url = url
        self.answers: list[tuple[str, int, float]] = []
        self.running = True
        self.threads = [threading.Thread(target=self._client, args=(n,)) for n in range(clients)]

    def _client(self, number: int) -> None:
        """Predicts until told to stop (a client's own timeout: a hang is a status 0)."""
        sent = 0
        while self.running:
            request_id = f"hung-{number}-{sent}"
            started = time.monotonic()
            try:
                status = requests.post(
                    f"{self.url}/model/predict/",
                    json=minimal_flight(),
                    headers={"X-Request-ID": request_id},
                    timeout=30,
                ).status_code
            except requests.RequestException:
                status = 0
            self.answers.append((request_id, status, time.monotonic() - started))
            sent += 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(60)


def health_during(url: str, path: str) -> tuple[int, dict, float]:
    """A health route's status, body and how long it took to answer."""
    started = time.monotonic()
    answer = requests.get(f"{url}{path}", timeout=30)
    return answer.status_code, answer.json(), time.monotonic() - started


def test_a_stopped_database_is_answered_within_bounds_and_loses_nothing(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    with (
        serve_with_model(tmp_path / "data", database_url, model_files(0), workers=2) as server,
        Load(server.url) as load,
    ):
        time.sleep(1.0)
        with stopped(database_url):
            time.sleep(2.0)
            health = health_during(server.url, "/health/")
            ready = health_during(server.url, "/health/ready")
            time.sleep(STOPPED_S - 2.0)
        resumed = time.monotonic()
        while (
            requests.post(f"{server.url}/model/predict/", json=minimal_flight(), timeout=30).status_code
            != 200
        ):
            assert time.monotonic() - resumed < ANSWERED_WITHIN_S, "predictions did not resume"
            time.sleep(0.2)
        time.sleep(1.0)

    assert all(status != 0 and took < ANSWERED_WITHIN_S for _, status, took in load.answers), load.answers
    refused = [status for _, status, _ in load.answers if status != 200]
    assert refused, "some predictions met the stopped server"
    assert set(refused) == {503}
    assert (health[0], health[1]["status"]) == (503, "unavailable")
    assert health[2] < ANSWERED_WITHIN_S  # HEALTH_TIMEOUT_S (1.5 s) and the machine's delays; bench: 1.5 s
    assert (ready[0], ready[1]["code"]) == (503, "not_ready")
    served = {request_id for request_id, status, _ in load.answers if status == 200}
    assert served <= set(recorded_request_ids(database_url)), "an answered prediction is missing"
