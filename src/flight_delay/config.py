"""Configuration from the environment, with explicit overrides for tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENVIRONMENTS = ("production", "development", "testing")
# Room for the multipart envelope around a model file of MAX_MODEL_BYTES.
MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    """Reads an integer variable, naming it in the error when it is not one."""
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    """Reads a number variable, naming it in the error when it is not one."""
    raw = environ.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    """Reads a true/false variable, naming it in the error when it is neither."""
    raw = (environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError(f"{name} must be true or false, got {raw!r}")
    return raw in ("1", "true", "yes", "on")


def load_config(environ: Mapping[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    """Builds the app configuration from environment variables; keyword overrides win."""
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {
        **_storage_settings(env),
        **_server_settings(env),
        **_database_settings(env),
        **_service_settings(env),
        **_monitoring_settings(env),
        **_sandbox_settings(env),
        **_context_settings(env),
        **_lifecycle_settings(env),
    }
    config.update(overrides)
    _check(config)
    config["TESTING"] = config["ENV"] == "testing"
    return config


def _storage_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The environment's name, where the database and the models live, and how often models are checked."""
    data_dir = Path(env.get("DATA_DIR", "var")).resolve()
    return {
        "ENV": env.get("FLIGHT_DELAY_ENV", "production"),
        "DATA_DIR": data_dir,
        "DATABASE_URL": env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'flight_delay.db'}",
        "MODEL_STORE_DIR": Path(env.get("MODEL_STORE_DIR") or data_dir / "models"),
        "DEFAULT_MODEL_PATH": Path(env.get("DEFAULT_MODEL_PATH") or data_dir / "model_dummy.pkl"),
        "MIGRATE_AT_START": _bool(env, "MIGRATE_AT_START", True),
        "MODEL_REFRESH_MS": _int(env, "MODEL_REFRESH_MS", 250),
    }


