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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from bench import history, inprocess, loadgen, payloads, procs, profiling, report

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
SAME_PREDICTION = 1e-9
SINGLE_CONNECTION_SECONDS = 5


@dataclass(frozen=True)
class Options:
    """What to run and for how long."""

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


def parse_args(argv: list[str] | None) -> Options:
    """Reads the command line; every default suits a 2-core machine and keeps the run near 5 minutes."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--duration", type=float, default=20, help="seconds per measured run (default 20)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of warm-up before each (default 5)")
    parser.add_argument(
        "--mlserver-workers", default="0,1,2", help="MLServer parallel_workers values to try (default 0,1,2)"
    )
    parser.add_argument(
        "--mlserver-omp-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS for MLServer (default 1, its fastest here; 0 leaves OpenMP's default)",
    )
    parser.add_argument("--profile-seconds", type=float, default=8, help="seconds of each of 3 py-spy runs")
    parser.add_argument("--batch-size", type=int, default=10_000, help="flights in the batch request")
    parser.add_argument("--batch-repeat", type=int, default=5, help="batch requests timed (median)")
    parser.add_argument("--history-rows", type=int, default=1_000_000, help="history size for the page test")
    parser.add_argument("--mlserver-venv", type=Path, default=ROOT / "bench" / ".venv-mlserver")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (databases, logs)")
    parser.add_argument("--report", type=Path, help="only print the tables of a results file, run nothing")
    args = parser.parse_args(argv)
    return Options(
        connections=args.connections,
        threads=args.threads,
        duration=args.duration,
        warmup=args.warmup,
        mlserver_workers=tuple(int(w) for w in args.mlserver_workers.split(",")),
        mlserver_omp_threads=args.mlserver_omp_threads,
        profile_seconds=args.profile_seconds,
        batch_size=args.batch_size,
        batch_repeat=args.batch_repeat,
        history_rows=args.history_rows,
        mlserver_venv=args.mlserver_venv,
        results=args.results,
        keep=args.keep,
        report=args.report,
    )


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
    return {**asdict(result), "rps": result.rps, "cpu_ms_per_request": cpu / max(result.requests, 1) * 1000}


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


def batch_over_http(url: str, flights: list[dict[str, Any]], repeat: int) -> float:
    """Median seconds of a batch POST whose flights are all predicted and recorded, after one untimed.

    Single batches swing widely (24-40 µs per flight in one series of six after the load runs,
    bench/PROFILE.md session 5): the median of several is the typical cost.
    """
    body = json.dumps({"flights": flights})
    with requests.Session() as session:

        def post() -> float:
            """Sends the batch; the seconds until its whole answer, checked, came back."""
            started = time.perf_counter()
            answer = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=300)
            elapsed = time.perf_counter() - started
            answer.raise_for_status()
            if len(answer.json()["predictions"]) != len(flights):
                raise RuntimeError("the batch answer does not hold one prediction per flight")
            return elapsed

        post()  # untimed
        samples = [post() for _ in range(repeat)]
    return statistics.median(samples)


def load_run(server: procs.Server, url: str, script: Path, options: Options, db_path: Path) -> dict[str, Any]:
    """Warms up, then measures our service under load, counting the history rows it wrote."""
    loadgen.run_wrk(url, script, options.connections, options.warmup, options.threads)
    before = history.row_count(db_path)
    load = measure(server, url, script, options, options.connections, options.duration)
    return {**load, "recorded": history.row_count(db_path) - before}


def mean_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Averages load runs (rates, latencies, CPU) and adds up their counts."""
    counted = ("requests", "errors", "recorded")
    return {k: (sum if k in counted else statistics.mean)(r[k] for r in runs) for k in runs[0]}


