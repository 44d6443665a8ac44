"""The benchmark harness's own logic: profile stages, wrk's summary, MLServer's payload, the history fill."""

from __future__ import annotations

import glob
import json
import os
import socket
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from bench import history, inprocess, loadgen, payloads, postgres, procs, profiling, report, run
from bench.inprocess import make_app
from flask.testing import FlaskClient
from sqlalchemy import make_url

from flight_delay.context.definitions import CONTEXT_FEATURES
from tests.factories import minimal_flight, tiny_model

# Flask's requests, on a2wsgi's threads.
HANDLE_REQUEST = (
    "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81);"
    "WSGIResponder.wsgi (a2wsgi/wsgi.py:262);app (flight_delay/transport/router.py:120)"
)
HANDLE = f"{HANDLE_REQUEST};Flask.__call__ (flask/app.py:1536)"
# Requests on the event loop.
LOOP = (
    "UvicornWorker.run (uvicorn_worker/_workers.py:120);asyncio_run (uvicorn/_compat.py:30);"
    "Runner.run (asyncio/runners.py:118)"
)
ASGI = f"{LOOP};RequestResponseCycle.run_asgi (uvicorn/protocols/http/httptools_impl.py:409)"
ASGI_FRONT = f"{ASGI};AccessLog.__call__ (flight_delay/transport/middleware.py:50)"
ROUTED = f"{ASGI_FRONT};Router.__call__ (flight_delay/transport/router.py:50)"
ASGI_PREDICT = (
    f"{ROUTED};predict (flight_delay/transport/native.py:40);"
    "DataPlane.predict (flight_delay/serving/dataplane.py:60)"
)
# The group commit's task on the loop, and a batch a worker commits itself in a thread.
DRAIN = f"{LOOP};GroupCommit._drain (flight_delay/history/writer.py:125)"
LOCAL = (
    "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81);"
    "SqliteCommitter.commit_now (flight_delay/history/sqlite_writer.py:105)"
)
HOST = "main (flight_delay/history/host_writer.py:150);run (asyncio/runners.py:190)"
RAW_PROFILE = "\n".join(
    [
        f'process 1:"flight-delay serve";{LOCAL};insert_sqlite_rows (flight_delay/history/repository.py:90);'
        "sqlite3_step (libsqlite3.so.0.8.6);sqlite3InvokeBusyHandler (libsqlite3.so.0.8.6);"
        "usleep (libc.so.6) 7",
        f"{LOCAL};Database.sqlite_writing (flight_delay/history/database.py:180);fdatasync (libc.so.6) 3",
        f"{LOCAL};Database.sqlite_writing (flight_delay/history/database.py:180) 2",
        f"{LOCAL};insert_sqlite_rows (flight_delay/history/repository.py:90) 5",
        f"{LOCAL};_GeneratorContextManager.__enter__ (contextlib.py:137);"
        "ProcessWriteLock.held (flight_delay/history/sqlite_writer.py:75) 2",
        f"{DRAIN};GroupCommit._commit (flight_delay/history/writer.py:160);"
        "SqliteBackend.commit (flight_delay/history/sqlite_writer.py:125);"
        "stored_values (flight_delay/history/repository.py:70) 2",
        f"{DRAIN};GroupCommit._commit (flight_delay/history/writer.py:160);"
        "SqliteBackend._through_writer (flight_delay/history/sqlite_writer.py:150) 1",
        f"{ASGI_PREDICT};PredictionService.score (flight_delay/serving/predictions.py:110);"
        "ProjectModel.predict (flight_delay/serving/adapters.py:60);"
        "SingleRowPredictor.predict (flight_delay/serving/single_row.py:60) 5",
        f"{ASGI_PREDICT};PredictionService.score (flight_delay/serving/predictions.py:110);"
        "FlightDelayModel.predict_features (flight_delay/artifact.py:45);"
        "Booster.predict (lightgbm/basic.py:4885) 4",
        f"{ASGI_PREDICT};PredictionService.score (flight_delay/serving/predictions.py:110);"
        "FeatureContract.encode (flight_delay/features.py:170) 2",
        f"{ASGI_PREDICT};ModelRegistry.active (flight_delay/serving/registry.py:110) 6",
        f"{ASGI_PREDICT};PredictionService.score (flight_delay/serving/predictions.py:110) 1",
        f"{ASGI_PREDICT};checked_flights (flight_delay/validation/__init__.py:60);"
        "accepted_values (flight_delay/validation/compiled.py:80) 2",
        f"{ROUTED};predict (flight_delay/transport/native.py:40);"
        "request_of (flight_delay/transport/native.py:48);"
        "parsed_json (flight_delay/transport/native.py:90) 1",
        f"{ROUTED};predict (flight_delay/transport/native.py:40);"
        "answer (flight_delay/transport/native.py:56);"
        "json_reply (flight_delay/replies.py:80) 1",
        f"{HOST};HostWriterServer.connection (flight_delay/history/host_writer.py:90);"
        "fdatasync (libc.so.6) 3",
        f"{HOST};BaseEventLoop.run_forever (asyncio/base_events.py:600);"
        "EpollSelector.select (selectors.py:468) 5",
        f"{ROUTED};observe_request (flight_delay/observability/metrics.py:55) 3",
        f"{ROUTED};send_reply (flight_delay/transport/http.py:60);"
        "RequestResponseCycle.send (uvicorn/protocols/http/httptools_impl.py:500) 3",
        f"{ASGI_FRONT};access_line (flight_delay/transport/middleware.py:120) 1",
        f"{ROUTED};WSGIMiddleware.__call__ (a2wsgi/wsgi.py:165);"
        "WSGIResponder.__call__ (a2wsgi/wsgi.py:195) 2",
        f"{HANDLE};Flask.full_dispatch_request (flask/app.py:911) 2",
        f"{ASGI} 1",
        f"{LOOP};HttpToolsProtocol.data_received (uvicorn/protocols/http/httptools_impl.py:200) 4",
        f"{LOOP} 6",
        "Thread._bootstrap (threading.py:1002);_worker (concurrent/futures/thread.py:81) 9",
        "a line that is not a stack",
    ]
)


