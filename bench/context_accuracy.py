"""Issue 23's "Done when", measured on the served predictions: `python -m bench.context_accuracy --model M`.

Serves a trained model with `flight-delay serve` (production settings, SQLite or --database-url),
posts the flights and weather from October 30 to December 31 over HTTP (every fact: a prediction
reads only what was known at its as_of, so what happened later changes nothing), then asks for
every November-December flight that arrived: before departure (as_of two hours before the scheduled
departure, dep_delay null) and at departure (as_of the departure). It prints MAE and RMSE of what
the service answered against the train-median constant and `arr_delay = dep_delay`, the ratios the
issue asks for, the gain's 95% day-block bootstrap interval, and the model's own (Spark) test metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import procs
from bench.payloads import load_artifact
from flight_delay.context.definitions import DEFAULT_LEAD_S, flight_facts, local_day
from flight_delay.context.ingestion import moment
from flight_delay.data.nycflights import build_dataset, frame_records, load_table
from flight_delay.features import INPUT_FIELDS
from flight_delay.feed import ServiceClient
from flight_delay.training.evaluation import day_block_bootstrap

ROOT = Path(__file__).resolve().parents[1]
FIRST_POSTED = date(2013, 10, 30)  # the test period's context looks back a day at most
BATCH = 5_000
TARGETS = {  # the ratios: (basis, metric, baseline) -> at most
    ("before_departure", "mae", "train_median"): 0.92,
    ("at_departure", "mae", "dep_delay"): 0.93,
    ("at_departure", "rmse", "dep_delay"): 0.965,
}


@contextmanager
def served(model: Path, work: Path, database_url: str | None) -> Iterator[tuple[str, str]]:
    """`flight-delay serve` with the model, keeping the whole period in each worker's context."""
    token = secrets.token_hex(32)
    port = procs.free_port()
    env = {
        **os.environ,
        "FLIGHT_DELAY_ENV": "production",
        "ML_API_ADMIN_TOKEN": token,
        "DATA_DIR": str(work),
        "DEFAULT_MODEL_PATH": str(model),
        "ML_API_HOST": procs.HOST,
        "ML_API_PORT": str(port),
        "CONTEXT_RETENTION_H": str(24 * 70),  # the two months and their lookback, in one state
        **({"DATABASE_URL": database_url} if database_url else {}),
    }
    command = [str(Path(sys.executable).parent / "flight-delay"), "serve"]
    with procs.process_group(command, env, work / "server.log", ROOT) as server:
        server.url = f"http://{procs.HOST}:{port}"
        procs.wait_ready(server, "/model/", headers=procs.bearer(token))
        yield server.url, token


def post_period(client: ServiceClient, flights: pd.DataFrame, weather: pd.DataFrame) -> dict[str, int]:
    """Posts every flight and weather hour from FIRST_POSTED on; returns how many were recorded."""
    days = pd.to_datetime(flights[["year", "month", "day"]]).dt.date
    hours = pd.to_datetime(weather[["year", "month", "day"]]).dt.date
    return {
        "flights": client.post_all("/flights/", "flights", frame_records(flights[days >= FIRST_POSTED])),
        "observations": client.post_all(
            "/weather/", "observations", frame_records(weather[hours >= FIRST_POSTED])
        ),
    }


def questions(test: list[dict[str, Any]], basis: str) -> list[dict[str, Any]]:
    """Each test flight's request on one basis, with its as_of."""
    asked = []
    for flight in test:
        facts = flight_facts(flight)
        request = {name: flight[name] for name in (*INPUT_FIELDS, "tailnum", "flight")}
        if basis == "before_departure":
            request.update(dep_delay=None, as_of=moment(facts.scheduled - DEFAULT_LEAD_S).isoformat())
        else:
            request["as_of"] = moment(facts.departed).isoformat()
        asked.append(request)
    return asked


def predicted(client: ServiceClient, asked: list[dict[str, Any]]) -> tuple[np.ndarray, float]:
    """The service's predictions, in batches; and the share that used context."""
    values, used = [], 0
    for start in range(0, len(asked), BATCH):
        answer = client.post("/model/predict/", {"flights": asked[start : start + BATCH]})
        values += [p["arr_delay"] for p in answer["predictions"]]
        used += sum(p["context"]["used"] for p in answer["predictions"])
    return np.array(values), used / len(asked)


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """MAE and RMSE."""
    return {"mae": float(np.mean(np.abs(p - y))), "rmse": float(np.sqrt(np.mean((p - y) ** 2)))}


