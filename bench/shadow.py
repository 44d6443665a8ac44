"""What a shadow costs the answers: `python -m bench.shadow [--backends sqlite,postgres] [--duration S]`.

Serves the dummy model (seed 0) as `make bench` does (production settings, 2 workers, the history on
SQLite with fsync, or on a throwaway durable PostgreSQL), stores the dummy of seed 1 as a candidate,
and drives single-flight predictions with wrk (16 connections): alternately without a shadow and with
the candidate shadowing every prediction (PUT /model/traffic), OFF, ON, OFF, ON, ... (--pairs), so
that a busy machine's drift falls on both sides. Prints each run's rate, latencies and CPU per request,
the p99 with the shadow over the p99 without (of the means, and the median of each pair's ratio), and
how many shadow predictions were recorded and dropped per answered one.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, func, select

from bench import loadgen, payloads, postgres, procs
from flight_delay.history.models import Prediction

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = 16
DROPPED = re.compile(r'^flight_delay_shadow_dropped_total\{reason="(\w+)"\} ([0-9.e+]+)$', re.M)


def upload_candidate(url: str, token: str, model: Path) -> str:
    """Stores a model as a candidate; its version."""
    with model.open("rb") as handle:
        answer = requests.post(
            f"{url}/model/load/?activate=false",
            files={"file": handle},
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
    answer.raise_for_status()
    return answer.json()["version"]


def set_shadow(url: str, token: str, version: str | None) -> None:
    """Sets (or clears) the shadow, then waits past MODEL_REFRESH_MS so that every worker has read it."""
    headers = {"Authorization": f"Bearer {token}", "X-Reason": "bench.shadow"}
    requests.put(
        f"{url}/model/traffic", json={"shadow": version}, headers=headers, timeout=30
    ).raise_for_status()
    time.sleep(1.0)


def shadow_rows(database_url: str) -> tuple[int, int]:
    """Rows recorded so far: (served, shadow)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(Prediction))
            shadows = connection.scalar(select(func.count()).where(Prediction.shadow_of.is_not(None)))
    finally:
        engine.dispose()
    return total - shadows, shadows


def dropped(url: str) -> float:
    """Shadow flights dropped so far, every reason (from /metrics)."""
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(float(value) for _, value in DROPPED.findall(text))


def one_run(url: str, pgid: int, database_url: str, script: Path, duration: float) -> dict[str, Any]:
    """One measured wrk run, the server's CPU per request, the shadow rows recorded and dropped meanwhile."""
    served_before, shadow_before = shadow_rows(database_url)
    dropped_before = dropped(url)
    cpu_before = procs.group_cpu_seconds(pgid)
    result = loadgen.run_wrk(f"{url}/model/predict/", script, CONNECTIONS, duration)
    time.sleep(2.0)  # the shadow's queue drains
    cpu = procs.group_cpu_seconds(pgid) - cpu_before
    served_after, shadow_after = shadow_rows(database_url)
    return {
        "cpu_ms": cpu / max(result.requests, 1) * 1000,
        "rps": result.rps,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "errors": result.errors,
        "answered": result.answered,
        "served_rows": served_after - served_before,
        "shadow_rows": shadow_after - shadow_before,
        "dropped": dropped(url) - dropped_before,
    }


def measure(
    backend: str, work: Path, models: tuple[Path, Path], duration: float, pairs: int
) -> dict[str, list[dict[str, Any]]]:
    """Serves ours on a backend and alternates runs without and with a shadow."""
    token = secrets.token_hex(32)
    script = loadgen.write_post_script(json.dumps(payloads.FLIGHT), work / "predict.lua")
    data_dir = work / f"ours-{backend}"
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres.server()) if backend == "postgres" else None
        bin_dir = Path(sys.executable).parent
        server = stack.enter_context(
            procs.our_service(bin_dir, data_dir, models[0], ROOT, database_url, token)
        )
        database_url = database_url or f"sqlite:///{data_dir / 'flight_delay.db'}"
        candidate = upload_candidate(server.url, token, models[1])
        loadgen.run_wrk(f"{server.url}/model/predict/", script, CONNECTIONS, 5)  # warm-up
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for shadow in ("off", "on") * pairs:
            set_shadow(server.url, token, candidate if shadow == "on" else None)
            runs[shadow].append(one_run(server.url, server.process.pid, database_url, script, duration))
            print(f"  {backend}, shadow {shadow}: {format_run(runs[shadow][-1])}", flush=True)
    return runs


def format_run(run: dict[str, Any]) -> str:
    """One run in a line."""
    return (
        f"{run['rps']:.0f} req/s, p50 {run['p50_ms']:.2f} ms, p99 {run['p99_ms']:.2f} ms, "
        f"{run['cpu_ms']:.3f} CPU ms/request, "
        f"{run['errors']} errors; {run['served_rows']:,} served rows, {run['shadow_rows']:,} shadow rows, "
        f"{run['dropped']:.0f} dropped"
    )


def summary(backend: str, runs: dict[str, list[dict[str, Any]]]) -> str:
    """The backend's figures: means of the runs, the p99 ratio, the shadow's coverage."""
    mean = {side: {k: statistics.mean(r[k] for r in runs[side]) for k in runs[side][0]} for side in runs}
    ratio = mean["on"]["p99_ms"] / mean["off"]["p99_ms"]
    covered = sum(r["shadow_rows"] for r in runs["on"]) / max(sum(r["served_rows"] for r in runs["on"]), 1)
    rate = mean["on"]["rps"] / mean["off"]["rps"]
    paired = statistics.median(
        on["p99_ms"] / off["p99_ms"] for off, on in zip(runs["off"], runs["on"], strict=True)
    )
    cpu = mean["on"]["cpu_ms"] / mean["off"]["cpu_ms"]
    return (
        f"{backend}: without a shadow {mean['off']['rps']:.0f} req/s, p99 {mean['off']['p99_ms']:.2f} ms; "
        f"with one {mean['on']['rps']:.0f} req/s, p99 {mean['on']['p99_ms']:.2f} ms\n"
        f"  p99 with / without: {ratio:.2f}x of the means, {paired:.2f}x the median pair (goal: < 1.20x); "
        f"rate {rate:.2f}x; CPU per request {cpu:.2f}x; "
        f"shadow rows per served row {covered:.3f}, dropped {sum(r['dropped'] for r in runs['on']):.0f}"
    )


def main(argv: list[str] | None = None) -> None:
    """Parses the options, measures each backend, prints the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite, postgres or both (default)")
    parser.add_argument("--duration", type=float, default=20, help="seconds per measured run (default 20)")
    parser.add_argument("--pairs", type=int, default=3, help="runs without, then with, a shadow (default 3)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="flight-delay-bench-shadow-"))
    try:
        python, trainer = Path(sys.executable), ROOT / "src" / "model_dummy.py"
        models = tuple(payloads.train_dummy(python, trainer, work / f"model-{s}.pkl", seed=s) for s in (0, 1))
        lines = []
        for backend in args.backends.split(","):
            print(
                f"shadow on {backend}: load {CONNECTIONS} connections, {args.duration:.0f} s a run",
                flush=True,
            )
            lines.append(summary(backend, measure(backend, work, models, args.duration, args.pairs)))
        print("\n".join(lines), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
