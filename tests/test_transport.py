"""The ASGI app the workers run, called in process: every protocol through the one data plane.

The native route, the Open Inference Protocol and MLflow's scoring protocol give the same numbers for
the same flights, each recorded with the protocol it came by; refusals are answered on the loop in
each protocol's error shape, and nothing refused is recorded.
"""

from __future__ import annotations

import asyncio
import json
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from flask import Flask
from sqlalchemy import create_engine, select

from flight_delay.api import create_app
from flight_delay.api.services import services_of
from flight_delay.history.models import Prediction
from flight_delay.history.postgres_writer import PostgresBackend
from flight_delay.serving.adapters import ProjectModel
from flight_delay.serving.predictions import PredictionService
from flight_delay.serving.registry import ModelRegistry
from flight_delay.transport import native
from flight_delay.transport.asgi import asgi_app
from flight_delay.validation import MAX_BATCH_SIZE
from tests.asgi import Answer, call, request
from tests.conftest import upload
from tests.databases import backend_under_test, refuse_inserts, write_lock
from tests.factories import minimal_flight
from tests.test_host_writer import writer_serving
from tests.test_postgres_writer import terminate, until
from tests.writers import migrated

PREDICT = "/model/predict/"
V2_INFER = "/v2/models/flight-delay/infer"
FIELDS = list(minimal_flight())


