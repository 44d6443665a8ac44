"""Runs the whole benchmark in one go and prints its tables: `python -m bench` (see `make bench`)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from bench import history, inprocess, loadgen, payloads, postgres, procs, profiling, report

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
SAME_PREDICTION = 1e-9
SINGLE_CONNECTION_SECONDS = 5
BACKENDS = tuple(report.BACKENDS)


@dataclass(frozen=True)
class Options:
    """What to run and for how long."""

    backends: tuple[str, ...]
    connections: int
    threads: int
    duration: float
    warmup: float
    mlserver_workers: tuple[int, ...]
    mlserver_omp_threads: int
    profile_seconds: float
    batch_size: int
    batch_repeat: int
    history_rows: int
    mlserver_venv: Path
    results: Path
    keep: bool
    report: Path | None


def backends(text: str) -> tuple[str, ...]:
    """Reads --backends: some of BACKENDS, comma-separated, measured in the order given."""
    chosen = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    if not chosen or not set(chosen) <= set(BACKENDS):
        raise argparse.ArgumentTypeError(f"{text!r}: name one or more of {', '.join(BACKENDS)}")
    return chosen


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default suits a 2-core machine and keeps the run near 7 minutes."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add(
        "--backends",
        type=backends,
        default=BACKENDS,
        help="histories of ours in the single-flight comparison (default sqlite,postgres); "
        "the batch, profile and history pages run on SQLite whatever this says",
    )
    add("--connections", type=int, default=16, help="wrk connections (default 16)")
    add("--threads", type=int, default=2, help="wrk threads (default 2)")
    add("--duration", type=float, default=20, help="seconds per measured run (default 20)")
    add("--warmup", type=float, default=5, help="seconds of warm-up before each (default 5)")
    add("--mlserver-workers", default="0,1,2", help="MLServer parallel_workers values to try (default 0,1,2)")
    add(
        "--mlserver-omp-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for MLServer (default 1, its fastest here; 0 leaves OpenMP's default)",
    )
    add("--profile-seconds", type=float, default=8, help="seconds of each of 3 py-spy runs")
    add("--batch-size", type=int, default=10_000, help="flights in the batch request")
    add("--batch-repeat", type=int, default=5, help="batch requests timed (median)")
    add("--history-rows", type=int, default=1_000_000, help="history size for the page test")
    add("--mlserver-venv", type=Path, default=ROOT / "bench" / ".venv-mlserver")
    add("--results", type=Path, default=RESULTS_DIR / "latest.json")
    add("--keep", action="store_true", help="keep the work folder (databases, logs)")
    add("--report", type=Path, help="only print the tables of a results file, run nothing")
    return parser


def parse_args(argv: list[str] | None) -> Options:
    """Reads the command line into Options."""
    args = vars(build_parser().parse_args(argv))
    workers = tuple(int(w) for w in args.pop("mlserver_workers").split(","))
    return Options(**args, mlserver_workers=workers)


def machine_info() -> dict[str, Any]:
    """Describes the machine: processor, cores, memory, system, Python, current load."""
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        platform.processor() or "unknown",
    )
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": pages / 2**30,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_before": _load_average(),
    }


def _load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def check_prediction(url: str, body: dict[str, Any], expected: float, read: Callable[[Any], Any]) -> float:
    """Posts the payload once and fails unless the server predicts what the booster predicts."""
    answer = requests.post(url, json=body, timeout=30)
    answer.raise_for_status()
    value = float(read(answer.json()))
    if abs(value - expected) > SAME_PREDICTION:
        raise RuntimeError(f"{url} predicted {value}, the booster {expected}: not the same model")
    return value


def measure(
    server: procs.Server, url: str, script: Path, options: Options, connections: int, seconds: float
) -> dict[str, Any]:
    """Runs the measured wrk load; returns its figures and the server's CPU time per request."""
    cpu_before = procs.group_cpu_seconds(server.process.pid)
    result = loadgen.run_wrk(url, script, connections, seconds, options.threads)
    cpu = procs.group_cpu_seconds(server.process.pid) - cpu_before
    print(
        f"  {connections} connections: {result.rps:.0f} req/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, {result.errors} errors",
        flush=True,
    )
    cpu_ms = cpu / max(result.requests, 1) * 1000
    return {**asdict(result), "rps": result.rps, "answered": result.answered, "cpu_ms_per_request": cpu_ms}


