"""Canary and shadow in the one data plane: every protocol, called as the workers run them (ASGI, in process).

A canary answers the requests whose X-Request-ID hashes into its share, the same ones in every
process; a shadow scores every prediction after its answer, recorded (shadow_of) and never returned.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from flight_delay.api.services import services_of
from flight_delay.history.models import Prediction, utcnow
from flight_delay.history.writer import HistoryWriter
from flight_delay.serving.dataplane import PredictRequest
from flight_delay.serving.lifecycle import canary_bucket, canary_share
from flight_delay.serving.shadow import ShadowJob, ShadowScorer
from flight_delay.validation import checked_flights
from tests import test_transport
from tests.asgi import Answer, call, request
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.test_transport import PREDICT, V2_INFER, Front, v2_json

FLIGHTS = [minimal_flight(), minimal_flight(dep_delay=None, carrier="AA")]
# test_transport's fixtures: the ASGI app the workers run, over an app serving the model of seed 0.
bare_front = test_transport.bare_front
front = test_transport.front


class Split:
    """A front serving the model of seed 0, with seed 1 stored as a candidate."""

    def __init__(self, front: Front, candidate: str) -> None:
        self.front = front
        self.client = front.app.test_client()
        self.services = services_of(front.app)
        self.active = self.client.get("/model/").get_json()["version"]
        self.candidate = candidate

    def set(self, **body: Any) -> None:
        """PUT /model/traffic."""
        response = self.client.put("/model/traffic", json=body, headers=ADMIN_HEADERS)
        assert response.status_code == 200, response.get_json()

    def direct(self, version: str, flights: list[dict[str, Any]]) -> list[float]:
        """What a version predicts for the flights, called directly."""
        return [float(v) for v in self.services.registry.model_of(version).predict(flights)]

    def rows(self) -> list[Prediction]:
        """Every recorded prediction, oldest first."""
        with self.services.db.transaction() as session:
            return list(session.scalars(select(Prediction).order_by(Prediction.id)))

    def ask(self, *sent: dict[str, Any]) -> list[Answer]:
        """Sends the requests in turn on one event loop, then waits for the shadow's work to be recorded."""

        async def run() -> list[Answer]:
            answers = [await call(self.front.asgi, one) for one in sent]
            while not self.services.dataplane.shadows.idle():
                await asyncio.sleep(0.01)
            return answers

        return asyncio.run(run())


@pytest.fixture
def split(front: Front, model_files: Callable[[int], Path]) -> Split:
    """The front of test_transport with a candidate stored."""
    with model_files(1).open("rb") as handle:
        stored = front.app.test_client().post(
            "/model/load/?activate=false", data={"file": (handle, "m1.pkl")}, headers=ADMIN_HEADERS
        )
    assert stored.status_code == 201, stored.get_json()
    return Split(front, stored.get_json()["version"])


def ids_in_canary(percent: float, inside: bool, count: int) -> list[str]:
    """Request ids whose bucket falls inside (or outside) a canary of `percent`."""
    share = canary_share(percent)
    found = (f"pick-{i}" for i in range(100_000))
    return [i for i in found if (canary_bucket(i) < share) == inside][:count]


def test_the_bucket_of_an_id_is_the_same_in_every_process() -> None:
    ids = [f"process-{i}" for i in range(200)]
    script = f"from flight_delay.serving.lifecycle import canary_bucket as b; print([b(i) for i in {ids!r}])"
    other = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": "12345"},  # Python's own hash() would differ here
        capture_output=True,
        text=True,
        check=True,
    )

    assert other.stdout.strip() == str([canary_bucket(i) for i in ids])
    assert len({canary_bucket(i) for i in ids}) > 150  # spread, not one bucket


def test_a_canary_answers_its_share_of_1000_ids_within_5_points(split: Split) -> None:
    split.set(canary={"version": split.candidate, "percent": 20})
    sent = [request("POST", PREDICT, minimal_flight(), **{"X-Request-ID": f"share-{i}"}) for i in range(1000)]

    answers = split.ask(*sent)

    by_canary = [a.json()["model_version"] == split.candidate for a in answers]
    print(f"canary answered {sum(by_canary)} of 1000 at 20%")
    assert 150 <= sum(by_canary) <= 250
    expected = [canary_bucket(f"share-{i}") < canary_share(20) for i in range(1000)]
    assert by_canary == expected
    again = split.ask(*sent[:50])
    assert [a.json()["model_version"] for a in again] == [a.json()["model_version"] for a in answers[:50]]


