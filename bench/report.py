"""Renders a run's results (a JSON-ready dict) as the tables `make bench` prints and README shows."""

from __future__ import annotations

from typing import Any

from bench.inprocess import RAW_MATRIX, RAW_ROW
from bench.profiling import SERVER_LOOP, WAITING

BACKENDS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
THROUGHPUT_GOAL = 1.5
V2_GOAL = 0.9  # the Open Inference Protocol within 10% of the native route
TARGETS = (
    ("batch of {flights:,} through V2 / native, over HTTP", "v2_batch_ratio", "<= 1.1x", lambda v: v <= 1.1),
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
    """One row per server configuration measured under load, then ours/MLServer ratios per backend."""
    load = results["load"]
    best = load["mlserver_best"]
    rows = [row for backend in load["ours"] for row in _ours_rows(load, backend)]
    rows.append(_load_row("gunicorn + uvicorn worker alone (no Flask, model, DB)", load["ceiling"]))
    for workers, result in load["mlserver"].items():
        mark = " (best)" if workers == best else ""
        rows.append(_load_row(f"MLServer parallel_workers={workers}{mark}", result))
    theirs = load["mlserver"][best]
    return rows + [_ratio_row(backend, ours, theirs) for backend, ours in load["ours"].items()]


def _ours_rows(load: dict[str, Any], backend: str) -> list[list[str]]:
    """Ours on one backend: the mean of its two runs, then each run."""
    before, after = load["ours_runs"][backend]
    history = "SQLite, synchronous=FULL" if backend == "sqlite" else BACKENDS[backend]
    return [
        _load_row(f"ours: gunicorn 2 uvicorn workers, history on {history} (mean)", load["ours"][backend]),
        _load_row("  ours, run before the others", before),
        _load_row("  ours, run after the others", after),
        _load_row("  ours through V2 (Open Inference Protocol), right after", load["v2"][backend]),
    ]


def _ratio_row(backend: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Ours on one backend over MLServer's best: throughput, latencies, CPU per request."""
    return [
        f"ours on {BACKENDS[backend]} / MLServer (best)",
        f"{ours['rps'] / theirs['rps']:.2f}x",
        f"{ours['p50_ms'] / theirs['p50_ms']:.2f}x",
        f"{ours['p99_ms'] / theirs['p99_ms']:.2f}x",
        "",
        f"{ours['cpu_ms_per_request'] / theirs['cpu_ms_per_request']:.2f}x",
    ]


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


def recording(results: dict[str, Any], backend: str) -> tuple[int, int, bool]:
    """History rows written during a backend's measured runs, its answered requests, and whether each
    run recorded at least as many rows as it had answers (every answered prediction recorded)."""
    runs = results["load"]["ours_runs"][backend]
    ok = all(run["recorded"] >= run["answered"] for run in runs)
    return sum(run["recorded"] for run in runs), sum(run["answered"] for run in runs), ok


def target_rows(results: dict[str, Any]) -> list[list[str]]:
    """Where we stand against each target: throughput and recording per backend, then the others."""
    ratios = results["ratios"]
    rows = [row for backend in results["load"]["ours"] for row in _backend_targets(results, backend)]
    sizes = {"flights": results["batch"]["flights"], "rows": results["history"]["rows"]}
    return rows + [
        [label.format(**sizes), f"{ratios[key]:.2f}x", goal, _status(ok(ratios[key]))]
        for label, key, goal, ok in TARGETS
    ]


def _backend_targets(results: dict[str, Any], backend: str) -> list[list[str]]:
    """Ours on one backend: its throughput over MLServer's best, and every answer in its history."""
    name = BACKENDS[backend]
    ratio = results["ratios"][f"throughput_ratio_{backend}"]
    v2 = results["ratios"][f"v2_ratio_{backend}"]
    recorded, answered, ok = recording(results, backend)
    return [
        [
            f"single-flight req/s, ours on {name} / MLServer (best)",
            f"{ratio:.2f}x",
            f">= {THROUGHPUT_GOAL}x",
            _status(ratio >= THROUGHPUT_GOAL),
        ],
        [
            f"single-flight req/s, ours on {name}: V2 / native",
            f"{v2:.2f}x",
            f">= {V2_GOAL}x",
            _status(v2 >= V2_GOAL),
        ],
        [
            f"every answered prediction in the history, {name}",
            f"{recorded:,} rows / {answered:,} answers",
            "rows >= answers, each run",
            _status(ok),
        ],
    ]


def _status(met: bool) -> str:
    """A target's status cell."""
    return "met" if met else "not met"


def render(results: dict[str, Any]) -> str:
    """The whole report: machine, load test, in process, batch, history, profile, targets."""
    sections = [
        _header(results),
        _load_section(results),
        _inprocess_section(results),
        _batch_section(results),
        _history_section(results),
        _profile_section(results),
        table(["target", "now", "goal", "status"], target_rows(results)),
    ]
    return "\n\n".join(sections)


def _header(results: dict[str, Any]) -> str:
    """What ran where: machine, command, load settings, databases, the prediction each side made."""
    machine, settings = results["machine"], results["settings"]
    predictions = results["predictions"]
    lines = [
        "flight-delay bench (PROVISIONAL: a shared 2-core machine; compare ratios, not absolutes)",
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']:.0f} GiB, "
        f"{machine['system']}, Python {machine['python']}; load average {machine['load_before']} at start, "
        f"{machine['load_after']} at end",
        f"command: {results['command']}  ({results['wall_seconds']:.0f} s)",
        f"load: wrk {settings['threads']} threads x {settings['connections']} connections, "
        f"{settings['duration']:.0f} s after a {settings['warmup']:.0f} s warm-up, one flight per request; "
        f"same prediction from both: ours {predictions['ours']!r}, MLServer {predictions['mlserver']!r}, "
        f"booster {predictions['raw']!r}",
    ]
    return "\n".join(lines + [_postgres_line(pg) for pg in results["databases"].values()])


def _postgres_line(pg: dict[str, Any]) -> str:
    """The throwaway PostgreSQL server's version and the settings that decide a commit's durability."""
    return (
        f"PostgreSQL {pg['server_version'].split()[0]}: a throwaway server (scripts/with_postgres.sh, "
        f"127.0.0.1), fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}, "
        f"full_page_writes={pg['full_page_writes']} (SQLite: synchronous=FULL, an fsync per commit)"
    )


def _load_section(results: dict[str, Any]) -> str:
    """The single-flight table, the history rows each backend wrote, ours on one connection."""
    load = results["load"]
    lines = [
        table(
            ["single flight over HTTP", "req/s", "p50 ms", "p99 ms", "errors", "server CPU ms/req"],
            load_rows(results),
        )
    ]
    for backend in load["ours"]:
        recorded, answered, ok = recording(results, backend)
        verdict = "every answer recorded" if ok else "ANSWERED PREDICTIONS MISSING FROM THE HISTORY"
        lines.append(
            f"history rows written by ours on {BACKENDS[backend]} during its two measured runs: "
            f"{recorded:,} for {answered:,} answered requests ({verdict})"
        )
    single = load["ours_c1"]
    lines.append(f"ours on SQLite, 1 connection: p50 {single['p50_ms']:.1f} ms, {single['rps']:.0f} req/s")
    return "\n".join(lines)


def _inprocess_section(results: dict[str, Any]) -> str:
    """One flight's stages in process, then the history write alone by synchronous mode."""
    inproc = results["inprocess"]
    return "\n\n".join(
        [
            table(
                ["in process, one flight (best of 25 short runs, interleaved)", "us/call", "x raw"],
                stage_rows(inproc["single"], RAW_ROW),
            ),
            table(
                ["history write alone (1 row)", "us/call"],
                [[f"SQLITE_SYNCHRONOUS={mode}", f"{s * 1e6:,.0f}"] for mode, s in inproc["sync"].items()]
                + [
                    [f"writes/s, FULL, {how}", f"{wps:,.0f}/s"]
                    for how, wps in inproc["concurrent_writes"].items()
                ],
            ),
        ]
    )


def _batch_section(results: dict[str, Any]) -> str:
    """The batch's stages in process and the whole request over HTTP, per flight."""
    inproc, batch = results["inprocess"], results["batch"]
    return table(
        [f"batch of {batch['flights']:,} flights", "us/flight", "x raw per row"],
        [
            *stage_rows(inproc["batch"], RAW_MATRIX, per=batch["flights"]),
            [
                "whole request over HTTP (gunicorn, predicted + recorded)",
                f"{batch['http_seconds'] / batch['flights'] * 1e6:,.1f}",
                f"{batch['http_seconds'] / inproc['batch'][RAW_MATRIX]:,.1f}x",
            ],
            [
                "whole request over HTTP through V2 (columns, predicted + recorded)",
                f"{batch['v2_http_seconds'] / batch['flights'] * 1e6:,.1f}",
                f"{batch['v2_http_seconds'] / inproc['batch'][RAW_MATRIX]:,.1f}x",
            ],
        ],
    )


def _history_section(results: dict[str, Any]) -> str:
    """The first and a deep history page, over HTTP and in process."""
    hist = results["history"]
    return table(
        [f"history of {hist['rows']:,} rows (SQLite), page_size {hist['page_size']}", "ms (median)"],
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
    )


def _profile_section(results: dict[str, Any]) -> str:
    """Where ours on SQLite spends a request's time under load, then the history write's native split."""
    profile = results["profile"]
    intro = (
        f"profile of ours on SQLite under the same load (py-spy, {profile['gil']['rate']} Hz, "
        f"{profile['gil']['seconds']:.0f} s each; ms per request, both workers; "
        "GIL = Python work, which caps a worker; wall = thread time, waits included; the history "
        "INSERT holds its wait for SQLite's write lock, the COMMIT its fsync, split in the next table):"
    )
    stages = table(["stage", "GIL ms", "GIL share", "wall ms", "wall share"], profile_rows(profile))
    native = table(
        [f"the history write, native frames ({profile['native']['rate']} Hz)", "samples", "share"],
        history_split_rows(profile["native"]),
    )
    return f"{intro}\n{stages}\n\n{native}"
