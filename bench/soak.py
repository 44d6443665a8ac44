"""A soak: `python -m bench.soak [--minutes 10] [--database-url URL]` holds a mixed load on a real server.

`flight-delay serve` (production settings, 2 workers, the roll-up job every 30 s) over a fresh SQLite file
or the given PostgreSQL database serves, for the whole run and at a fixed pace: single predictions (four
clients, 25 a second each, a fifth of them before departure), a batch of 100 flights a second, history
pages (the first, three older ones, a request id), a monitoring report and a /metrics scrape, and
actuals for recent predictions. At 30% of the run a second model is uploaded (every worker swaps to it);
at 60% the database restarts: PostgreSQL with `pg_ctl restart -m fast` (scripts/with_postgres.sh says
where its cluster is), SQLite by killing the host's history writer, the process holding its write
connection (the server restarts it; SQLite itself has no server to restart).

It reports each process's RSS over time (sampled every 5 s: the master, each worker, the history writer,
the roll-up job), latency per kind of request (p50, p99, max), answers by status code (0: no answer),
and the rows lost: predictions answered 200 whose history ids are missing from the history, or recorded
under another request or model (must be 0). `make soak` runs it on SQLite, then on PostgreSQL; the
figures go in bench/PROFILE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import create_engine, make_url, select

from bench.procs import HOST, Server, free_port, stop_group, wait_ready
from flight_delay.data.nycflights import build_dataset
from flight_delay.features import INPUT_FIELDS
from flight_delay.history.models import Prediction

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
BIN = Path(sys.executable).parent
SAMPLE_EVERY_S = 5.0
TIMEOUT_S = 30
SWAP_AT, RESTART_AT = 0.3, 0.6
PICK = random.Random(25)  # noqa: S311 (which flights, which actual delays: a fixed sequence, not secrets)


@dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    answered: dict[int, tuple[str, str]] = field(default_factory=dict)  # history id -> (request, model)
    recent: list[int] = field(default_factory=list)  # history ids awaiting an actual
    events: list[tuple[float, str]] = field(default_factory=list)
    rss: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, kind: str, status: int, seconds: float) -> None:
        """Counts one answer."""
        with self.lock:
            self.statuses[kind][status] += 1
            if status:
                self.latencies[kind].append(seconds)


@dataclass
class Target:
    """The server under soak and what the clients need to call it."""

    url: str
    token: str
    flights: list[dict[str, Any]]
    models: list[Path]
    database_url: str
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)


def call(target: Target, tally: Tally, kind: str, method: str, path: str, **kwargs: Any) -> Any:
    """Sends one request, timing it and counting its status (0 when no answer came)."""
    started = time.perf_counter()
    try:
        response = requests.request(method, target.url + path, timeout=TIMEOUT_S, **kwargs)
    except requests.RequestException:
        tally.saw(kind, 0, time.perf_counter() - started)
        return None
    tally.saw(kind, response.status_code, time.perf_counter() - started)
    return response


def predict(target: Target, tally: Tally, kind: str, flights: list[dict[str, Any]]) -> None:
    """Asks for predictions and remembers every answered history id with its request and model."""
    request_id = f"soak-{uuid.uuid4().hex[:16]}"
    body = flights[0] if len(flights) == 1 else {"flights": flights}
    response = call(
        target, tally, kind, "POST", "/model/predict/", json=body, headers={"X-Request-ID": request_id}
    )
    if response is None or response.status_code != 200:
        return
    answer = response.json()
    ids = [p["history_id"] for p in answer["predictions"]]
    with tally.lock:
        for history_id in ids:
            tally.answered[history_id] = (request_id, answer["model_version"])
        tally.recent.extend(ids[:20])


def history_pages(target: Target, tally: Tally) -> None:
    """The first page of the history, three older ones, and one request id's predictions."""
    reading = {"Authorization": f"Bearer {target.token}"}  # production reads need a token (issue 26)
    page = call(target, tally, "history", "GET", "/model/history/", params={"page_size": 50}, headers=reading)
    for _ in range(3):
        if page is None or page.status_code != 200 or page.json()["next_cursor"] is None:
            return
        cursor = page.json()["next_cursor"]
        page = call(
            target,
            tally,
            "history",
            "GET",
            "/model/history/",
            params={"page_size": 50, "cursor": cursor},
            headers=reading,
        )
    with tally.lock:
        known = next(iter(tally.answered.values()), None)
    if known is not None:
        call(
            target,
            tally,
            "history",
            "GET",
            "/model/history/",
            params={"request_id": known[0]},
            headers=reading,
        )


