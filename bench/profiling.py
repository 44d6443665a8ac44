"""Samples our gunicorn workers with py-spy under load and sorts the samples into the request's stages."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import communicate_or_kill

# A frame in py-spy's raw (collapsed) output: "function (package/module.py:line)".
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")

# A request runs in the ASGI app (AccessLog outermost, on the event loop), or in Flask on a2wsgi's
# threads; its rows are committed by the group commit's task, or by a thread committing them itself.
IN_REQUEST = ("AccessLog.__call__", "WSGIResponder.wsgi", "GroupCommit._drain", "SqliteCommitter.commit_now")
WAITING = "waiting for a request (idle thread or loop)"
SERVER_LOOP = "uvicorn's event loop outside the app (HTTP parsing, accept, keep-alive, idle polls)"
HOST_WRITER = "history: the host writer process (reading, INSERT, COMMIT)"


@dataclass(frozen=True)
class Frame:
    """One stack frame: the function and the file it runs in (relative to site-packages)."""

    function: str
    file: str


def parse_frame(text: str) -> Frame:
    """Splits py-spy's "function (file:line)" into its parts."""
    match = FRAME.match(text)
    if match is None:
        return Frame(function=text, file="")
    return Frame(function=match["function"], file=match["file"])


def parse_raw(text: str) -> list[tuple[list[Frame], int]]:
    """Reads py-spy's raw output: one stack (root first, `;`-separated) and its sample count a line."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [parse_frame(part) for part in stack.split(";") if not part.startswith("process ")]
        stacks.append((frames, int(count)))
    return stacks


def _calls(stack: Sequence[Frame], *functions: str) -> bool:
    """Tells whether any frame is one of the named functions."""
    return any(frame.function in functions for frame in stack)


def _in_file(stack: Sequence[Frame], *prefixes: str) -> bool:
    """Tells whether any frame runs in a file under one of the given paths."""
    return any(frame.file.startswith(prefixes) for frame in stack)


def _commits(stack: Sequence[Frame]) -> bool:
    """Tells whether the stack is beginning or committing the history's transaction (and its fsyncs).

    On SQLite the writer calls the driver itself: its BEGIN IMMEDIATE and COMMIT are the time spent
    in Database.sqlite_writing outside the INSERT; elsewhere they are SQLAlchemy's commit.
    """
    if _calls(stack, "Database.sqlite_writing") and not _calls(stack, "insert_sqlite_rows"):
        return True
    return any(f.file.startswith("sqlalchemy/") and f.function.endswith("commit") for f in stack)


def _serializes_response(stack: Sequence[Frame]) -> bool:
    """Tells whether the stack is rendering the answer (its body, JSON encoding)."""
    return _calls(
        stack,
        "json_reply",
        "scored_body",
        "infer_reply",
        "predictions_reply",
        "Schema.dump",
        "DefaultJSONProvider.response",
        "DefaultJSONProvider.dumps",
    )


def _records(stack: Sequence[Frame]) -> bool:
    """Tells whether the stack is writing the history (the group commit, its backend, a local commit)."""
    return _calls(stack, "GroupCommit._drain", "GroupCommit.record", "SqliteCommitter.commit_now")


# Ordered: the first stage whose test matches a stack gets its samples. The native frames (wall
# profile only) tell SQLite's lock waits and fsyncs apart from the rest of the history write.
STAGES: tuple[tuple[str, Callable[[Sequence[Frame]], bool]], ...] = (
    (
        "history: waiting for SQLite's write lock (busy-handler sleeps)",
        lambda s: _records(s) and _calls(s, "sqlite3InvokeBusyHandler", "sqliteDefaultBusyCallback"),
    ),
    ("history: fsync (synchronous=FULL)", lambda s: _records(s) and _calls(s, "fdatasync", "fsync")),
    (
        "history: the host writer process (reading, INSERT, COMMIT)",
        lambda s: _in_file(s, "flight_delay/history/host_writer.py"),
    ),
    (
        "history: handing rows to the host writer (event loop)",
        lambda s: _calls(s, "SqliteBackend.commit", "SqliteBackend._through_writer"),
    ),
    (
        "history: waiting for the other worker's commit (flock)",
        lambda s: _calls(s, "ProcessWriteLock.held"),
    ),
    (
        "booster (LightGBM predict)",
        lambda s: _in_file(s, "lightgbm/", "flight_delay/serving/single_row.py"),
    ),
    (
        "encoding (feature contract)",
        lambda s: _in_file(s, "flight_delay/features.py", "flight_delay/artifact.py"),
    ),
    ("active-model lookup (registry.active)", lambda s: _calls(s, "ModelRegistry.active")),
    ("context lookup (the worker's index)", lambda s: _in_file(s, "flight_delay/context/")),
    ("history: BEGIN + COMMIT", lambda s: _records(s) and _commits(s)),
    ("history: INSERT and session", _records),
    ("response serialization (marshmallow dump, JSON)", _serializes_response),
    (
        "parsing + validation (JSON, msgspec, the rules; marshmallow words refusals)",
        lambda s: (
            _in_file(s, "webargs/", "marshmallow/", "msgspec/", "flight_delay/validation/", "orjson/")
            or _calls(s, "parsed_json", "read_request", "rows_of")
        ),
    ),
    (
        "data plane, other (checks, shaping)",
        lambda s: _calls(s, "PredictionService.score", "PredictionService.served", "DataPlane.predict"),
    ),
    ("uvicorn (response write)", lambda s: _calls(s, "RequestResponseCycle.send")),
    (
        "Flask/werkzeug/flask-smorest (routing, request, hooks)",
        lambda s: _in_file(s, "flask/", "werkzeug/", "flask_smorest/"),
    ),
    (
        "a2wsgi (Flask's requests handed to threads)",
        lambda s: (
            _calls(s, *(f"WSGIResponder.{name}" for name in ("__call__", "sender", "send", "start_response")))
            or _calls(s, "Body.read", "Body._receive_more_data")
        ),
    ),
    (
        "front of predict (middleware, routing, headers, metrics, access log)",
        lambda s: _in_file(
            s, "flight_delay/transport/", "flight_delay/observability/", "flight_delay/replies.py"
        ),
    ),
    ("other (asyncio, uvicorn)", lambda s: True),
)


def stage_of(stack: Sequence[Frame]) -> str:
    """Names the request stage a sampled stack belongs to, or what the thread did outside a request."""
    if _in_file(
        stack, "flight_delay/history/host_writer.py"
    ):  # waiting for rows is idle, like a worker's wait
        return WAITING if _calls(stack, "EpollSelector.select", "PollSelector.select") else HOST_WRITER
    if not _calls(stack, *IN_REQUEST):
        if _calls(stack, "_worker"):
            return WAITING
        return SERVER_LOOP if _in_file(stack, "uvicorn/", "httptools/", "uvicorn_worker/") else WAITING
    return next(name for name, test in STAGES if test(stack))


def breakdown(raw: str) -> Counter[str]:
    """Counts samples per stage in py-spy's raw output."""
    counts: Counter[str] = Counter()
    for stack, samples in parse_raw(raw):
        counts[stage_of(stack)] += samples
    return counts