def _server_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Where the server listens, its workers, threads and timeout, and the largest request body."""
    return {
        "ML_API_HOST": env.get("ML_API_HOST", "127.0.0.1"),
        "ML_API_PORT": _int(env, "ML_API_PORT", 8000),
        "ML_API_WORKERS": _int(env, "ML_API_WORKERS", 2),
        "ML_API_THREADS": _int(env, "ML_API_THREADS", 4),
        "ML_API_TIMEOUT": _int(env, "ML_API_TIMEOUT", 60),
        # A batch of 10,000 flights is 2-5 MB of JSON; model uploads have their own MAX_MODEL_BYTES.
        "MAX_CONTENT_LENGTH": _int(env, "MAX_REQUEST_BYTES", 16 * 1024 * 1024),
    }


def _database_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """How SQLite and PostgreSQL connections wait, sync and commit."""
    return {
        "SQLITE_BUSY_TIMEOUT_MS": _int(env, "SQLITE_BUSY_TIMEOUT_MS", 5000),
        "SQLITE_SYNCHRONOUS": env.get("SQLITE_SYNCHRONOUS", "FULL").upper(),
        "SQLITE_COMMIT_INTERVAL_MS": _int(env, "SQLITE_COMMIT_INTERVAL_MS", 1),
        "POSTGRES_LOCK_TIMEOUT_MS": _int(env, "POSTGRES_LOCK_TIMEOUT_MS", 5000),
        "POSTGRES_CONNECT_TIMEOUT_S": _int(env, "POSTGRES_CONNECT_TIMEOUT_S", 5),
        # A statement the server runs longer than this is cancelled by the server (a stopped server
        # cannot: the deadlines below are the client's own).
        "POSTGRES_STATEMENT_TIMEOUT_MS": _int(env, "POSTGRES_STATEMENT_TIMEOUT_MS", 30_000),
        # A prediction whose history write (or model lookup) is not done within this is refused with a
        # 503 `database_unavailable`, whatever the database does: never a hang.
        "HISTORY_WRITE_TIMEOUT_S": _float(env, "HISTORY_WRITE_TIMEOUT_S", 5.0),
        # /health/ and readiness answer within this (then `unavailable`) whatever the database does.
        "HEALTH_TIMEOUT_S": _float(env, "HEALTH_TIMEOUT_S", 1.5),
    }


def _service_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The log level, who may read, predict and load models, and the bounds on requests in flight."""
    return {
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO").upper(),
        "ML_API_ADMIN_TOKEN": env.get("ML_API_ADMIN_TOKEN") or None,
        "ML_API_ADMIN_TOKENS": env.get("ML_API_ADMIN_TOKENS") or None,  # name:token,... (tokens.py)
        "ML_API_READER_TOKENS": env.get("ML_API_READER_TOKENS") or None,  # read the records (access.py)
        "ML_API_PREDICT_TOKENS": env.get("ML_API_PREDICT_TOKENS") or None,
        # Outside development, reading needs a reader or admin token unless this makes it public.
        "ML_API_PUBLIC_READ": _bool(env, "ML_API_PUBLIC_READ", False),
        "ML_API_PREDICT_NEEDS_TOKEN": _bool(env, "ML_API_PREDICT_NEEDS_TOKEN", False),
        "ML_API_ALLOW_UPLOAD": _bool(env, "ML_API_ALLOW_UPLOAD", True),
        "ML_API_STRICT_INPUTS": _bool(env, "ML_API_STRICT_INPUTS", False),
        "ML_API_MODEL_SIGNING_KEY": env.get("ML_API_MODEL_SIGNING_KEY") or None,
        "MAX_MODEL_BYTES": _int(env, "MAX_MODEL_BYTES", 64 * 1024 * 1024),
        # A body not whole this many seconds after its head is a 408 (it is read on the event loop,
        # holding no thread meanwhile); as long as the head's own bound, REQUEST_HEAD_TIMEOUT_SECONDS.
        "ML_API_BODY_TIMEOUT_S": _int(env, "ML_API_BODY_TIMEOUT_S", 30),
        # Requests in flight per worker (health checks aside) beyond which the next is a 503: 16 per
        # Flask thread at the default 4, so that even a full queue of the largest batches drains
        # within clients' timeouts, while single flights (answered on the loop) never come near it.
        "ML_API_MAX_CONCURRENT": _int(env, "ML_API_MAX_CONCURRENT", 64),
        # Bytes of request bodies a worker holds at once (read, or being read): beyond, a 503 before
        # reading. With the bound on large bodies worked on at once, a worker stays near 512 MiB.
        "ML_API_BODY_BUDGET_BYTES": _int(env, "ML_API_BODY_BUDGET_BYTES", 96 * 1024 * 1024),
        # Bodies over 16 KiB (batches, uploads) parsed, checked and scored at once per worker; the
        # others wait, their bodies counted in the budget.
        "ML_API_LARGE_CONCURRENT": _int(env, "ML_API_LARGE_CONCURRENT", 2),
    }


def _monitoring_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """When a field counts as drifted, and what the /metrics gauges cover and how often they are renewed."""
    return {
        "MONITORING_PSI_THRESHOLD": _float(env, "MONITORING_PSI_THRESHOLD", 0.2),
        "MONITORING_REFRESH_S": _int(env, "MONITORING_REFRESH_S", 60),
        "MONITORING_WINDOW_S": _int(env, "MONITORING_WINDOW_S", 86400),
        # How often `flight-delay serve`'s roll-up job runs (0: it is not started; a cron runs
        # `flight-delay rollup` instead), and how far behind now its roll-ups may be before a report
        # stops counting at them rather than count the history after them itself.
        "MONITORING_ROLLUP_INTERVAL_S": _int(env, "MONITORING_ROLLUP_INTERVAL_S", 30),
        "MONITORING_MAX_LAG_S": _int(env, "MONITORING_MAX_LAG_S", 900),
    }