def profile(server: procs.Server, url: str, script: Path, options: Options, folder: Path) -> dict[str, Any]:
    """Samples our workers under the same load: the GIL holder, every thread, every thread natively."""
    return {
        kind: profile_once(server, url, script, options, folder / f"profile-{kind}.txt", kind)
        for kind in profiling.RATES
    }


def profile_once(
    server: procs.Server, url: str, script: Path, options: Options, out: Path, kind: str
) -> dict[str, Any]:
    """Runs wrk in the background and py-spy on our workers meanwhile; returns samples per stage."""
    seconds = options.profile_seconds
    load = loadgen.start_wrk(url, script, options.connections, seconds + 3, options.threads)
    try:
        time.sleep(1)  # sample steady load, not the first connections
        spy = profiling.record(server.process.pid, seconds, out, mode=kind)
        stages = profiling.finish(spy, out, timeout=seconds + 60)
        result = loadgen.finish_wrk(load, timeout=seconds + 60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    return {
        "rate": profiling.RATES[kind],
        "seconds": seconds,
        "requests": round(result.rps * seconds),  # served while py-spy sampled
        "stages": dict(stages.most_common()),
        "raw_file": str(out),
    }


def batch_over_http(
    url: str, body: dict[str, Any], flights: int, repeat: int, read: Callable[[Any], Any]
) -> float:
    """Median seconds of a batch POST whose flights are all predicted and recorded, after one untimed.

    Single batches swing widely (24-40 µs per flight in one series of six after the load runs,
    bench/PROFILE.md session 5): the median of several is the typical cost.
    """
    data = json.dumps(body)
    with requests.Session() as session:

        def post() -> float:
            """Sends the batch; the seconds until its whole answer, checked, came back."""
            started = time.perf_counter()
            answer = session.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=300)
            elapsed = time.perf_counter() - started
            answer.raise_for_status()
            if len(read(answer.json())) != flights:
                raise RuntimeError("the batch answer does not hold one prediction per flight")
            return elapsed

        post()  # untimed
        samples = [post() for _ in range(repeat)]
    return statistics.median(samples)


@dataclass(frozen=True)
class Ours:
    """Our service on one backend: its server, its data folder and its history's database URL."""

    backend: str
    server: procs.Server
    data_dir: Path
    database_url: str

    @property
    def url(self) -> str:
        """Where it predicts."""
        return f"{self.server.url}/model/predict/"

    @property
    def v2_url(self) -> str:
        """Where it predicts through the Open Inference Protocol."""
        return f"{self.server.url}/v2/models/{payloads.MODEL_NAME}/infer"

    @property
    def db_path(self) -> Path:
        """The SQLite file of its history (SQLite backend only)."""
        return self.data_dir / "flight_delay.db"


@contextmanager
def ours_on(backend: str, work: Path, model_path: Path) -> Iterator[Ours]:
    """Serves ours with its history on SQLite (a file), or on PostgreSQL (a throwaway server)."""
    data_dir = work / f"ours-{backend}"
    with ExitStack() as stack:
        url = stack.enter_context(postgres.server()) if backend == "postgres" else None
        bin_dir = Path(sys.executable).parent
        server = stack.enter_context(procs.our_service(bin_dir, data_dir, model_path, ROOT, url))
        payloads.post_context(server.url, server.admin_token)  # the single flight is asked with context
        yield Ours(backend, server, data_dir, url or f"sqlite:///{data_dir / 'flight_delay.db'}")


