"""The roll-up job as a process: a pass every interval until told to stop (a signal, or its parent gone).

`flight-delay serve` starts it beside gunicorn (RollupProcess), reading its stdin: the pipe closes when
the server is gone, however it ended, and the job stops after the chunk it is counting. `flight-delay
rollup [--every S]` runs the same loop in the foreground (SIGTERM or Ctrl-C stop it the same way).
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from flight_delay.children import end_child
from flight_delay.history.database import Database, database_error_reason, engine_options
from flight_delay.monitoring.rollup import PassSummary, Rollup

log = logging.getLogger(__name__)

MODULE = "flight_delay.monitoring.rollup_job"


def one_pass(rollup: Rollup) -> PassSummary | None:
    """Runs a pass, logging what it stored; a database failure is logged and the next pass retries."""
    started = time.monotonic()
    try:
        summary = rollup.run_once()
    except SQLAlchemyError as exc:
        log.warning(
            "roll-up pass failed: %s; the next pass goes on from the marks", database_error_reason(exc)
        )
        return None
    if summary.skipped:
        log.debug("another job holds the roll-up lock: pass skipped")
    elif summary.chunks or summary.lost:
        chunks = sum(summary.chunks.values())
        log.info(
            "rolled up %d chunks of %d models in %.1f s (%d stored first by another job)",
            chunks,
            len(summary.chunks),
            time.monotonic() - started,
            summary.lost,
        )
    return summary


def run(rollup: Rollup, every_s: float | None, stop: threading.Event, watch_fd: int | None = None) -> None:
    """One pass (every_s None), or a pass every every_s seconds until `stop` is set or watch_fd closes."""
    while not stop.is_set():
        one_pass(rollup)
        if every_s is None:
            return
        if watch_fd is None:
            stop.wait(every_s)
        elif parent_gone(watch_fd, every_s):
            stop.set()


def parent_gone(fd: int, timeout_s: float) -> bool:
    """Waits up to timeout_s on the parent's pipe; True once it is closed (the parent has ended)."""
    readable, _, _ = select.select([fd], [], [], timeout_s)
    return bool(readable) and not os.read(fd, 1)


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT ask the job to stop after the chunk it is counting."""

    def handle(signum: int, _frame: Any) -> None:
        """Asks the loop to stop (the chunk being counted is finished and stored first)."""
        log.info("signal %d: stopping after the current chunk", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def job(config: Mapping[str, Any], every_s: float | None, watch_fd: int | None = None) -> None:
    """Runs the job over the configured database until done (one pass) or stopped."""
    stop = threading.Event()
    stop_on_signals(stop)
    db = Database().bind(config["DATABASE_URL"], **engine_options(config))

    def should_stop() -> bool:
        """Asked between chunks: a signal came, or the parent is gone."""
        if watch_fd is not None and not stop.is_set() and parent_gone(watch_fd, 0):
            stop.set()
        return stop.is_set()

    try:
        run(Rollup(db, should_stop=should_stop), every_s, stop, watch_fd)
    finally:
        db.dispose()


class RollupProcess:
    """The job beside gunicorn: started before the workers, restarted if it dies, stopped with the server."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.command = [sys.executable, "-m", MODULE, f"--every={config['MONITORING_ROLLUP_INTERVAL_S']}"]
        self.owner = os.getpid()  # forked workers inherit this object; only the server may stop it
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restart_at: float | None = None

    def start(self) -> None:
        """Starts the job (it reads the configuration from the same environment as the server)."""
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE)  # noqa: S603 (our own command)
        self.started_at = time.monotonic()

    def ensure_running(self) -> None:
        """Restarts a job that stopped, a minute after it started at the soonest (a failing one backs off)."""
        if self.process is None or self.process.poll() is None:
            return
        now = time.monotonic()
        if self.restart_at is None:
            self.restart_at = max(now, self.started_at + 60)
            log.error("the roll-up job stopped; restarting it in %.0f s", self.restart_at - now)
        if now >= self.restart_at:
            self.restart_at = None
            self.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stops the job from the server: its stdin closes, it stops after its chunk (or is killed)."""
        if os.getpid() != self.owner or self.process is None:
            return
        end_child(self.process, timeout_s)


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the job as `flight-delay serve` starts it: until its stdin closes."""
    from flight_delay.config import load_config

    parser = argparse.ArgumentParser(
        description="The monitoring roll-up job (started by flight-delay serve)."
    )
    parser.add_argument("--every", type=float, required=True, help="seconds between passes")
    args = parser.parse_args(argv)
    config = load_config()
    logging.basicConfig(level=config["LOG_LEVEL"], format="%(asctime)s [roll-up job %(process)d] %(message)s")
    job(config, args.every, watch_fd=sys.stdin.fileno())


if __name__ == "__main__":
    main()