def test_every_protocol_is_answered_by_the_canary_in_its_share_and_says_so(split: Split) -> None:
    split.set(canary={"version": split.candidate, "percent": 30})
    inside, outside = ids_in_canary(30, True, 1)[0], ids_in_canary(30, False, 1)[0]
    for request_id, version in ((inside, split.candidate), (outside, split.active)):
        native, v2, mlflow = split.ask(
            request("POST", PREDICT, {"flights": FLIGHTS}, **{"X-Request-ID": request_id}),
            request("POST", V2_INFER, v2_json(FLIGHTS), **{"X-Request-ID": request_id}),
            request("POST", "/invocations", {"dataframe_records": FLIGHTS}, **{"X-Request-ID": request_id}),
        )
        delays = split.direct(version, FLIGHTS)
        assert native.json()["model_version"] == version
        assert [p["arr_delay"] for p in native.json()["predictions"]] == delays
        assert v2.json()["model_version"] == version
        assert {o["name"]: o for o in v2.json()["outputs"]}["predict"]["data"] == delays
        assert mlflow.header("x-model-version") == version
        assert mlflow.json()["predictions"] == delays
    recorded = [(row.request_id, row.protocol, row.model_version) for row in split.rows()]
    assert recorded == [
        (request_id, protocol, version)
        for request_id, version in ((inside, split.candidate), (outside, split.active))
        for protocol in ("native", "native", "v2", "v2", "mlflow", "mlflow")
    ]


def test_a_v2_request_naming_the_canary_is_served_by_it_and_another_version_is_a_404(split: Split) -> None:
    split.set(canary={"version": split.candidate, "percent": 1})
    outside = ids_in_canary(1, False, 1)[0]
    path = f"/v2/models/flight-delay/versions/{split.candidate}/infer"

    pinned, metadata = split.ask(
        request("POST", path, v2_json(FLIGHTS), **{"X-Request-ID": outside}),
        request("GET", "/v2/models/flight-delay"),
    )
    split.set(canary=None)
    gone = split.ask(request("POST", path, v2_json(FLIGHTS)))[0]

    assert pinned.json()["model_version"] == split.candidate
    assert metadata.json()["versions"] == [split.active, split.candidate]
    assert gone.status == 404
    assert split.candidate in gone.json()["error"]


def test_a_shadow_scores_every_protocol_after_the_answer_recorded_never_returned(split: Split) -> None:
    split.set(shadow=split.candidate)

    answers = split.ask(
        request("POST", PREDICT, {"flights": FLIGHTS}),
        request("POST", V2_INFER, v2_json(FLIGHTS)),
        request("POST", "/invocations", {"dataframe_records": FLIGHTS}),
    )

    served = split.direct(split.active, FLIGHTS)
    assert answers[0].json()["model_version"] == split.active
    assert [p["arr_delay"] for p in answers[0].json()["predictions"]] == served
    assert answers[1].json()["model_version"] == split.active
    assert answers[2].json()["predictions"] == served
    answered_ids = {p["history_id"] for p in answers[0].json()["predictions"]}
    rows = split.rows()
    shadows = [row for row in rows if row.shadow_of is not None]
    by_id = {row.id: row for row in rows}
    assert len(shadows) == 6
    assert not answered_ids & {row.id for row in shadows}
    shadowed = split.direct(split.candidate, FLIGHTS)
    for row in shadows:
        original = by_id[row.shadow_of]
        assert (row.model_version, original.model_version) == (split.candidate, split.active)
        assert (row.request_id, row.protocol, row.input) == (
            original.request_id,
            original.protocol,
            original.input,
        )
        assert row.arr_delay == shadowed[FLIGHTS.index(row.input)]
    listed = split.client.get(f"/model/history/?model_version={split.candidate}").get_json()
    assert {item["id"] for item in listed["items"]} == {row.id for row in shadows}
    assert {item["shadow_of"] for item in listed["items"]} == {row.shadow_of for row in shadows}