def run_ours(
    options: Options,
    work: Path,
    model_path: Path,
    expected: float,
    flights: list[Any],
    meanwhile: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Ours: check, load, `meanwhile` (the others; ours idle), load again, profile, batch, history.

    Measuring ours before and after the others spreads a busy machine's drift over both sides.
    """
    script = loadgen.write_post_script(json.dumps(payloads.FLIGHT), work / "ours.lua")
    data_dir = work / "ours"
    db_path = data_dir / "flight_delay.db"
    with procs.our_service(Path(sys.executable).parent, data_dir, model_path, ROOT) as server:
        url = f"{server.url}/model/predict/"
        predicted = check_prediction(
            url, payloads.FLIGHT, expected, lambda r: r["predictions"][0]["arr_delay"]
        )
        print("ours: load", flush=True)
        first = load_run(server, url, script, options, db_path)
        others = meanwhile()
        print("ours: load again", flush=True)
        second = load_run(server, url, script, options, db_path)
        single = measure(server, url, script, options, 1, SINGLE_CONNECTION_SECONDS)
        print("ours: profile", flush=True)
        found = profile(server, url, script, options, RESULTS_DIR)
        print("ours: batch", flush=True)
        batch_seconds = batch_over_http(url, flights, options.batch_repeat)
        print(f"ours: history to {options.history_rows:,} rows", flush=True)
        history.fill(db_path, flights, options.history_rows)
        pages = history.page_timings(server.url, db_path)
    return {
        "prediction": predicted,
        "load": mean_run([first, second]),
        "load_runs": [first, second],
        "others": others,
        "load_c1": single,
        "profile": found,
        "batch_seconds": batch_seconds,
        "history": asdict(pages),
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
    single = inprocess.single_flight_stages(app, payloads.FLIGHT, row)
    writes = inprocess.concurrent_writes(app, payloads.FLIGHT, threads=8, seconds=2.0)
    batch = inprocess.batch_stages(app, flights)
    sync = inprocess.history_write_by_mode(work, model_path, payloads.FLIGHT)
    return {"single": single, "concurrent_writes": writes, "batch": batch, "sync": sync}


def ratios(results: dict[str, Any]) -> dict[str, float]:
    """The four figures the targets are about."""
    load, inproc, batch = results["load"], results["inprocess"], results["batch"]
    best = load["mlserver"][load["mlserver_best"]]
    return {
        "throughput_ratio": load["ours"]["rps"] / best["rps"],
        "predict_path_ratio": inproc["single"][inprocess.PREDICT_PATH] / inproc["single"][inprocess.RAW_ROW],
        "batch_ratio": batch["http_seconds"] / inproc["batch"][inprocess.RAW_MATRIX],
        "history_ratio": results["history"]["deep_page"] / results["history"]["first_page"],
    }


def run(options: Options, work: Path) -> dict[str, Any]:
    """Prepares model and payloads; measures in process, then ours, MLServer, the ceiling, ours again."""
    started = time.perf_counter()
    machine = machine_info()
    model_path = payloads.train_dummy(
        Path(sys.executable), ROOT / "src" / "model_dummy.py", work / "model_dummy.pkl"
    )
    model = payloads.load_artifact(model_path)
    repo = payloads.export_for_mlserver(model, work / "mlserver-repo")
    row = payloads.encoded_row(model, payloads.FLIGHT)
    expected = float(model.predict([payloads.FLIGHT])[0])
    flights = payloads.sample_flights(options.batch_size)
    inproc = run_inprocess(work, model_path, row, flights)

    def others() -> dict[str, Any]:
        """MLServer and the stack ceiling, measured while our service idles between its two runs."""
        theirs, predicted = run_mlserver(options, repo, expected, row)
        return {"ceiling": run_ceiling(options, work), "mlserver": theirs, "prediction": predicted}

    ours = run_ours(options, work, model_path, expected, flights, meanwhile=others)
    theirs = ours["others"]["mlserver"]
    machine["load_after"] = _load_average()
    results = {
        "command": shlex.join(["python", "-m", "bench", *sys.argv[1:]]),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "machine": machine,
        "predictions": {
            "ours": ours["prediction"],
            "mlserver": ours["others"]["prediction"],
            "raw": expected,
        },
        "load": {
            "ours": ours["load"],
            "ours_runs": ours["load_runs"],
            "ours_c1": ours["load_c1"],
            "ceiling": ours["others"]["ceiling"],
            "mlserver": theirs,
            "mlserver_best": max(theirs, key=lambda w: theirs[w]["rps"]),
        },
        "inprocess": inproc,
        "batch": {"flights": len(flights), "http_seconds": ours["batch_seconds"]},
        "history": ours["history"],
        "profile": ours["profile"],
    }
    results["ratios"] = ratios(results)
    results["wall_seconds"] = time.perf_counter() - started
    return results


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