def monitoring(target: Target, tally: Tally) -> None:
    """The active model's report over the last 24 hours, and a /metrics scrape."""
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    reading = {"Authorization": f"Bearer {target.token}"}
    call(target, tally, "monitoring", "GET", "/model/monitoring/", params={"since": since}, headers=reading)
    call(target, tally, "metrics", "GET", "/metrics")


def actuals(target: Target, tally: Tally) -> None:
    """Posts actual delays for the predictions answered since the last call."""
    with tally.lock:
        ids, tally.recent = tally.recent[:500], tally.recent[500:]
    if ids:
        body = {"actuals": [{"history_id": i, "arr_delay": PICK.uniform(-30, 90)} for i in ids]}
        headers = {"Authorization": f"Bearer {target.token}"}
        call(target, tally, "actuals", "POST", "/model/actuals/", json=body, headers=headers)


def paced(every_s: float, stop: threading.Event, work: Callable[[], None]) -> Callable[[], None]:
    """A loop running `work` once every `every_s` seconds until `stop` is set."""

    def loop() -> None:
        """Runs the work, then waits out the rest of its period."""
        while not stop.is_set():
            started = time.monotonic()
            work()
            stop.wait(max(0.0, every_s - (time.monotonic() - started)))

    return loop


def clients(target: Target, tally: Tally, stop: threading.Event) -> list[threading.Thread]:
    """The mixed load, one thread per client, each at its own pace."""
    one = lambda: predict(target, tally, "single", [PICK.choice(target.flights)])  # noqa: E731
    batch = lambda: predict(target, tally, "batch", PICK.sample(target.flights, 100))  # noqa: E731
    loops = [paced(0.04, stop, one) for _ in range(4)]
    loops += [
        paced(1.0, stop, batch),
        paced(1.0, stop, lambda: history_pages(target, tally)),
        paced(2.0, stop, lambda: monitoring(target, tally)),
        paced(1.0, stop, lambda: actuals(target, tally)),
    ]
    return [threading.Thread(target=loop, daemon=True) for loop in loops]


def server_processes(master: int) -> dict[str, int]:
    """The serve process and its children, named by role: master, worker-PID, history-writer, rollup-job."""
    named = {"master": master}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
        if parent != master:
            continue
        pid = int(stat.parent.name)
        role = (
            "history-writer"
            if "host_writer" in command
            else "rollup-job"
            if "rollup_job" in command
            else "worker"
        )
        named[f"{role}-{pid}"] = pid
    return named


def rss_kib(pid: int) -> int | None:
    """A process's resident set size in KiB (None once it has ended)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in lines if line.startswith("VmRSS:")), None)


def sample(target: Target, tally: Tally, stop: threading.Event) -> None:
    """Samples every server process's RSS every SAMPLE_EVERY_S seconds."""
    while not stop.is_set():
        sizes = {name: rss_kib(pid) for name, pid in server_processes(target.process.pid).items()}
        tally.rss.append(
            (time.monotonic() - target.started, {k: v for k, v in sizes.items() if v is not None})
        )
        stop.wait(SAMPLE_EVERY_S)


def swap_model(target: Target, tally: Tally) -> None:
    """Uploads the second model, which every worker then serves."""
    with target.models[1].open("rb") as handle:
        response = call(
            target,
            tally,
            "model load",
            "POST",
            "/model/load/",
            files={"file": handle},
            headers={"Authorization": f"Bearer {target.token}"},
        )
    tally.events.append(
        (time.monotonic() - target.started, f"model swap: {getattr(response, 'status_code', 0)}")
    )