def test_the_shadow_has_done_nothing_when_the_prediction_returns(split: Split) -> None:
    split.set(shadow=split.candidate)
    dataplane = split.services.dataplane

    async def run() -> tuple[int, bool, int]:
        flights = [minimal_flight()]
        await dataplane.predict(PredictRequest(flights, "after-1", 0.0))
        shadows_then, idle_then = len([r for r in split.rows() if r.shadow_of]), dataplane.shadows.idle()
        while not dataplane.shadows.idle():
            await asyncio.sleep(0.01)
        return shadows_then, idle_then, len([r for r in split.rows() if r.shadow_of])

    before, idle, after = asyncio.run(run())

    assert (before, idle, after) == (0, False, 1)


def test_the_shadow_is_not_consulted_for_a_canary_of_the_same_version(split: Split) -> None:
    split.set(canary={"version": split.candidate, "percent": 50}, shadow=split.candidate)
    inside = ids_in_canary(50, True, 1)[0]

    split.ask(request("POST", PREDICT, minimal_flight(), **{"X-Request-ID": inside}))

    assert [(row.model_version, row.shadow_of) for row in split.rows()] == [(split.candidate, None)]


class NeverWrites:
    """A history writer that never finishes a commit: the shadow's queue fills."""

    async def record(self, rows: Any) -> list[int]:
        await asyncio.Event().wait()
        return []


def dropped(reason: str) -> float:
    """The drop counter's value for a reason."""
    return REGISTRY.get_sample_value("flight_delay_shadow_dropped_total", {"reason": reason}) or 0.0


def test_a_full_shadow_queue_drops_and_counts(split: Split) -> None:
    writer: HistoryWriter = NeverWrites()
    scorer = ShadowScorer(writer, capacity=3)
    model = split.services.registry.routing().active
    flights = checked_flights([minimal_flight(), minimal_flight()], False)
    before = dropped("queue_full")

    async def run() -> bool:
        for number in range(4):  # in a row: nothing is taken from the queue meanwhile
            scorer.submit(ShadowJob(model, flights, f"full-{number}", "native", [1, 2], utcnow()))
        return scorer.idle()

    assert asyncio.run(run()) is False
    # The first job's 2 flights fit in 3; the three after it do not: 6 flights dropped.
    assert dropped("queue_full") - before == 6


def test_monitoring_puts_the_split_side_by_side_over_one_window(split: Split, model_files: Callable) -> None:
    with model_files(2).open("rb") as handle:
        third = split.client.post(
            "/model/load/?activate=false", data={"file": (handle, "m2.pkl")}, headers=ADMIN_HEADERS
        ).get_json()["version"]
    split.set(canary={"version": split.candidate, "percent": 30}, shadow=third)
    sent = [request("POST", PREDICT, FLIGHTS[i % 2], **{"X-Request-ID": f"side-{i}"}) for i in range(40)]
    answers = split.ask(*sent)
    served = {a.json()["predictions"][0]["history_id"]: a.json()["model_version"] for a in answers}
    actual = {history_id: float(i % 7) for i, history_id in enumerate(served)}
    posted = [{"history_id": i, "arr_delay": a} for i, a in actual.items()]
    assert (
        split.client.post("/model/actuals/", json={"actuals": posted}, headers=ADMIN_HEADERS).status_code
        == 200
    )

    report = split.client.get("/model/monitoring/").get_json()

    rows = {row.id: row for row in split.rows()}
    expected = {"active": split.active, "canary": split.candidate, "shadow": third}
    for entry in report["versions"]:
        assert entry["version"] == expected[entry["role"]]
        if entry["role"] == "shadow":
            errors = [r.arr_delay - actual[r.shadow_of] for r in rows.values() if r.model_version == third]
        else:
            errors = [rows[i].arr_delay - actual[i] for i, v in served.items() if v == entry["version"]]
        assert entry["live"]["count"] == len(errors)
        assert entry["live"]["mae"] == pytest.approx(sum(abs(e) for e in errors) / len(errors), rel=1e-9)
    assert [e["role"] for e in report["versions"]] == ["active", "canary", "shadow"]
    assert report["versions"][2]["live"]["count"] == 40
