"""gunicorn's arbiter, extended to run a task of ours on each turn of its main loop (server.py).

What is used: `gunicorn.arbiter.Arbiter`, subclassed to override `manage_workers`, which the
arbiter calls at start, on each turn of its main loop (at least once a second) and after the
signals that change the workers' number; the arbiter's `app` attribute (the application it was
built with); and `BaseApplication.run`'s body (build an Arbiter on the application, run it, print
a RuntimeError and exit 1), repeated with our arbiter.

Why no public API does it: the host's history writer is a child process of the arbiter, which
reaps every child it has, so only the arbiter can notice it died and start it again; gunicorn's
server hooks run on workers' and the arbiter's events (fork, exit, reload), never periodically, and
`BaseApplication` offers no way to choose the arbiter class.

What breaks if it changes: if `manage_workers` is no longer called from the main loop, a dead
history writer is not restarted and every SQLite history write fails until the server restarts;
a renamed `app` attribute makes the arbiter's loop raise, which stops the server.
tests/test_compat.py checks both against gunicorn's source.
"""

from __future__ import annotations

import sys
from typing import Any

from gunicorn.arbiter import Arbiter


class TurningArbiter(Arbiter):
    """gunicorn's arbiter, calling its application's `arbiter_turn()` before it keeps the workers' number."""

    def manage_workers(self) -> None:
        """Runs the application's task for this turn, then spawns or stops workers as gunicorn does."""
        self.app.arbiter_turn()
        super().manage_workers()


def run_arbiter(application: Any) -> None:
    """BaseApplication.run with TurningArbiter: runs gunicorn's main loop until the server stops."""
    try:
        TurningArbiter(application).run()
    except RuntimeError as exc:
        print(f"\nError: {exc}\n", file=sys.stderr)
        sys.exit(1)