def restart_postgres() -> str:
    """Restarts the throwaway PostgreSQL: a fast shutdown (active transactions aborted), then a start."""
    data = Path(os.environ["TEST_PGDATA"])
    pg_ctl = str(Path(os.environ["TEST_PG_BINDIR"]) / "pg_ctl")
    # -l: the server's output to its log, never to pg_ctl's pipes (which would then stay open).
    command = [pg_ctl, "restart", "-D", str(data), "-m", "fast", "-w", "-l", str(data.parent / "server.log")]
    owner = os.environ.get("TEST_PG_OWNER")
    done = subprocess.run(
        ["runuser", "-u", owner, "--", *command] if owner else command,
        cwd=data.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return f"PostgreSQL restarted (pg_ctl exit {done.returncode})"


def kill_history_writer(target: Target) -> str:
    """Kills SQLite's history writer, the process holding its write connection (serve restarts it)."""
    names = server_processes(target.process.pid)
    writers = [pid for name, pid in names.items() if name.startswith("history-writer")]
    for pid in writers:
        os.kill(pid, signal.SIGKILL)
    return f"SQLite history writer killed ({len(writers)} process)"


def restart_database(target: Target, tally: Tally) -> None:
    """Restarts PostgreSQL, or for SQLite (no server) the process holding its write connection."""
    started = time.monotonic()
    if make_url(target.database_url).get_backend_name() == "postgresql":
        what = restart_postgres()
    else:
        what = kill_history_writer(target)
    tally.events.append((started - target.started, f"{what} in {time.monotonic() - started:.1f} s"))


def events(target: Target, tally: Tally, stop: threading.Event, seconds: float) -> None:
    """The model swap and the database restart, at their moments of the run."""
    for at, action in ((SWAP_AT, swap_model), (RESTART_AT, restart_database)):
        if stop.wait(max(0.0, target.started + at * seconds - time.monotonic())):
            return
        action(target, tally)


def lost_rows(database_url: str, answered: dict[int, tuple[str, str]]) -> int:
    """Predictions answered 200 but missing from the history, or recorded under another request or model."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            statement = select(Prediction.id, Prediction.request_id, Prediction.model_version)
            recorded = {row.id: (row.request_id, row.model_version) for row in connection.execute(statement)}
    finally:
        engine.dispose()
    return sum(1 for history_id, seen in answered.items() if recorded.get(history_id) != seen)


def percentile(values: list[float], share: float) -> float | None:
    """The value below which `share` of the values lie (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(tally: Tally, lost: int, backend: str, seconds: float) -> dict[str, Any]:
    """The figures: per kind the answers by status and the latency, RSS over time, rows lost."""
    kinds = {}
    for kind, statuses in tally.statuses.items():
        times = tally.latencies[kind]
        kinds[kind] = {
            "requests": sum(statuses.values()),
            "statuses": dict(sorted(statuses.items())),
            "p50_ms": 1000 * statistics.median(times) if times else None,
            "p99_ms": 1000 * percentile(times, 0.99) if times else None,
            "max_ms": 1000 * max(times) if times else None,
        }
    return {
        "backend": backend,
        "seconds": seconds,
        "kinds": kinds,
        "answered_predictions": len(tally.answered),
        "rows_lost": lost,
        "events": tally.events,
        "rss_kib": tally.rss,
    }


def rss_table(rss: list[tuple[float, dict[str, int]]]) -> list[str]:
    """Each process's RSS (MiB) at the start of each minute, then its peak."""
    names = sorted({name for _, sizes in rss for name in sizes}, key=lambda n: (n != "master", n))
    minutes = sorted({int(at // 60) for at, _ in rss})
    first = {minute: next(sizes for at, sizes in rss if int(at // 60) == minute) for minute in minutes}
    lines = ["  RSS (MiB) at minute " + " ".join(f"{m:>5}" for m in minutes) + "   peak"]
    for name in names:
        cells = " ".join(f"{first[m][name] / 1024:5.0f}" if name in first[m] else "    -" for m in minutes)
        peak = max(sizes.get(name, 0) for _, sizes in rss) / 1024
        lines.append(f"  {name:<24}{cells} {peak:6.0f}")
    return lines


def printed(result: dict[str, Any]) -> str:
    """The summary as text."""
    lines = [f"soak on {result['backend']}: {result['seconds'] / 60:.1f} min"]
    for kind, figures in sorted(result["kinds"].items()):
        latency = (
            "-"
            if figures["p99_ms"] is None
            else f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
            f"max {figures['max_ms']:.0f} ms"
        )
        lines.append(
            f"  {kind:<11}{figures['requests']:>7} requests  {latency}  statuses {figures['statuses']}"
        )
    lines += [f"  event at {at:.0f} s: {what}" for at, what in result["events"]]
    lines.append(
        f"  predictions answered 200: {result['answered_predictions']:,}; rows lost: {result['rows_lost']}"
    )
    return "\n".join([*lines, *rss_table(result["rss_kib"])])


def start_server(
    work: Path, database_url: str, token: str, first_model: Path
) -> tuple[subprocess.Popen, str]:
    """Starts `flight-delay serve` with production settings and the first model active."""
    port = free_port()
    env = {
        **os.environ,
        "FLIGHT_DELAY_ENV": "production",
        "ML_API_ADMIN_TOKEN": token,
        "DATA_DIR": str(work / "data"),
        "DATABASE_URL": database_url,
        "DEFAULT_MODEL_PATH": str(first_model),
        "ML_API_HOST": HOST,
        "ML_API_PORT": str(port),
        "ML_API_WORKERS": "2",
        "MONITORING_ROLLUP_INTERVAL_S": "30",
        "MONITORING_REFRESH_S": "15",
    }
    command = [str(BIN / "flight-delay"), "serve"]
    with (work / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    return process, f"http://{HOST}:{port}"


def real_flights(count: int) -> list[dict[str, Any]]:
    """Real flights of the whole year as clients send them, a fifth before departure (dep_delay null)."""
    frame = build_dataset().sample(count, random_state=3)
    flights = json.loads(frame[list(INPUT_FIELDS)].to_json(orient="records"))
    for flight in flights[::5]:
        flight["dep_delay"] = None
    return flights


def train_models(work: Path) -> list[Path]:
    """The dummy model of seeds 0 and 1, as `src/model_dummy.py` writes them."""
    paths = []
    for seed in (0, 1):
        out = work / f"model-{seed}.pkl"
        subprocess.run(
            [sys.executable, str(ROOT / "src" / "model_dummy.py"), "--out", str(out), "--seed", str(seed)],
            check=True,
            capture_output=True,
        )
        paths.append(out)
    return paths


def soak(target: Target, seconds: float) -> Tally:
    """Holds the load for `seconds`, with the events and the RSS sampler, then stops every client."""
    tally, stop = Tally(), threading.Event()
    threads = clients(target, tally, stop)
    threads += [threading.Thread(target=sample, args=(target, tally, stop), daemon=True)]
    threads += [threading.Thread(target=events, args=(target, tally, stop, seconds), daemon=True)]
    for thread in threads:
        thread.start()
    stop.wait(seconds)
    stop.set()
    for thread in threads:
        thread.join(TIMEOUT_S + 5)
    return tally


def run(database_url: str | None, minutes: float) -> dict[str, Any]:
    """Trains the models, starts the server, soaks it, checks the history, stops it."""
    work = Path(tempfile.mkdtemp(prefix="flight-delay-soak-"))
    url = database_url or f"sqlite:///{work / 'data' / 'flight_delay.db'}"
    token = secrets.token_hex(32)
    models = train_models(work)
    process, base = start_server(work, url, token, models[0])
    target = Target(base, token, real_flights(5_000), models, url, process)
    try:
        wait_ready(Server("flight-delay", base, process, work / "server.log"), "/health/ready")
        target.started = time.monotonic()
        tally = soak(target, minutes * 60)
        lost = lost_rows(url, tally.answered)
    finally:
        stop_group(process)
    return summary(tally, lost, make_url(url).get_backend_name(), minutes * 60)


def main(argv: list[str] | None = None) -> None:
    """Parses the options, soaks one backend, prints the figures and writes them to bench/results/."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the load is held (default 10)")
    parser.add_argument(
        "--database-url", help="a PostgreSQL database (scripts/with_postgres.sh); default: a new SQLite file"
    )
    args = parser.parse_args(argv)
    result = run(args.database_url, args.minutes)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"soak-{result['backend']}.json").write_text(json.dumps(result, indent=1))
    print(printed(result), flush=True)


if __name__ == "__main__":
    main()