def py_spy_path() -> str:
    """Finds py-spy next to this Python (the harness installs it into the project's .venv)."""
    candidate = Path(sys.executable).parent / "py-spy"
    found = str(candidate) if candidate.exists() else shutil.which("py-spy")
    if found is None:
        raise FileNotFoundError("py-spy is not installed: pip install -r bench/requirements.txt")
    return found


# Samples per second of each mode. Native unwinding pauses the workers for long, so it samples
# rarely; it only splits the history write into lock waits, fsync and the rest.
RATES = {"gil": 100, "wall": 100, "native": 10}


def record(pid: int, seconds: float, out: Path, *, mode: str) -> subprocess.Popen:
    """Starts py-spy on a gunicorn master and its workers.

    "gil" samples only the thread holding the GIL (the Python work that caps a worker's
    throughput); "wall" samples every thread, waiting or not (where a request's time goes);
    "native" is "wall" with C frames, down to SQLite's lock waits and fsyncs.
    """
    command = [
        py_spy_path(),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--format",
        "raw",
        "--rate",
        str(RATES[mode]),
        "--duration",
        str(max(1, round(seconds))),
        "--output",
        str(out),
    ]
    command += {"gil": ["--gil"], "wall": ["--idle"], "native": ["--idle", "--native"]}[mode]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, out: Path, timeout: float) -> Counter[str]:
    """Waits for py-spy to write its file and returns the samples per stage."""
    _, stderr = communicate_or_kill(process, timeout)
    if process.returncode != 0 or not out.exists():
        raise RuntimeError(f"py-spy failed ({process.returncode}): {stderr}")
    return breakdown(out.read_text())
