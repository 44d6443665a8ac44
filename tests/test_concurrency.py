"""Sixteen clients on four gunicorn workers: a model switch and killed workers lose no prediction."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url

from tests.servers import RunningServer, serve, upload_model
from tests.traffic import Outcome, Traffic, recorded_predictions

pytestmark = pytest.mark.slow

WORKERS = 4
CLIENTS = 16
REFRESH_MS = 100


def test_5000_predictions_across_a_model_load_are_each_recorded_with_their_model(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    first_model, second_model = model_files(0), model_files(1)
    loaded: dict[str, str] = {}

    def load_midway(traffic: Traffic) -> None:
        """Uploads the second model once half the predictions were answered."""
        traffic.wait_for_answers(traffic.total // 2)
        traffic.mark("uploading")
        loaded["version"] = upload_model(traffic.url, second_model)
        # Every worker asks which model is active at least every MODEL_REFRESH_MS, then serves it.
        time.sleep(5 * REFRESH_MS / 1000)
        traffic.mark("loaded")

    with serve(tmp_path / "data", database_url, workers=WORKERS, MODEL_REFRESH_MS=str(REFRESH_MS)) as server:
        first = upload_model(server.url, first_model)
        traffic = Traffic(server.url, total=5_000, clients=CLIENTS, prefix="load")
        seconds = traffic.run(load_midway)
    kinds = traffic.kinds()
    print(f"\n{traffic.total} predictions, {CLIENTS} clients, {WORKERS} workers: {seconds:.1f} s, {kinds}")

    second = loaded["version"]
    assert first != second
    # A refusal for a lock waited past the busy timeout is the service's promise under overload.
    assert set(kinds) <= {"served", "locked"}
    assert recorded_predictions(database_url) == traffic.served()
    sent_after_load = served(o for o in traffic.outcomes if "loaded" in o.marks_before_send)
    answered_before_upload = served(o for o in traffic.outcomes if "uploading" not in o.marks_before_answer)
    assert sent_after_load, "the load must have finished while clients were still sending"
    assert {o.body["model_version"] for o in sent_after_load} == {second}
    assert {o.body["model_version"] for o in answered_before_upload} == {first}


def served(outcomes: Iterable[Outcome]) -> list[Outcome]:
    """Keeps the outcomes that were answered with predictions."""
    return [outcome for outcome in outcomes if outcome.status == 200]


def kill_workers(server: RunningServer, kills: int) -> Callable[[Traffic], None]:
    """Makes a disturbance that SIGKILLs one worker at a time, spread over the run, each once respawned."""

    def disturb(traffic: Traffic) -> None:
        """Kills a worker, waits for gunicorn to replace it, and so on `kills` times."""
        for number in range(kills):
            traffic.wait_for_answers(traffic.total * (number + 1) // (kills + 1))
            victim = min(server.worker_pids())
            os.kill(victim, signal.SIGKILL)
            traffic.mark(f"killed-{number}")
            wait_for_respawn(server, victim)

    return disturb


def wait_for_respawn(server: RunningServer, killed: int, timeout: float = 60) -> None:
    """Waits until gunicorn runs its full set of workers again, the killed one replaced."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == WORKERS and killed not in pids:
            return
        time.sleep(0.05)
    raise TimeoutError(f"worker {killed} not replaced in {timeout}s:\n{server.log()}")


def predictions_with_killed_workers(
    data_dir: Path, database_url: str, model: Path, total: int, kills: int
) -> Traffic:
    """Runs `total` predictions while `kills` workers are SIGKILLed; checks the service still answers."""
    with serve(data_dir, database_url, workers=WORKERS) as server:
        upload_model(server.url, model)
        traffic = Traffic(server.url, total=total, clients=CLIENTS, prefix="kill")
        traffic.run(kill_workers(server, kills))
        health = requests.get(f"{server.url}/health/", timeout=30)
        assert health.status_code == 200, health.text
        assert health.json()["status"] == "ok"
    print(f"\n{total} predictions, {kills} worker(s) killed: {traffic.kinds()}")
    return traffic


def assert_every_answer_recorded(database_url: str, *traffics: Traffic) -> None:
    """Each 200 has its rows; rows without a 200 belong only to requests whose connection died."""
    recorded = recorded_predictions(database_url)
    served = {i: row for traffic in traffics for i, row in traffic.served().items()}
    assert {i: recorded.get(i) for i in served} == served
    outcomes = [o for traffic in traffics for o in traffic.outcomes]
    unanswered = {o.request_id for o in outcomes if o.kind() in ("dropped", "writer lost")}
    assert {row.request_id for i, row in recorded.items() if i not in served} <= unanswered


def test_a_worker_killed_mid_load_loses_no_served_prediction(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    traffic = predictions_with_killed_workers(
        tmp_path / "data", database_url, model_files(0), total=1_500, kills=1
    )

    assert set(traffic.kinds()) <= {"served", "dropped", "locked"}
    assert served(o for o in traffic.outcomes if "killed-0" in o.marks_before_send)
    assert_every_answer_recorded(database_url, traffic)


@pytest.mark.sqlite_only
def test_the_sqlite_file_stays_sound_when_workers_are_killed_mid_write(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    traffic = predictions_with_killed_workers(
        tmp_path / "data", database_url, model_files(0), total=2_000, kills=3
    )

    with sqlite3.connect(make_url(database_url).database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert set(traffic.kinds()) <= {"served", "dropped", "locked"}
    assert_every_answer_recorded(database_url, traffic)


@pytest.mark.sqlite_only
def test_a_killed_history_writer_is_replaced_and_loses_no_served_prediction(
    tmp_path: Path, database_url: str, model_files: Callable[[int], Path]
) -> None:
    replaced: dict[str, int] = {}

    def kill_writer(traffic: Traffic) -> None:
        """SIGKILLs the host's history writer a third of the way in, then waits for its successor."""
        traffic.wait_for_answers(traffic.total // 3)
        [victim] = server.writer_pids()
        os.kill(victim, signal.SIGKILL)
        traffic.mark("killed")
        deadline = time.monotonic() + 60
        while not (server.writer_pids() - {victim}):
            assert time.monotonic() < deadline, f"the writer was not replaced:\n{server.log()}"
            time.sleep(0.05)
        [replaced["by"]] = server.writer_pids()

    with serve(tmp_path / "data", database_url, workers=WORKERS) as server:
        upload_model(server.url, model_files(0))
        traffic = Traffic(server.url, total=2_000, clients=CLIENTS, prefix="writer")
        traffic.run(kill_writer)
        listening = f"[history writer {replaced['by']}] listening"
        deadline = time.monotonic() + 60
        while listening not in server.log():
            assert time.monotonic() < deadline, f"the new writer does not listen:\n{server.log()}"
            time.sleep(0.05)
        # Each worker thread finds its old connection dead once (and writes itself), then uses the new one.
        after = Traffic(server.url, total=200, clients=CLIENTS, prefix="after")
        after.run(lambda traffic: None)
    print(f"\n{traffic.total} predictions, the history writer killed once: {traffic.kinds()}")

    assert set(traffic.kinds()) <= {"served", "locked", "writer lost"}
    assert set(after.kinds()) == {"served"}
    assert_every_answer_recorded(database_url, traffic, after)
    log = server.log()
    assert "the history writer stopped" in log
    stopped = re.search(rf"\[history writer {replaced['by']}\] stopping: (\d+) requests", log)
    assert stopped, log
    assert int(stopped[1]) > 0, "the new writer recorded requests"