def _sandbox_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """What the child checking an upload may use (serving/sandbox.py): memory, CPU time, wall-clock time."""
    return {
        # Address space the check may add to its process (which starts with the libraries loaded).
        "MODEL_SANDBOX_MEMORY_MB": _int(env, "MODEL_SANDBOX_MEMORY_MB", 1024),
        "MODEL_SANDBOX_CPU_S": _int(env, "MODEL_SANDBOX_CPU_S", 20),
        "MODEL_SANDBOX_TIMEOUT_S": _float(env, "MODEL_SANDBOX_TIMEOUT_S", 30.0),
    }


def _context_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """How often a worker reads new flights and weather, and how long behind the newest fact it keeps them."""
    return {
        "CONTEXT_REFRESH_MS": _int(env, "CONTEXT_REFRESH_MS", 250),
        "CONTEXT_RETENTION_H": _int(env, "CONTEXT_RETENTION_H", 48),
    }


def _lifecycle_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """How much shadow work a worker may queue, and which replays answer at once (200) or later (202)."""
    return {
        "SHADOW_QUEUE_FLIGHTS": _int(env, "SHADOW_QUEUE_FLIGHTS", 10_000),
        "REPLAY_WAIT_FLIGHTS": _int(env, "REPLAY_WAIT_FLIGHTS", 20_000),
    }


def body_limit(config: Mapping[str, Any], upload: bool) -> int | None:
    """The most body bytes a request may carry: the model upload's own limit, else MAX_CONTENT_LENGTH."""
    if upload:
        return config["MAX_MODEL_BYTES"] + MULTIPART_OVERHEAD_BYTES
    return config.get("MAX_CONTENT_LENGTH")


# The lowest value each numeric setting may take, and those that must be above 0.
AT_LEAST = {
    **dict.fromkeys(("MODEL_REFRESH_MS", "CONTEXT_REFRESH_MS", "SQLITE_COMMIT_INTERVAL_MS"), 0),
    **dict.fromkeys(("MONITORING_REFRESH_S", "MONITORING_WINDOW_S", "MONITORING_ROLLUP_INTERVAL_S"), 0),
    **dict.fromkeys(("SHADOW_QUEUE_FLIGHTS", "REPLAY_WAIT_FLIGHTS"), 0),
    **dict.fromkeys(("CONTEXT_RETENTION_H", "MONITORING_MAX_LAG_S", "ML_API_BODY_TIMEOUT_S"), 1),
    **dict.fromkeys(("ML_API_MAX_CONCURRENT", "ML_API_LARGE_CONCURRENT"), 1),
    **dict.fromkeys(("MODEL_SANDBOX_MEMORY_MB", "MODEL_SANDBOX_CPU_S"), 1),
}
ABOVE_ZERO = (
    "HISTORY_WRITE_TIMEOUT_S",
    "HEALTH_TIMEOUT_S",
    "MONITORING_PSI_THRESHOLD",
    "MODEL_SANDBOX_TIMEOUT_S",
)


def _check(config: Mapping[str, Any]) -> None:
    """Refuses values the service cannot run with, naming the variable (overrides included)."""
    if config["ENV"] not in ENVIRONMENTS:
        raise ValueError(f"FLIGHT_DELAY_ENV must be one of {', '.join(ENVIRONMENTS)}")
    for name, lowest in AT_LEAST.items():
        if config[name] < lowest:
            raise ValueError(f"{name} must be {lowest} or more")
    for name in ABOVE_ZERO:
        if not config[name] > 0:
            raise ValueError(f"{name} must be above 0")
    if config["SQLITE_SYNCHRONOUS"] not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise ValueError("SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
    largest = max(config.get("MAX_CONTENT_LENGTH") or 0, config["MAX_MODEL_BYTES"] + MULTIPART_OVERHEAD_BYTES)
    if config["ML_API_BODY_BUDGET_BYTES"] < largest:
        raise ValueError(f"ML_API_BODY_BUDGET_BYTES must hold the largest body allowed ({largest} bytes)")
