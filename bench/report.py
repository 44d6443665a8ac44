"""Renders a run's results (a JSON-ready dict) as the tables `make bench` prints and README shows."""

from __future__ import annotations

from typing import Any

from bench.inprocess import RAW_MATRIX, RAW_ROW
from bench.profiling import SERVER_LOOP, WAITING

TARGETS = (
    ("single-flight req/s, ours / MLServer (best)", "throughput_ratio", ">= 1.5x", lambda v: v >= 1.5),
    ("in-process predict path / raw booster.predict, 1 row", "predict_path_ratio", "<= 3x", lambda v: v <= 3),
    ("batch of {flights:,}: per flight / raw per row", "batch_ratio", "<= 10x", lambda v: v <= 10),
    ("history of {rows:,} rows: deep page / first page", "history_ratio", "<= 2x", lambda v: v <= 2),
)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Formats rows as a Markdown table whose columns line up in a terminal too."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([_line(header, widths), rule, *(_line(r, widths) for r in rows)])


def _line(cells: list[str], widths: list[int]) -> str:
    """One table row, each cell padded to its column's width."""
    return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def load_rows(results: dict[str, Any]) -> list[list[str]]:
    """One row per server configuration measured under load, then ours/MLServer ratios."""
    load = results["load"]
    best = load["mlserver_best"]
    before, after = load["ours_runs"]
    rows = [
        _load_row("ours: gunicorn 2 uvicorn workers, history FULL (mean)", load["ours"]),
        _load_row("  ours, run before the others", before),
        _load_row("  ours, run after the others", after),
        _load_row("gunicorn + uvicorn worker alone (no Flask, model, DB)", load["ceiling"]),
    ]
    for workers, result in load["mlserver"].items():
        mark = " (best)" if workers == best else ""
        rows.append(_load_row(f"MLServer parallel_workers={workers}{mark}", result))
    ours, theirs = load["ours"], load["mlserver"][best]
    rows.append(
        [
            "ours / MLServer (best)",
            f"{ours['rps'] / theirs['rps']:.2f}x",
            f"{ours['p50_ms'] / theirs['p50_ms']:.2f}x",
            f"{ours['p99_ms'] / theirs['p99_ms']:.2f}x",
            "",
            f"{ours['cpu_ms_per_request'] / theirs['cpu_ms_per_request']:.2f}x",
        ]
    )
    return rows


def _load_row(label: str, result: dict[str, Any]) -> list[str]:
    """Formats one load-test result."""
    return [
        label,
        f"{result['rps']:.0f}",
        f"{result['p50_ms']:.1f}",
        f"{result['p99_ms']:.1f}",
        str(result["errors"]),
        f"{result['cpu_ms_per_request']:.2f}",
    ]


def stage_rows(stages: dict[str, float], raw_key: str, per: int = 1) -> list[list[str]]:
    """Formats in-process stage timings in microseconds (per item when `per` > 1) and x raw."""
    raw = stages[raw_key]
    return [
        [name, f"{seconds / per * 1e6:,.1f}", f"{seconds / raw:,.1f}x"] for name, seconds in stages.items()
    ]


def profile_rows(profile: dict[str, Any]) -> list[list[str]]:
    """Per-request milliseconds and shares of each stage: GIL held, then wall clock (thread time)."""
    gil, wall = profile["gil"], profile["wall"]
    names = [n for n in {**wall["stages"], **gil["stages"]} if n != WAITING]
    # GIL time is all work, the main loop's included; wall shares are of the time inside requests.
    totals = {
        "gil": sum(v for k, v in gil["stages"].items() if k != WAITING),
        "wall": sum(v for k, v in wall["stages"].items() if k not in (WAITING, SERVER_LOOP)),
    }
    rows = []
    for name in sorted(names, key=lambda n: -gil["stages"].get(n, 0)):
        cells = [name]
        for key, part in (("gil", gil), ("wall", wall)):
            samples = part["stages"].get(name, 0)
            share = "" if key == "wall" and name == SERVER_LOOP else f"{samples / max(totals[key], 1):.0%}"
            cells += [f"{_ms_per_request(samples, part):.2f}", share]
        rows.append(cells)
    return rows


def history_split_rows(native: dict[str, Any]) -> list[list[str]]:
    """Shares of the history write's wall time: lock waits, fsync, the rest (native samples)."""
    parts = {k: v for k, v in native["stages"].items() if k.startswith("history")}
    total = sum(parts.values())
    return [[name, str(samples), f"{samples / max(total, 1):.0%}"] for name, samples in parts.items()]