def test_breakdown_sorts_sampled_stacks_into_request_stages() -> None:
    """Each sampled stack lands in the stage its innermost meaningful frame names."""
    counts = profiling.breakdown(RAW_PROFILE)
    assert dict(counts) == {
        "history: waiting for SQLite's write lock (busy-handler sleeps)": 7,
        "history: fsync (synchronous=FULL)": 3,
        "history: BEGIN + COMMIT": 2,
        "history: INSERT and session": 5,
        "history: waiting for the other worker's commit (flock)": 2,
        "history: handing rows to the host writer (event loop)": 2 + 1,
        "booster (LightGBM predict)": 5 + 4,
        "encoding (feature contract)": 2,
        "active-model lookup (registry.active)": 6,
        "data plane, other (checks, shaping)": 1,
        "parsing + validation (JSON, msgspec, the rules; marshmallow words refusals)": 2 + 1,
        "response serialization (marshmallow dump, JSON)": 1,
        "front of predict (middleware, routing, headers, metrics, access log)": 3 + 1,
        "uvicorn (response write)": 3,
        "a2wsgi (Flask's requests handed to threads)": 2,
        profiling.HOST_WRITER: 3,
        "Flask/werkzeug/flask-smorest (routing, request, hooks)": 2,
        profiling.WAITING: 9 + 5,
        profiling.SERVER_LOOP: 1 + 4 + 6,
    }


def test_parse_report_reads_the_lua_summary_and_adds_up_errors() -> None:
    """The JSON line of the Lua hook becomes requests, seconds, latencies and one error count."""
    stdout = (
        "Running 20s test @ http://127.0.0.1:8000/model/predict/\n  2 threads and 16 connections\n"
        'BENCH_JSON {"requests": 3000, "duration_us": 20000000, "p50_us": 4500, "p99_us": 31000, '
        '"mean_us": 6000.5, "connect": 1, "read": 2, "write": 0, "status": 3, "timeout": 4}\n'
    )
    result = loadgen.parse_report(stdout)
    assert (result.requests, result.seconds, result.rps) == (3000, 20.0, 150.0)
    assert (result.p50_ms, result.p99_ms, result.errors) == (4.5, 31.0, 10)
    with pytest.raises(ValueError, match="no summary"):
        loadgen.parse_report("wrk: connection refused")


def test_post_script_holds_the_body_verbatim(tmp_path: Path) -> None:
    """The Lua script posts the JSON exactly as given, quotes and all."""
    body = json.dumps({"carrier": "UA", "note": 'it\'s "quoted"'})
    script = loadgen.write_post_script(body, tmp_path / "post.lua").read_text()
    assert f"wrk.body = [==[{body}]==]" in script
    assert 'wrk.method = "POST"' in script