def load_run(ours: Ours, script: Path, options: Options, url: str | None = None) -> dict[str, Any]:
    """Warms up, measures ours under load, and checks that every answered prediction is in the history."""
    url = url or ours.url
    print(f"ours on {report.BACKENDS[ours.backend]}: load on {url.split('/', 3)[-1]}", flush=True)
    loadgen.run_wrk(url, script, options.connections, options.warmup, options.threads)
    before = history.recorded_rows(ours.database_url)
    load = measure(ours.server, url, script, options, options.connections, options.duration)
    recorded = history.recorded_rows(ours.database_url) - before
    missing = "" if recorded >= load["answered"] else ": ANSWERED PREDICTIONS MISSING FROM THE HISTORY"
    print(f"  history: {recorded:,} rows for {load['answered']:,} answered requests{missing}", flush=True)
    return {**load, "recorded": recorded}


def mean_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Averages load runs (rates, latencies, CPU) and adds up their counts."""
    counted = ("requests", "errors", "status_errors", "answered", "recorded")
    return {k: (sum if k in counted else statistics.mean)(r[k] for r in runs) for k in runs[0]}


def compare(
    services: dict[str, Ours],
    scripts: tuple[Path, Path],
    options: Options,
    meanwhile: Callable[[], dict[str, Any]],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any], dict[str, dict[str, Any]]]:
    """Loads ours on each backend, runs `meanwhile` (the others; ours idle), then each again in reverse,
    each second native run followed by the same flight through the Open Inference Protocol.

    Measuring ours before and after the others spreads a busy machine's drift over both sides;
    reversing the order gives each backend the same average place in the run.
    """
    script, v2_script = scripts
    measured = [services[backend] for backend in options.backends]
    first = {ours.backend: load_run(ours, script, options) for ours in measured}
    others = meanwhile()
    second, v2 = {}, {}
    for ours in reversed(measured):
        second[ours.backend] = load_run(ours, script, options)
        v2[ours.backend] = load_run(ours, v2_script, options, ours.v2_url)
    return {backend: [first[backend], second[backend]] for backend in options.backends}, others, v2


def sqlite_extras(ours: Ours, script: Path, options: Options, flights: list[Any]) -> dict[str, Any]:
    """On ours with SQLite: one connection's latency, the profile, the batch, the history pages."""
    single = measure(ours.server, ours.url, script, options, 1, SINGLE_CONNECTION_SECONDS)
    print("ours: profile", flush=True)
    found = profile(ours.server, ours.url, script, options, RESULTS_DIR)
    print("ours: batch, native and V2", flush=True)
    batch_seconds = batch_over_http(
        ours.url, {"flights": flights}, len(flights), options.batch_repeat, read_ours_all
    )
    v2_batch = payloads.v2_columns(flights)
    v2_batch_seconds = batch_over_http(ours.v2_url, v2_batch, len(flights), options.batch_repeat, read_v2_all)
    print(f"ours: history to {options.history_rows:,} rows", flush=True)
    history.fill(ours.db_path, flights, options.history_rows)
    pages = history.page_timings(ours.server.url, ours.db_path, procs.bearer(ours.server.admin_token))
    return {
        "load_c1": single,
        "profile": found,
        "batch_seconds": batch_seconds,
        "v2_batch_seconds": v2_batch_seconds,
        "history": asdict(pages),
    }


def read_ours(answer: Any) -> Any:
    """Our prediction in our answer."""
    return answer["predictions"][0]["arr_delay"]


def read_ours_all(answer: Any) -> list[Any]:
    """Every prediction of our native answer."""
    return answer["predictions"]


def read_v2(answer: Any) -> Any:
    """Our prediction in our V2 answer (its `predict` output)."""
    return read_v2_all(answer)[0]


def read_v2_all(answer: Any) -> list[Any]:
    """Every prediction of our V2 answer (its `predict` output)."""
    return next(output["data"] for output in answer["outputs"] if output["name"] == "predict")