class Front:
    """An app, the ASGI app over it, and the history it records in."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.asgi = asgi_app(app)
        self.db = services_of(app).db

    def ask(self, sent: dict[str, Any]) -> Answer:
        """One request through the ASGI app."""
        return asyncio.run(call(self.asgi, sent))

    def rows(self) -> dict[int, Prediction]:
        """Every recorded prediction, by id."""
        with self.db.transaction() as session:
            return {row.id: row for row in session.scalars(select(Prediction))}


@pytest.fixture
def bare_front(app_config: dict[str, Any], tmp_path: Path) -> Iterator[Front]:
    """The ASGI app of an app without a model: on SQLite through a host writer, on PostgreSQL its own."""
    with ExitStack() as stack:
        if backend_under_test() == "sqlite":
            socket_path = str(tmp_path / "writer.sock")
            writer_db = migrated(app_config["DATABASE_URL"], busy_timeout_ms=20_000)
            stack.callback(writer_db.dispose)
            stack.enter_context(writer_serving(writer_db, socket_path))
            app_config = {**app_config, "HISTORY_WRITER_SOCKET": socket_path}
        yield Front(create_app(app_config))


@pytest.fixture
def front(bare_front: Front, model_files: Callable[[int], Path]) -> Front:
    """The ASGI app of an app serving the model of seed 0."""
    assert upload(bare_front.app.test_client(), model_files(0)).status_code == 201
    return bare_front


def predicted(answer: Answer) -> list[float]:
    """The delays a native answer predicts."""
    assert answer.status == 200, answer.body
    return [p["arr_delay"] for p in answer.json()["predictions"]]


SERVED = {
    "one flight": request("POST", PREDICT, minimal_flight()),
    "a batch": request("POST", PREDICT, {"flights": [minimal_flight(), minimal_flight(dep_delay=None)]}),
    "the path without its slash": request("POST", "/model/predict", minimal_flight()),
    "JSON declared as UTF-8": request(
        "POST", PREDICT, minimal_flight(), content_type="application/json; charset=utf-8"
    ),
    "a +json media type": request("POST", PREDICT, minimal_flight(), content_type="application/vnd.x+json"),
    "a chunked body": request("POST", PREDICT, minimal_flight(), chunked=True),
    "a query string": request("POST", PREDICT + "?verbose=1", minimal_flight()),
    "a NaN literal where null is allowed": request(
        "POST",
        PREDICT,
        json.dumps(minimal_flight()).replace('"dep_delay": 2.0', '"dep_delay": NaN').encode(),
        content_type="application/json",
    ),
}


@pytest.mark.parametrize("case", SERVED)
def test_predictions_are_answered_and_recorded_with_their_request(front: Front, case: str) -> None:
    sent = SERVED[case]
    sent["headers"]["X-Request-ID"] = "front-1"

    answer = front.ask(sent)

    body = answer.json()
    assert answer.status == 200, body
    rows = front.rows()
    for prediction in body["predictions"]:
        row = rows[prediction["history_id"]]
        assert (row.request_id, row.arr_delay, row.protocol) == ("front-1", prediction["arr_delay"], "native")
    assert answer.header("x-request-id") == "front-1"


REFUSED = {
    "another content type": (request("POST", PREDICT, b"{}", content_type="text/plain"), 415),
    "invalid JSON": (request("POST", PREDICT, b'{"year": 2013,', content_type="application/json"), 400),
    "not UTF-8": (request("POST", PREDICT, b'{"carrier": "\xff"}', content_type="application/json"), 400),
    "an empty body": (request("POST", PREDICT, b"", content_type="application/json"), 400),
    "JSON nested too deeply": (
        request("POST", PREDICT, b"[" * 100_000 + b"]" * 100_000, content_type="application/json"),
        400,
    ),
    "an integer of 5,000 digits": (
        request("POST", PREDICT, b'{"id": ' + b"9" * 5000 + b"}", content_type="application/json"),
        400,
    ),
    "a flight the rules refuse": (request("POST", PREDICT, minimal_flight(month=13)), 422),
    "an unknown field": (request("POST", PREDICT, minimal_flight(colour="red")), 422),
    "a flight lacking a field the model reads": (request("POST", PREDICT, {"year": 2013}), 422),
    "too many flights": (request("POST", PREDICT, {"flights": [{}] * (MAX_BATCH_SIZE + 1)}), 422),
    "a GET": (request("GET", PREDICT), 405),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refusals_are_answered_in_the_error_shape_and_record_nothing(front: Front, case: str) -> None:
    sent, status = REFUSED[case]

    answer = front.ask(sent)

    body = answer.json()
    assert (answer.status, body["status"]) == (status, status), body
    assert set(body) >= {"code", "message", "request_id"}
    assert front.rows() == {}
    if status == 405:
        assert answer.header("allow") == "POST"


def test_a_history_that_refuses_the_write_is_a_503(front: Front) -> None:
    with front.db.transaction() as session:
        refuse_inserts(session, "predictions", "disk is full")

    answer = front.ask(request("POST", PREDICT, minimal_flight()))

    assert (answer.status, answer.json()["code"]) == (503, "history_unavailable")
    assert answer.json()["message"].endswith("so it is not served: disk is full.")


def test_requests_waiting_together_share_commits_and_get_their_own_rows(front: Front) -> None:
    async def many() -> list[Answer]:
        sent = [
            request("POST", PREDICT, minimal_flight(dep_delay=float(i)), **{"X-Request-ID": f"loop-{i}"})
            for i in range(60)
        ]
        return await asyncio.gather(*(call(front.asgi, one) for one in sent))

    answers = asyncio.run(many())

    rows = front.rows()
    assert len(rows) == 60
    for i, answer in enumerate(answers):
        [prediction] = answer.json()["predictions"]
        row = rows[prediction["history_id"]]
        assert (row.request_id, row.input["dep_delay"], row.arr_delay) == (
            f"loop-{i}",
            float(i),
            prediction["arr_delay"],
        )
    [engine] = services_of(front.app).writer.engines.values()
    assert engine.commits < 60


@pytest.mark.parametrize("chunked", [False, True])
def test_a_batch_beyond_the_loop_limit_is_checked_and_scored_in_a_thread(
    front: Front, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    batch = {"flights": [minimal_flight(dep_delay=float(i)) for i in range(10)]}
    monkeypatch.setattr(native, "LOOP_BODY_MAX_BYTES", 1024)
    scored_on = []
    score = PredictionService.score

    def watched(service: PredictionService, *args: Any) -> Any:
        scored_on.append(threading.current_thread())
        return score(service, *args)

    monkeypatch.setattr(PredictionService, "score", watched)

    answer = front.ask(request("POST", PREDICT, batch, chunked=chunked))

    assert len(predicted(answer)) == 10
    assert scored_on
    assert threading.main_thread() not in scored_on, "scored off the event loop"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_limit_is_a_413_unrecorded(
    app_config: dict[str, Any], model_files: Callable[[int], Path], chunked: bool
) -> None:
    limited = Front(create_app({**app_config, "MAX_CONTENT_LENGTH": 64}))
    assert upload(limited.app.test_client(), model_files(0)).status_code == 201

    answer = limited.ask(request("POST", PREDICT, minimal_flight(), chunked=chunked))

    assert (answer.status, answer.json()["code"]) == (413, "request_entity_too_large")
    assert answer.header("connection") == "close"
    assert limited.rows() == {}


def test_no_model_is_a_503(bare_front: Front) -> None:
    answer = bare_front.ask(request("POST", PREDICT, minimal_flight()))

    assert (answer.status, answer.json()["code"]) == (503, "model_not_loaded")


def test_an_unscorable_flight_is_a_422(front: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    unscorable = lambda self, flights: ([float("nan")] * len(flights), None)  # noqa: E731
    monkeypatch.setattr(ProjectModel, "predict_recorded", unscorable)

    answer = front.ask(request("POST", PREDICT, minimal_flight()))

    assert (answer.status, answer.json()["code"]) == (422, "unscorable_flight")


def test_a_fault_of_ours_is_a_500_without_details(front: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(native, "scored_body", broken)

    answer = front.ask(request("POST", PREDICT, minimal_flight(), **{"X-Request-ID": "front-1"}))

    assert answer.status == 500
    assert answer.json() == {
        "status": 500,
        "code": "internal_error",
        "message": "Internal server error.",
        "request_id": "front-1",
    }


def test_an_id_the_client_did_not_give_well_is_made_for_it(front: Front) -> None:
    answer = front.ask(request("POST", PREDICT, minimal_flight(), **{"X-Request-ID": "not allowed: spaces"}))

    made = answer.json()["request_id"]
    assert len(made) == 32
    assert set(made) <= set("0123456789abcdef")
    assert answer.header("x-request-id") == made


@pytest.mark.parametrize("path", [PREDICT, "/health/"])
def test_headers_named_with_underscores_are_dropped(front: Front, path: str) -> None:
    """As gunicorn did: X_Request_ID would pass for X-Request-ID in WSGI's environ."""
    sent = request("POST" if path == PREDICT else "GET", path, minimal_flight() if path == PREDICT else None)
    sent["raw_headers"] = [("X_Request_ID", "spoofed")]

    answer = front.ask(sent)

    assert answer.status == 200, answer.body
    assert answer.header("x-request-id") != "spoofed"