def test_mlserver_payload_and_text_model_predict_what_the_artifact_predicts(tmp_path: Path) -> None:
    """The V2 request carries the contract-encoded row; the exported text model scores it the same."""
    model = tiny_model(0)
    flight = {
        **minimal_flight(),
        **dict.fromkeys(CONTEXT_FEATURES, 1.0),
    }  # context found: `booster` scores it
    row = payloads.encoded_row(model, flight)
    body = payloads.v2_request(row)
    tensor = body["inputs"][0]
    assert (tensor["datatype"], tensor["shape"]) == ("FP64", [1, len(model.contract.feature_names)])
    payloads.export_for_mlserver(model, tmp_path)
    settings = json.loads((tmp_path / "model-settings.json").read_text())
    assert settings["implementation"] == "mlserver_lightgbm.LightGBMModel"
    booster = lgb.Booster(model_file=str(tmp_path / "model.txt"))
    served = booster.predict(np.array(tensor["data"]).reshape(tensor["shape"]))
    assert served[0] == pytest.approx(model.predict([flight])[0] - flight["dep_delay"], abs=1e-9)


def test_the_single_flight_is_a_real_flight_with_every_context_feature_found() -> None:
    """FLIGHT is the dataset's row, asked as of its departure; the posted days give it all its context."""
    flights, _ = payloads.context_posts()
    [row] = [
        f for f in flights if (f["day"], f["carrier"], f["flight"]) == (2, "UA", payloads.FLIGHT["flight"])
    ]
    found = payloads.with_context(payloads.FLIGHT)

    assert {k: row[k] for k in payloads.FLIGHT if k != "as_of"} == {
        k: v for k, v in payloads.FLIGHT.items() if k != "as_of"
    }
    assert not any(np.isnan(found[name]) for name in CONTEXT_FEATURES)
    assert found["previous_arr_delay"] is not None


@pytest.mark.sqlite_only
def test_fill_adds_rows_the_api_reads_back(loaded_client: FlaskClient, app_config: dict[str, Any]) -> None:
    """Filled rows copy the service's own formats: the history endpoint lists and counts them."""
    assert loaded_client.post("/model/predict/", json=minimal_flight()).status_code == 200
    db_path = Path(app_config["DATABASE_URL"].removeprefix("sqlite:///"))
    added = history.fill(db_path, [minimal_flight(carrier="AA"), minimal_flight(carrier="DL")], total=300)
    assert added == 299
    assert history.fill(db_path, [minimal_flight()], total=300) == 0
    page = loaded_client.get("/model/history/?page_size=3").get_json()
    assert page["total"] == 300
    newest = page["items"][0]
    assert newest["request_id"] == "bench-fill-000000298"
    assert newest["input"]["carrier"] == "AA"
    assert newest["created_at"].endswith("+00:00")


def test_group_cpu_seconds_counts_this_process_group() -> None:
    """The CPU time of our own process group is read from /proc and grows with work."""
    before = procs.group_cpu_seconds(os.getpgrp())
    sum(i * i for i in range(3_000_000))
    assert procs.group_cpu_seconds(os.getpgrp()) > before


def test_the_in_process_app_is_a_production_app_that_starts(tmp_path: Path, model_files: Any) -> None:
    app = make_app(tmp_path / "inprocess", model_files(0))

    assert app.config["ENV"] == "production"
    assert len(app.config["ML_API_ADMIN_TOKEN"]) >= 16


def test_profile_rows_give_gil_shares_of_all_work_and_wall_shares_of_request_time() -> None:
    def part(stages: dict[str, int]) -> dict[str, Any]:
        return {"stages": stages, "rate": 100, "requests": 10}

    rows = report.profile_rows(
        {
            "gil": part({"booster": 30, profiling.SERVER_LOOP: 10, profiling.WAITING: 50}),
            "wall": part({"booster": 40, profiling.SERVER_LOOP: 60, profiling.WAITING: 5}),
        }
    )

    assert rows == [
        ["booster", "30.00", "75%", "40.00", "100%"],
        [profiling.SERVER_LOOP, "10.00", "25%", "60.00", ""],
    ]


def test_parse_report_counts_answers_less_the_error_statuses() -> None:
    """wrk counts a 4xx or 5xx answer as completed and as an error: it is not an answered prediction."""
    stdout = (
        'BENCH_JSON {"requests": 500, "duration_us": 1000000, "p50_us": 1000, "p99_us": 2000, '
        '"mean_us": 1000.0, "connect": 0, "read": 1, "write": 0, "status": 7, "timeout": 0}\n'
    )
    result = loadgen.parse_report(stdout)
    assert (result.errors, result.status_errors, result.answered) == (8, 7, 493)


def test_backends_default_to_both_and_one_may_be_chosen() -> None:
    assert run.parse_args([]).backends == ("sqlite", "postgres")
    assert run.parse_args(["--backends", "postgres"]).backends == ("postgres",)
    assert run.parse_args(["--backends", "postgres, sqlite,postgres"]).backends == ("postgres", "sqlite")
    with pytest.raises(SystemExit):
        run.parse_args(["--backends", "mysql"])


