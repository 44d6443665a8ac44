"""Points prometheus_client at a per-server folder so that every gunicorn worker's counts add up.

prometheus_client decides at import whether it runs in multiprocess mode, from
PROMETHEUS_MULTIPROC_DIR, so this module must not import it, and `flight-delay serve` calls it
before anything imports the app.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"


def use_fresh_metrics_dir() -> Path:
    """Empties PROMETHEUS_MULTIPROC_DIR if the operator set it, else makes a temporary one; returns it."""
    given = os.environ.get(ENV_VAR)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # a previous run's counts would be added to this one's
            stale.unlink()
        return folder
    folder = Path(tempfile.mkdtemp(prefix="flight-delay-metrics-"))
    os.environ[ENV_VAR] = str(folder)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def multiprocess_enabled() -> bool:
    """Tells whether metrics are shared between processes through files."""
    return bool(os.environ.get(ENV_VAR))