def test_a_health_check_reads_no_body_and_closes_the_connection_after(front: Front) -> None:
    sent = request("GET", "/health/live", b"x" * 4096, content_type="application/octet-stream")
    scope_messages = []

    async def ask() -> Answer:
        from tests.asgi import asgi_scope

        scope, _ = asgi_scope(sent)
        replies: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            scope_messages.append("read")
            return {"type": "http.request", "body": b"x" * 4096, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            replies.append(message)

        await front.asgi(scope, receive, send)
        headers = [(k.decode(), v.decode()) for k, v in replies[0]["headers"]]
        return Answer(replies[0]["status"], headers, b"".join(m.get("body", b"") for m in replies[1:]))

    answer = asyncio.run(ask())

    assert answer.status == 200
    assert answer.header("connection") == "close"
    assert scope_messages == [], "the body was not read"


def test_a_model_to_load_is_loaded_off_the_event_loop(front: Front, monkeypatch: pytest.MonkeyPatch) -> None:
    threads = []
    routing = ModelRegistry.routing

    def watched(registry: ModelRegistry) -> Any:
        threads.append(threading.current_thread())
        return routing(registry)

    monkeypatch.setattr(ModelRegistry, "current_routing", lambda registry: None)  # as after an activation
    monkeypatch.setattr(ModelRegistry, "routing", watched)

    assert front.ask(request("POST", PREDICT, minimal_flight())).status == 200
    assert threads
    assert threading.main_thread() not in threads


def test_requests_arriving_during_a_model_load_share_it(
    front: Front, model_files: Callable[[int], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert upload(front.app.test_client(), model_files(1)).status_code == 201
    services_of(front.app).registry.forget()  # not looked up yet here
    lookups = []
    read_active = ModelRegistry._refresh

    def counted(registry: ModelRegistry) -> Any:
        lookups.append(threading.current_thread())
        return read_active(registry)

    monkeypatch.setattr(ModelRegistry, "_refresh", counted)

    async def many() -> list[Answer]:
        return await asyncio.gather(
            *(call(front.asgi, request("POST", PREDICT, minimal_flight())) for _ in range(20))
        )

    assert {answer.status for answer in asyncio.run(many())} == {200}
    assert len(lookups) == 1


# --- the other protocols: the same flights, the same numbers, recorded with the protocol they came by


def columns(flights: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The flights as columns."""
    return {name: [flight[name] for flight in flights] for name in FIELDS}


FLIGHTS = [minimal_flight(), minimal_flight(dep_delay=None, carrier="AA"), minimal_flight(distance=500.0)]
DATATYPES = {"carrier": "BYTES", "origin": "BYTES", "dest": "BYTES", "dep_delay": "FP64", "distance": "FP64"}


def v2_json(flights: list[dict[str, Any]], shape_tail: tuple[int, ...] = ()) -> dict[str, Any]:
    """An inference request with one JSON input per field."""
    inputs = [
        {
            "name": name,
            "datatype": DATATYPES.get(name, "INT64"),
            "shape": [len(flights), *shape_tail],
            "data": values,
        }
        for name, values in columns(flights).items()
    ]
    return {"id": "v2-1", "inputs": inputs}


def v2_binary(flights: list[dict[str, Any]]) -> tuple[bytes, int]:
    """An inference request whose inputs are binary tensors (what tritonclient sends by default)."""
    inputs, blobs = [], []
    for name, values in columns(flights).items():
        datatype = DATATYPES.get(name, "INT64")
        if datatype == "BYTES":
            blob = b"".join(struct.pack("<I", len(v)) + v.encode() for v in values)
        elif datatype == "FP64":
            blob = struct.pack(f"<{len(values)}d", *[float("nan") if v is None else v for v in values])
        else:
            blob = struct.pack(f"<{len(values)}q", *values)
        blobs.append(blob)
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": [len(values)],
                "parameters": {"binary_data_size": len(blob)},
            }
        )
    header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
    return header + b"".join(blobs), len(header)


def test_v2_json_and_binary_give_the_native_numbers_recorded_as_v2(front: Front) -> None:
    native_delays = predicted(front.ask(request("POST", PREDICT, {"flights": FLIGHTS})))
    body, header_length = v2_binary(FLIGHTS)

    as_json = front.ask(request("POST", V2_INFER, v2_json(FLIGHTS, (1,))))
    as_binary = front.ask(
        request(
            "POST",
            V2_INFER,
            body,
            content_type="application/octet-stream",
            **{"Inference-Header-Content-Length": str(header_length)},
        )
    )

    assert as_json.status == 200, as_json.body
    outputs = {o["name"]: o for o in as_json.json()["outputs"]}
    assert outputs["predict"]["data"] == native_delays
    assert outputs["basis"]["data"] == ["at_departure", "before_departure", "at_departure"]
    assert as_json.json()["id"] == "v2-1"
    length = int(as_binary.header("inference-header-content-length"))
    head = json.loads(as_binary.body[:length])
    [predict] = [o for o in head["outputs"] if o["name"] == "predict"]
    assert list(struct.unpack("<3d", as_binary.body[length : length + 24])) == native_delays
    assert predict["parameters"]["binary_data_size"] == 24
    protocols = [row.protocol for row in front.rows().values()]
    assert sorted(protocols) == ["native"] * 3 + ["v2"] * 6


V2_REFUSED = {
    "an unknown model": (request("POST", "/v2/models/other/infer", v2_json(FLIGHTS)), 404),
    "a version not served": (
        request("POST", "/v2/models/flight-delay/versions/abc/infer", v2_json(FLIGHTS)),
        404,
    ),
    "an input that is no field": (
        request(
            "POST", V2_INFER, {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
        ),
        400,
    ),
    "a shape that holds other values": (
        request(
            "POST",
            V2_INFER,
            {"inputs": [{"name": "year", "datatype": "INT64", "shape": [2], "data": [2013]}]},
        ),
        400,
    ),
    "columns of different lengths": (
        request(
            "POST",
            V2_INFER,
            {"inputs": [*v2_json(FLIGHTS)["inputs"][:-1], v2_json(FLIGHTS[:1])["inputs"][-1]]},
        ),
        400,
    ),
    "a flight the rules refuse": (request("POST", V2_INFER, v2_json([minimal_flight(month=13)])), 400),
    "binary data beyond the body": (
        request(
            "POST",
            V2_INFER,
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "year",
                            "datatype": "INT64",
                            "shape": [1],
                            "parameters": {"binary_data_size": 8},
                        }
                    ]
                }
            ).encode(),
            content_type="application/octet-stream",
        ),
        400,
    ),
    "not JSON": (request("POST", V2_INFER, b"{", content_type="application/json"), 400),
    "a GET on infer": (request("GET", V2_INFER), 405),
}


@pytest.mark.parametrize("case", V2_REFUSED)
def test_v2_refusals_are_the_protocols_errors(front: Front, case: str) -> None:
    sent, status = V2_REFUSED[case]

    answer = front.ask(sent)

    assert answer.status == status, answer.body
    if status != 405:
        assert set(answer.json()) == {"error"}
    assert front.rows() == {}


def test_v2_metadata_and_readiness(front: Front) -> None:
    version = front.ask(request("GET", "/model/")).json()["version"]

    metadata = front.ask(request("GET", "/v2/models/flight-delay")).json()

    assert metadata["versions"] == [version]
    assert {i["name"]: i["datatype"] for i in metadata["inputs"]}["carrier"] == "BYTES"
    assert all(i["shape"] == [-1] for i in metadata["inputs"])
    assert front.ask(request("GET", f"/v2/models/flight-delay/versions/{version}")).status == 200
    assert front.ask(request("GET", "/v2/health/live")).json() == {"live": True}
    assert front.ask(request("GET", "/v2/health/ready")).json() == {"ready": True}
    assert front.ask(request("GET", "/v2/models/flight-delay/ready")).json() == {
        "name": "flight-delay",
        "ready": True,
    }
    assert front.ask(request("GET", "/v2")).json()["extensions"] == ["binary_tensor_data"]


def test_v2_without_a_model_is_not_ready(bare_front: Front) -> None:
    ready = bare_front.ask(request("GET", "/v2/health/ready"))

    assert (ready.status, ready.json()) == (503, {"ready": False})
    assert bare_front.ask(request("GET", "/v2/health/live")).status == 200
    assert bare_front.ask(request("POST", V2_INFER, v2_json(FLIGHTS))).status == 503


def mlflow_bodies() -> dict[str, tuple[bytes, str]]:
    """The same DataFrame in every form MLflow's scoring protocol takes."""
    frame = pd.DataFrame(FLIGHTS)
    split = json.loads(frame.to_json(orient="split"))
    return {
        "dataframe_split": (json.dumps({"dataframe_split": split}).encode(), "application/json"),
        "dataframe_split without index": (
            json.dumps({"dataframe_split": {k: v for k, v in split.items() if k != "index"}}).encode(),
            "application/json",
        ),
        "dataframe_records": (
            json.dumps({"dataframe_records": json.loads(frame.to_json(orient="records"))}).encode(),
            "application/json",
        ),
        "instances": (json.dumps({"instances": FLIGHTS}).encode(), "application/json"),
        "inputs as columns": (json.dumps({"inputs": columns(FLIGHTS)}).encode(), "application/json"),
        "text/csv": (frame.to_csv(index=False).encode(), "text/csv"),
    }


@pytest.mark.parametrize("form", mlflow_bodies())
def test_mlflow_invocations_give_the_native_numbers_recorded_as_mlflow(front: Front, form: str) -> None:
    native_delays = predicted(front.ask(request("POST", PREDICT, {"flights": FLIGHTS})))
    body, content_type = mlflow_bodies()[form]

    answer = front.ask(request("POST", "/invocations", body, content_type=content_type))

    assert answer.status == 200, answer.body
    assert answer.json() == {"predictions": native_delays}
    assert sorted(row.protocol for row in front.rows().values()) == ["mlflow"] * 3 + ["native"] * 3


MLFLOW_REFUSED = {
    "another content type": (request("POST", "/invocations", b"x", content_type="text/plain"), 415, None),
    "no input format": (request("POST", "/invocations", {"columns": []}), 400, "BAD_REQUEST"),
    "two input formats": (
        request("POST", "/invocations", {"instances": [], "inputs": {}}),
        400,
        "BAD_REQUEST",
    ),
    "a flight the rules refuse": (
        request("POST", "/invocations", {"instances": [minimal_flight(month=13)]}),
        400,
        "INVALID_PARAMETER_VALUE",
    ),
    "ragged split data": (
        request("POST", "/invocations", {"dataframe_split": {"columns": ["year"], "data": [[2013, 1]]}}),
        400,
        "BAD_REQUEST",
    ),
}


@pytest.mark.parametrize("case", MLFLOW_REFUSED)
def test_mlflow_refusals_are_mlflows_errors(front: Front, case: str) -> None:
    sent, status, error_code = MLFLOW_REFUSED[case]

    answer = front.ask(sent)

    assert answer.status == status, answer.body
    if error_code is None:
        assert answer.body.startswith(b"This predictor only supports the following content types")
    else:
        assert answer.json()["error_code"] == error_code
    assert front.rows() == {}


def test_mlflow_ping_and_version(front: Front, bare_front: Front) -> None:
    assert front.ask(request("GET", "/ping")).status == 200
    assert front.ask(request("GET", "/version")).status == 200


@pytest.mark.postgresql_only
def test_on_postgresql_a_connection_ended_mid_commit_serves_no_unrecorded_prediction(
    front: Front, app_config: dict[str, Any]
) -> None:
    """Requests in flight when the server ends the writer's connection: 503s, never an unstored id."""
    admin = create_engine(app_config["DATABASE_URL"], isolation_level="AUTOCOMMIT")
    writer = services_of(front.app).writer

    async def cut_short() -> list[Answer]:
        assert (await call(front.asgi, request("POST", PREDICT, minimal_flight()))).status == 200  # connected
        backend = writer.engine().backend
        assert isinstance(backend, PostgresBackend)
        assert backend.connection is not None
        pid = backend.connection.info.backend_pid
        with write_lock(app_config["DATABASE_URL"], "predictions"):
            sent = [
                request("POST", PREDICT, minimal_flight(), **{"X-Request-ID": f"cut-{i}"}) for i in range(20)
            ]
            pending = asyncio.gather(*(call(front.asgi, one) for one in sent))
            await until(admin, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid", pid)
            await terminate(admin, pid)
        return await pending

    try:
        answers = asyncio.run(cut_short())
    finally:
        admin.dispose()

    recorded = {row.id: row.request_id for row in front.rows().values()}
    refused = [answer.json() for answer in answers if answer.status != 200]
    assert refused, "the statement in flight was refused"
    assert {(body["status"], body["code"]) for body in refused} == {(503, "history_unavailable")}
    for i, answer in enumerate(answers):
        if answer.status == 200:
            [prediction] = answer.json()["predictions"]
            assert recorded[prediction["history_id"]] == f"cut-{i}"