def load_figures(rps: float, recorded: int, answered: int) -> dict[str, Any]:
    """One load run's figures as the harness stores them."""
    return {
        "rps": rps,
        "p50_ms": 5.0,
        "p99_ms": 10.0,
        "errors": 0,
        "cpu_ms_per_request": 0.5,
        "recorded": recorded,
        "answered": answered,
    }


def backend_results() -> dict[str, Any]:
    """Results whose SQLite runs recorded every answer and whose PostgreSQL second run missed one."""
    runs = {
        "sqlite": [load_figures(3000, 60_010, 60_000), load_figures(3200, 64_000, 64_000)],
        "postgres": [load_figures(2000, 40_000, 40_000), load_figures(2000, 39_999, 40_000)],
    }
    load = {
        "ours": {backend: run.mean_run(both) for backend, both in runs.items()},
        "ours_runs": runs,
        "v2": {"sqlite": load_figures(3000, 60_000, 60_000), "postgres": load_figures(1700, 34_000, 34_000)},
        "ceiling": load_figures(15_000, 0, 0),
        "mlserver": {"0": load_figures(1550, 0, 0), "1": load_figures(800, 0, 0)},
        "mlserver_best": "0",
    }
    results = {
        "load": load,
        "inprocess": {
            "single": {inprocess.PREDICT_PATH: 60e-6, inprocess.RAW_ROW: 40e-6},
            "batch": {inprocess.RAW_MATRIX: 36e-3},
        },
        "batch": {"flights": 10_000, "http_seconds": 0.25, "v2_http_seconds": 0.26},
        "history": {"rows": 1_000_000, "first_page": 0.07, "deep_page": 0.09},
    }
    return {**results, "ratios": run.ratios(results)}


def test_targets_hold_each_backends_throughput_and_its_recorded_answers() -> None:
    rows = {row[0]: row[1:] for row in report.target_rows(backend_results())}

    assert rows["single-flight req/s, ours on SQLite / MLServer (best)"] == ["2.00x", ">= 1.5x", "met"]
    assert rows["single-flight req/s, ours on PostgreSQL / MLServer (best)"] == [
        "1.29x",
        ">= 1.5x",
        "not met",
    ]
    assert rows["every answered prediction in the history, SQLite"] == [
        "124,010 rows / 124,000 answers",
        "rows >= answers, each run",
        "met",
    ]
    # One run short of an answer fails the check, though the other run's spare rows cover it in sum.
    assert rows["every answered prediction in the history, PostgreSQL"][2] == "not met"
    assert rows["single-flight req/s, ours on SQLite: V2 / native"] == ["0.94x", ">= 0.9x", "met"]
    assert rows["single-flight req/s, ours on PostgreSQL: V2 / native"] == ["0.85x", ">= 0.9x", "not met"]
    assert rows["batch of 10,000 through V2 / native, over HTTP"] == ["1.04x", "<= 1.1x", "met"]


def test_load_rows_show_each_backend_and_its_ratio_to_mlservers_best() -> None:
    labels = [row[0] for row in report.load_rows(backend_results())]

    assert labels[0] == "ours: gunicorn 2 uvicorn workers, history on SQLite, synchronous=FULL (mean)"
    assert labels[3] == "  ours through V2 (Open Inference Protocol), right after"
    assert labels[4] == "ours: gunicorn 2 uvicorn workers, history on PostgreSQL (mean)"
    assert labels[-2:] == ["ours on SQLite / MLServer (best)", "ours on PostgreSQL / MLServer (best)"]


def test_recorded_rows_counts_the_history_on_the_backend_under_test(
    loaded_client: FlaskClient, app_config: dict[str, Any]
) -> None:
    assert history.recorded_rows(app_config["DATABASE_URL"]) == 0
    flights = [minimal_flight(), minimal_flight(carrier="AA")]
    assert loaded_client.post("/model/predict/", json={"flights": flights}).status_code == 200
    assert history.recorded_rows(app_config["DATABASE_URL"]) == 2


@pytest.mark.sqlite_only  # the server is the script's, not the one under test: once is enough
@pytest.mark.skipif(
    not (glob.glob("/usr/lib/postgresql/*/bin/initdb") or os.environ.get("PG_BINDIR")),
    reason="PostgreSQL is not installed",
)
def test_the_throwaway_postgres_commits_on_answer_and_is_gone_after() -> None:
    with postgres.server() as url:
        parsed = make_url(url)
        assert parsed.host == "127.0.0.1"
        assert postgres.settings(url)["synchronous_commit"] == "on"
    with socket.socket() as sock:
        assert sock.connect_ex((parsed.host, parsed.port)) != 0
