"""A throwaway PostgreSQL server on 127.0.0.1 for the benchmark, started by scripts/with_postgres.sh.

The script starts a fresh cluster (installing Debian's postgresql when missing), runs a command with
TEST_DATABASE_URL and removes the cluster when the command ends. Here the command hands the URL to
the harness and holds the server until the harness closes its stdin.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

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
        start_new_session=True,  # Ctrl-C reaches the harness only, which then stops the server itself
    )
    try:
        url = read_url(process)
        commit_on_answer(url)
        yield url
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


def commit_on_answer(url: str) -> None:
    """Makes COMMIT wait for the WAL write again (the script turns synchronous_commit off for tests).

    Without it a commit returns before its record is written, and a crash of the server alone could
    lose predictions already answered. fsync stays as the script sets it (off): see `settings`.
    """
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            name = engine.dialect.identifier_preparer.quote(make_url(url).database)
            connection.execute(text(f"ALTER DATABASE {name} SET synchronous_commit = on"))
    finally:
        engine.dispose()


def settings(url: str) -> dict[str, Any]:
    """The server's version and the settings that make a commit durable, as a new session sees them."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {name: connection.scalar(text(f"SHOW {name}")) for name in SETTINGS}
    finally:
        engine.dispose()
