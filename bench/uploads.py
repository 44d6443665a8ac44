"""What an upload costs, and what hostile ones do to a worker: `python -m bench.uploads [--hostile]`.

Starts `flight-delay serve` with production settings (2 workers, SQLite) serving the dummy model,
then times POST /model/load/ of valid models in each accepted format (the median of --repeat
uploads each, after one untimed). With --hostile it then sends each reproduction of issue 27's
hostile uploads (tests/hostile.py) and prints, per upload, the status, the seconds to the answer, the
growth of the largest worker's resident memory, whether any worker died, and whether the service
still predicts with the model it served before.
"""

from __future__ import annotations

import argparse
import io
import pickle
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench import procs
from flight_delay.artifact import save_artifact, to_bundle
from flight_delay.features import REFERENCE_FLIGHT
from flight_delay.training.dummy import train_dummy

ROOT = Path(__file__).resolve().parents[1]


def valid_uploads(work: Path) -> dict[str, bytes]:
    """The dummy model of another seed in each accepted format: .pkl, .lgbm.json, LightGBM text."""
    model = train_dummy(seed=1)
    pickled = save_artifact(model, work / "upload.pkl")
    return {
        "project .pkl": pickled.read_bytes(),
        "project .lgbm.json": to_bundle(model),
        "LightGBM text (booster of numeric columns)": numeric_booster_text(),
        "scikit-learn Pipeline .pkl": pipeline_pickle(),
    }


def numeric_booster_text() -> bytes:
    """A bare booster over numeric dataset columns, as Booster.save_model writes it."""
    import lightgbm as lgb

    from flight_delay.data.nycflights import build_dataset

    flights = build_dataset().dropna(subset=["arr_delay"]).sample(20_000, random_state=0)
    columns = ["dep_delay", "distance", "sched_dep_time"]
    regressor = lgb.LGBMRegressor(n_estimators=60, verbose=-1).fit(flights[columns], flights["arr_delay"])
    return regressor.booster_.model_to_string().encode()


def pipeline_pickle() -> bytes:
    """A scikit-learn Pipeline (imputer, then LightGBM) over numeric dataset columns, pickled."""
    import lightgbm as lgb
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from flight_delay.data.nycflights import build_dataset

    flights = build_dataset().dropna(subset=["arr_delay"]).sample(20_000, random_state=0)
    columns = ["dep_delay", "distance", "sched_dep_time"]
    steps = [("impute", SimpleImputer()), ("model", lgb.LGBMRegressor(n_estimators=60, verbose=-1))]
    return pickle.dumps(Pipeline(steps).fit(flights[columns], flights["arr_delay"]))


def post(server: procs.Server, token: str, data: bytes) -> tuple[int, float, dict[str, Any]]:
    """Uploads bytes as multipart `file`; returns the status, the seconds to the answer and its body."""
    started = time.perf_counter()
    answer = requests.post(
        f"{server.url}/model/load/",
        files={"file": ("model", io.BytesIO(data))},
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
    )
    return answer.status_code, time.perf_counter() - started, answer.json()


def latency(server: procs.Server, token: str, data: bytes, repeat: int) -> tuple[float, int]:
    """Median seconds of `repeat` uploads of the same file after one untimed; and their status."""
    status, _, body = post(server, token, data)
    if status != 201:
        raise RuntimeError(f"a valid upload was refused: {status} {body}")
    samples = [post(server, token, data)[1] for _ in range(repeat)]
    return statistics.median(samples), status


def serving_version(server: procs.Server) -> str | None:
    """The version that answers a prediction now (None when no prediction is answered)."""
    try:
        answer = requests.post(f"{server.url}/model/predict/", json=REFERENCE_FLIGHT, timeout=30)
    except requests.RequestException:
        return None
    return answer.json().get("model_version") if answer.status_code == 200 else None


def worker_memory(server: procs.Server) -> dict[int, int]:
    """Resident bytes of each gunicorn worker (the master's children, host writer and sandbox aside)."""
    found = {}
    for pid in procs_children(server.process.pid):
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"flight_delay." in command:  # the host's history writer, the model sandbox
            continue
        found[pid] = resident_bytes(pid)
    return found


def procs_children(parent: int) -> list[int]:
    """The pids whose parent is `parent`."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def resident_bytes(pid: int) -> int:
    """A process's peak resident set (VmHWM), bytes; 0 once it has ended."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def hostile_run(server: procs.Server, token: str, uploads: dict[str, bytes]) -> list[dict[str, Any]]:
    """Sends each hostile upload; records status, seconds, worker growth, deaths, the model served."""
    results = []
    for name, data in uploads.items():
        before_version = serving_version(server)
        before = worker_memory(server)
        status, seconds, body = post(server, token, data)
        after = worker_memory(server)
        results.append(
            {
                "name": name,
                "status": status,
                "code": body.get("code"),
                "seconds": seconds,
                "grew_mib": max((after.get(pid, 0) - rss) / 2**20 for pid, rss in before.items()),
                "workers_died": sorted(set(before) - set(after)),
                "same_model": serving_version(server) == before_version,
            }
        )
    return results


def print_latencies(figures: dict[str, tuple[float, int]]) -> None:
    """Prints the median upload latency of each format."""
    for name, (seconds, status) in figures.items():
        print(f"  {name:<45} {status}  median {seconds * 1000:7.0f} ms", flush=True)


def print_hostile(results: list[dict[str, Any]]) -> None:
    """Prints one line per hostile upload."""
    for r in results:
        died = f"workers died: {r['workers_died']}" if r["workers_died"] else "no worker died"
        same = "previous model served" if r["same_model"] else "PREVIOUS MODEL NOT SERVED"
        print(
            f"  {r['name']:<40} {r['status']} {r['code'] or '':<22} {r['seconds']:6.2f} s  "
            f"largest worker +{r['grew_mib']:6.1f} MiB (peak)  {died}; {same}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    """Runs the server, times the valid uploads, then (with --hostile) the reproductions."""
    parser = argparse.ArgumentParser(prog="python -m bench.uploads", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7, help="timed uploads per format")
    parser.add_argument("--hostile", action="store_true", help="also send issue 27's hostile uploads")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="flight-delay-bench-uploads-"))
    try:
        run(work, args.repeat, args.hostile)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, repeat: int, hostile: bool) -> None:
    """Serves the dummy model and measures."""
    start_model = save_artifact(train_dummy(seed=0), work / "start.pkl")
    uploads = valid_uploads(work)
    bin_dir = Path(sys.executable).parent
    with procs.our_service(bin_dir, work / "data", start_model, ROOT) as server:
        token = admin_token(server)
        print("upload latency, 2 workers, SQLite (median of", repeat, "after one untimed):", flush=True)
        print_latencies({name: latency(server, token, data, repeat) for name, data in uploads.items()})
        if hostile:
            from tests.hostile import issue_27_reproductions

            post(server, token, uploads["project .lgbm.json"])
            print("hostile uploads (issue 27):", flush=True)
            print_hostile(hostile_run(server, token, issue_27_reproductions(work)))


def admin_token(server: procs.Server) -> str:
    """The admin token our_service made for this server (read from its environment)."""
    environ = Path(f"/proc/{server.process.pid}/environ").read_bytes().split(b"\0")
    return next(v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"ML_API_ADMIN_TOKEN="))


if __name__ == "__main__":
    main()