def _ms_per_request(samples: int, part: dict[str, Any]) -> float:
    """Converts samples into milliseconds per request served during the profile."""
    return samples / part["rate"] / max(part["requests"], 1) * 1000


def target_rows(results: dict[str, Any]) -> list[list[str]]:
    """Where we stand against each target."""
    ratios = results["ratios"]
    sizes = {"flights": results["batch"]["flights"], "rows": results["history"]["rows"]}
    return [
        [label.format(**sizes), f"{ratios[key]:.2f}x", goal, "met" if ok(ratios[key]) else "not met"]
        for label, key, goal, ok in TARGETS
    ]


def render(results: dict[str, Any]) -> str:
    """The whole report: machine, load test, in process, batch, history, profile, targets."""
    machine, settings = results["machine"], results["settings"]
    inproc, batch, hist = results["inprocess"], results["batch"], results["history"]
    predictions = results["predictions"]
    parts = [
        "flight-delay bench (PROVISIONAL: a shared 2-core machine; compare ratios, not absolutes)",
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']:.0f} GiB, "
        f"{machine['system']}, Python {machine['python']}; load average {machine['load_before']} at start, "
        f"{machine['load_after']} at end",
        f"command: {results['command']}  ({results['wall_seconds']:.0f} s)",
        f"load: wrk {settings['threads']} threads x {settings['connections']} connections, "
        f"{settings['duration']:.0f} s after a {settings['warmup']:.0f} s warm-up, one flight per request; "
        f"same prediction from both: ours {predictions['ours']!r}, MLServer {predictions['mlserver']!r}, "
        f"booster {predictions['raw']!r}",
        "",
        table(
            ["single flight over HTTP", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req"],
            load_rows(results),
        ),
        f"history rows written by ours during its two measured runs: {results['load']['ours']['recorded']:,} "
        f"for {results['load']['ours']['requests']:,} completed requests; "
        f"ours with 1 connection: p50 {results['load']['ours_c1']['p50_ms']:.1f} ms, "
        f"{results['load']['ours_c1']['rps']:.0f} req/s",
        "",
        table(
            ["in process, one flight (best of 25 short runs, interleaved)", "us/call", "x raw"],
            stage_rows(inproc["single"], RAW_ROW),
        ),
        "",
        table(
            ["history write alone (1 row)", "us/call"],
            [[f"SQLITE_SYNCHRONOUS={mode}", f"{s * 1e6:,.0f}"] for mode, s in inproc["sync"].items()]
            + [
                [f"writes/s, FULL, {how}", f"{wps:,.0f}/s"]
                for how, wps in inproc["concurrent_writes"].items()
            ],
        ),
        "",
        table(
            [f"batch of {batch['flights']:,} flights", "us/flight", "x raw per row"],
            [
                *stage_rows(inproc["batch"], RAW_MATRIX, per=batch["flights"]),
                [
                    "whole request over HTTP (gunicorn, predicted + recorded)",
                    f"{batch['http_seconds'] / batch['flights'] * 1e6:,.1f}",
                    f"{batch['http_seconds'] / inproc['batch'][RAW_MATRIX]:,.1f}x",
                ],
            ],
        ),
        "",
        table(
            [f"history of {hist['rows']:,} rows, page_size {hist['page_size']}", "ms (median)"],
            [
                ["first page over HTTP", f"{hist['first_page'] * 1e3:.1f}"],
                [
                    f"deep page over HTTP ({hist['deep_rows_skipped']:,} rows newer)",
                    f"{hist['deep_page'] * 1e3:.1f}",
                ],
                ["in process: first page (page query + count)", f"{hist['first_page_query'] * 1e3:.1f}"],
                ["in process: deep page (page query + count)", f"{hist['deep_page_query'] * 1e3:.1f}"],
                ["in process: the count(*) alone", f"{hist['count_query'] * 1e3:.1f}"],
            ],
        ),
        "",
        f"profile of ours under the same load (py-spy, {results['profile']['gil']['rate']} Hz, "
        f"{results['profile']['gil']['seconds']:.0f} s each; ms per request, both workers; "
        "GIL = Python work, which caps a worker; wall = thread time, waits included; the history "
        "INSERT holds its wait for SQLite's write lock, the COMMIT its fsync, split in the next table):",
        table(["stage", "GIL ms", "GIL share", "wall ms", "wall share"], profile_rows(results["profile"])),
        "",
        table(
            [
                f"the history write, native frames ({results['profile']['native']['rate']} Hz)",
                "samples",
                "share",
            ],
            history_split_rows(results["profile"]["native"]),
        ),
        "",
        table(["target", "now", "goal", "status"], target_rows(results)),
    ]
    return "\n".join(parts)