def measured(y: np.ndarray, served: np.ndarray, baselines: dict[str, np.ndarray], days: np.ndarray) -> dict:
    """One basis: the served model and the baselines, and the gain over each with its interval."""
    result: dict[str, Any] = {"model": scores(y, served), "baselines": {}, "gains": {}}
    for name, baseline in baselines.items():
        result["baselines"][name] = scores(y, baseline)
        for metric in ("mae", "rmse"):
            low, high, better = day_block_bootstrap(y, served, baseline, days, metric)
            gain = result["baselines"][name][metric] - result["model"][metric]
            result["gains"][f"{name} {metric}"] = {"gain": gain, "ci95": [low, high], "days_better": better}
    return result


def verdicts(results: dict[str, Any]) -> list[str]:
    """The issue's targets, each with its figure and whether it is met."""
    lines = []
    for (basis, metric, baseline), limit in TARGETS.items():
        ratio = results[basis]["model"][metric] / results[basis]["baselines"][baseline][metric]
        lines.append(
            f"{basis} {metric.upper()} / {baseline}: {ratio:.4f} (at most {limit}) {_met(ratio <= limit)}"
        )
    low = results["before_departure"]["gains"]["train_median mae"]["ci95"][0]
    lines.append(
        f"before_departure MAE gain over train_median, 95% interval from {low:+.2f} (above 0) {_met(low > 0)}"
    )
    return lines


def _met(ok: bool) -> str:
    """The verdict's word."""
    return "met" if ok else "NOT MET"


def run(model: Path, database_url: str | None) -> dict[str, Any]:
    """Serves, posts, asks, measures."""
    flights, weather = build_dataset(), load_table("weather")
    test_frame = flights[flights["month"].isin((11, 12)) & flights["arr_delay"].notna()]
    test = frame_records(test_frame)
    y = test_frame["arr_delay"].to_numpy(np.float64)
    days = np.array([local_day(f["year"], f["month"], f["day"]) for f in test])
    before_test = flights[~flights["month"].isin((11, 12)) & flights["arr_delay"].notna()]
    median = np.full(len(y), float(np.median(before_test["arr_delay"])))
    baselines = {
        "before_departure": {"train_median": median},
        "at_departure": {"train_median": median, "dep_delay": test_frame["dep_delay"].to_numpy(np.float64)},
    }
    with (
        tempfile.TemporaryDirectory(prefix="context-accuracy-") as folder,
        served(model, Path(folder), database_url) as (url, token),
    ):
        client = ServiceClient(url, token)
        started = time.perf_counter()
        posted = post_period(client, flights, weather)
        time.sleep(1)  # longer than CONTEXT_REFRESH_MS: every worker has read the posts
        results: dict[str, Any] = {"posted": posted, "post_seconds": time.perf_counter() - started}
        for basis in ("before_departure", "at_departure"):
            started = time.perf_counter()
            served_values, used = predicted(client, questions(test, basis))
            results[basis] = measured(y, served_values, baselines[basis], days)
            results[basis].update(context_used=used, seconds=time.perf_counter() - started, rows=len(y))
    return results


def render(results: dict[str, Any], trained: dict[str, Any] | None) -> str:
    """The figures, the issue's targets, and the model's own test metrics beside the served ones."""
    lines = [f"posted {results['posted']} in {results['post_seconds']:.1f} s"]
    for basis in ("before_departure", "at_departure"):
        r = results[basis]
        lines.append(
            f"{basis}: served model MAE {r['model']['mae']:.3f} RMSE {r['model']['rmse']:.3f} on {r['rows']} "
            f"flights ({r['context_used']:.1%} with context, {r['seconds']:.1f} s)"
        )
        for name, s in r["baselines"].items():
            lines.append(f"  {name}: MAE {s['mae']:.3f} RMSE {s['rmse']:.3f}")
        for name, g in r["gains"].items():
            lines.append(f"  gain over {name}: {g['gain']:+.3f} [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]")
        if trained:
            model = trained["bases"][basis]["overall"]["model"]
            lines.append(
                f"  the artifact's own test metrics (Spark): MAE {model['mae']:.3f} RMSE {model['rmse']:.3f}"
            )
    return "\n".join([*lines, "Done when:", *verdicts(results)])


def main(argv: list[str] | None = None) -> None:
    """Parses the command line, runs, prints and writes bench/results/context_accuracy.json."""
    parser = argparse.ArgumentParser(prog="python -m bench.context_accuracy", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="an artifact from `flight-delay train`")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: SQLite in a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "context_accuracy.json")
    args = parser.parse_args(argv)
    results = run(args.model.resolve(), args.database_url)
    print(render(results, load_artifact(args.model).metrics))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
