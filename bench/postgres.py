"""A throwaway PostgreSQL server on 127.0.0.1 for the benchmark, started by scripts/with_postgres.sh.

The script starts a fresh cluster (installing Debian's postgresql when missing), runs a command with
TEST_DATABASE_URL and removes the cluster when the command ends. Here the command hands the URL to
the harness and holds the server until the harness closes its stdin. The server keeps a real
server's durability (PG_DURABLE=1: fsync, full-page writes and synchronous commit on), as SQLite's
history fsyncs every commit, so that neither backend's figures are flattered.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.procs import stop_group

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "with_postgres.sh"
# Runs under the script: prints the database's URL, then waits for the harness to close stdin.
HOLD = "import os, sys; print(os.environ['TEST_DATABASE_URL'], flush=True); sys.stdin.read()"
STOP_SECONDS = 60
# What decides how durable a commit is; reported next to the figures.
SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes")


@contextmanager
def server() -> Iterator[str]:
    """Starts a throwaway server and yields its database's URL; stops it and removes its files at exit."""
    process = subprocess.Popen(
        ["bash", str(SCRIPT), sys.executable, "-c", HOLD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PG_DURABLE": "1"},
        start_new_session=True,  # Ctrl-C reaches the harness only, which then stops the server itself
    )
    try:
        yield read_url(process)
    finally:
        release(process)


def read_url(process: subprocess.Popen) -> str:
    """Reads the database URL the holding command prints, failing if the script ends first."""
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("postgresql"):
            return line.strip()
    raise RuntimeError(f"{SCRIPT.name} ended ({process.wait()}) before PostgreSQL was ready")


def release(process: subprocess.Popen) -> None:
    """Lets the holding command end, so that the script stops the server; forces it past a delay."""
    with suppress(BrokenPipeError, OSError):
        process.stdin.close()
    try:
        process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        stop_group(process)  # SIGTERM: the script's trap still stops the server and removes its folder


def settings(url: str) -> dict[str, Any]:
    """The server's version and the settings that make a commit durable, as a new session sees them."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {name: connection.scalar(text(f"SHOW {name}")) for name in SETTINGS}
    finally:
        engine.dispose()


def postmaster_of(database_url: str) -> int:
    """The PostgreSQL server's main process: the parent of the backend serving one connection of ours."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:  # read while the backend lives: it ends with the connection
            return parent_of(int(connection.execute(text("SELECT pg_backend_pid()")).scalar()))
    finally:
        engine.dispose()


def parent_of(pid: int) -> int:
    """A process's parent, from /proc (Linux)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def children_of(parent: int) -> list[int]:
    """The processes whose parent is `parent` (those that end while listed are left out)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            if parent_of(int(stat.parent.name)) == parent:
                children.append(int(stat.parent.name))
    return children


@contextmanager
def stopped(database_url: str) -> Iterator[None]:
    """SIGSTOPs the whole PostgreSQL server (its main process and backends) until the block ends.

    Whatever happens, what was stopped is continued: a server left stopped hangs everything after.
    """
    postmaster = postmaster_of(database_url)
    frozen: list[int] = []
    try:
        for pid in [postmaster, *children_of(postmaster)]:
            with suppress(ProcessLookupError):  # a backend that ended since it was listed
                os.kill(pid, signal.SIGSTOP)
                frozen.append(pid)
        yield
    finally:
        for pid in frozen:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
