"""The server's helper processes (history writer, model sandbox, roll-up job): how one is ended."""

from __future__ import annotations

import subprocess


def end_child(process: subprocess.Popen, timeout_s: float) -> None:
    """Closes the child's stdin (its signal to stop once its work is done), waits, then kills it."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