def run_ours(
    options: Options,
    work: Path,
    model_path: Path,
    expected: float,
    flights: list[Any],
    meanwhile: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Ours on each backend: checked, loaded around `meanwhile`; then the SQLite service's extras."""
    script = loadgen.write_post_script(json.dumps(payloads.FLIGHT), work / "ours.lua")
    v2_body = payloads.v2_columns([payloads.FLIGHT])
    v2_script = loadgen.write_post_script(json.dumps(v2_body), work / "ours-v2.lua")
    with ours_on("sqlite", work, model_path) as sqlite, ExitStack() as stack:
        services = {"sqlite": sqlite}
        for backend in (b for b in options.backends if b != "sqlite"):
            services[backend] = stack.enter_context(ours_on(backend, work, model_path))
        predicted = [check_prediction(o.url, payloads.FLIGHT, expected, read_ours) for o in services.values()]
        for ours in services.values():
            check_prediction(ours.v2_url, v2_body, expected, read_v2)
        databases = {b: postgres.settings(s.database_url) for b, s in services.items() if b == "postgres"}
        runs, others, v2 = compare(services, (script, v2_script), options, meanwhile)
        stack.close()  # the other backends' services and servers stop before the extras
        extras = sqlite_extras(sqlite, script, options, flights)
    return {
        "prediction": predicted[0],
        "runs": runs,
        "v2": v2,
        "others": others,
        "databases": databases,
        **extras,
    }


def run_ceiling(options: Options, work: Path) -> dict[str, Any]:
    """Our server stack alone (same workers, same body; no Flask, model or database) under the same load."""
    script = loadgen.write_post_script(json.dumps(payloads.FLIGHT), work / "ceiling.lua")
    print("gunicorn + uvicorn worker alone (the stack's ceiling)", flush=True)
    with procs.stack_ceiling(Path(sys.executable).parent, work, ROOT) as server:
        url = f"{server.url}/model/predict/"
        loadgen.run_wrk(url, script, options.connections, options.warmup, options.threads)
        return measure(server, url, script, options, options.connections, options.duration)


def run_mlserver(options: Options, repo: Path, expected: float, row: Any) -> tuple[dict[str, Any], float]:
    """MLServer with each parallel_workers value; returns the figures of each and its prediction."""
    script = loadgen.write_post_script(json.dumps(payloads.v2_request(row)), repo.parent / "mlserver.lua")
    results, predicted = {}, float("nan")
    for workers in options.mlserver_workers:
        print(f"MLServer: parallel_workers={workers}", flush=True)
        mlserver_bin = options.mlserver_venv / "bin" / "mlserver"
        omp = options.mlserver_omp_threads
        with procs.mlserver(mlserver_bin, repo, payloads.MODEL_NAME, workers, omp) as server:
            url = f"{server.url}/v2/models/{payloads.MODEL_NAME}/infer"
            predicted = check_prediction(
                url, payloads.v2_request(row), expected, lambda r: r["outputs"][0]["data"][0]
            )
            loadgen.run_wrk(url, script, options.connections, options.warmup, options.threads)
            results[str(workers)] = measure(
                server, url, script, options, options.connections, options.duration
            )
    return results, predicted


def run_inprocess(work: Path, model_path: Path, row: Any, flights: list[Any]) -> dict[str, Any]:
    """Every in-process timing, before any server runs."""
    print("in process: stages, synchronous modes, concurrent writes, batch", flush=True)
    app = inprocess.make_app(work / "inprocess", model_path)
    inprocess.post_context(app, *payloads.context_posts())
    single = inprocess.single_flight_stages(app, payloads.FLIGHT, row)
    writes = inprocess.concurrent_writes(app, payloads.FLIGHT, concurrent=8, seconds=2.0)
    batch = inprocess.batch_stages(app, flights)
    sync = inprocess.history_write_by_mode(work, model_path, payloads.FLIGHT)
    return {"single": single, "concurrent_writes": writes, "batch": batch, "sync": sync}


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The figures the targets are about: ours on each backend / MLServer's best, then the other three."""
    load, inproc, batch = results["load"], results["inprocess"], results["batch"]
    best = load["mlserver"][load["mlserver_best"]]["rps"]
    return {
        **{f"throughput_ratio_{backend}": ours["rps"] / best for backend, ours in load["ours"].items()},
        **{
            f"v2_ratio_{backend}": v2["rps"] / load["ours_runs"][backend][1]["rps"]
            for backend, v2 in load["v2"].items()
        },
        "predict_path_ratio": inproc["single"][inprocess.PREDICT_PATH] / inproc["single"][inprocess.RAW_ROW],
        "batch_ratio": batch["http_seconds"] / inproc["batch"][inprocess.RAW_MATRIX],
        "v2_batch_ratio": batch["v2_http_seconds"] / batch["http_seconds"],
        "history_ratio": results["history"]["deep_page"] / results["history"]["first_page"],
    }


def load_results(ours: dict[str, Any]) -> dict[str, Any]:
    """The load tests' figures: ours per backend (mean and each run), ours on one connection, the others."""
    theirs = ours["others"]["mlserver"]
    return {
        "ours": {backend: mean_run(runs) for backend, runs in ours["runs"].items()},
        "ours_runs": ours["runs"],
        "ours_c1": ours["load_c1"],
        "v2": ours["v2"],
        "ceiling": ours["others"]["ceiling"],
        "mlserver": theirs,
        "mlserver_best": max(theirs, key=lambda w: theirs[w]["rps"]),
    }


def prepare_model(work: Path) -> tuple[Path, Path, Any, float, float]:
    """Trains the dummy model; returns its file, MLServer's repository, its encoded row, its prediction
    and what the exported booster alone predicts (at departure, the delay beyond dep_delay).
    """
    model_path = payloads.train_dummy(
        Path(sys.executable), ROOT / "src" / "model_dummy.py", work / "model_dummy.pkl"
    )
    model = payloads.load_artifact(model_path)
    repo = payloads.export_for_mlserver(model, work / "mlserver-repo")
    flight = payloads.with_context(payloads.FLIGHT)  # as our services see it, once the context is posted
    row = payloads.encoded_row(model, flight)
    exported = float(model.booster.predict(row)[0])  # the encoded row is 1 x features already
    return model_path, repo, row, float(model.predict([flight])[0]), exported


def run(options: Options, work: Path) -> dict[str, Any]:
    """Prepares model and payloads; measures in process, then ours per backend, the others, ours again."""
    started = time.perf_counter()
    machine = machine_info()
    model_path, repo, row, expected, exported = prepare_model(work)
    flights = payloads.sample_flights(options.batch_size)
    inproc = run_inprocess(work, model_path, row, flights)

    def others() -> dict[str, Any]:
        """MLServer and the stack ceiling, measured while our services idle between their runs."""
        theirs, predicted = run_mlserver(options, repo, exported, row)
        return {"ceiling": run_ceiling(options, work), "mlserver": theirs, "prediction": predicted}

    ours = run_ours(options, work, model_path, expected, flights, meanwhile=others)
    machine["load_after"] = _load_average()
    results = {
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "machine": machine,
        "databases": ours["databases"],
        "predictions": {
            "ours": ours["prediction"],
            "mlserver": ours["others"]["prediction"],
            "raw": expected,
        },
        "load": load_results(ours),
        "inprocess": inproc,
        "batch": {
            "flights": len(flights),
            "http_seconds": ours["batch_seconds"],
            "v2_http_seconds": ours["v2_batch_seconds"],
        },
        "history": ours["history"],
        "profile": ours["profile"],
    }
    return {**results, "ratios": ratios(results), "wall_seconds": time.perf_counter() - started}


def stop_on_sigterm() -> None:
    """Turns SIGTERM into SystemExit so that every server started is stopped on the way out."""
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def main(argv: list[str] | None = None) -> None:
    """Runs the benchmark, prints the report and writes the results as JSON."""
    options = parse_args(argv)
    if options.report is not None:
        print(report.render(json.loads(options.report.read_text())))
        return
    stop_on_sigterm()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="flight-delay-bench-"))
    try:
        results = run(options, work)
    finally:
        if options.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    options.results.parent.mkdir(parents=True, exist_ok=True)
    options.results.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(report.render(results))
    print(f"\nresults: {options.results}")
