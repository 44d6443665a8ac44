"""Runs the app under gunicorn: migrations and the start-up model first, then the workers."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gunicorn.app.base import BaseApplication
from uvicorn_worker import UvicornWorker

from flight_delay.api.auth import check_access_policy
from flight_delay.compat.gunicorn_internals import run_arbiter
from flight_delay.compat.uvicorn_protocol import LimitedHttpToolsProtocol
from flight_delay.errors import DatabaseNotMigrated
from flight_delay.history.database import Database, engine_options, sqlite_file
from flight_delay.history.host_writer import HostWriterProcess
from flight_delay.history.migrate import pending_revision, startup_lock, upgrade
from flight_delay.monitoring.rollup_job import RollupProcess
from flight_delay.serving.registry import ModelRegistry, sandbox_of
from flight_delay.serving.sandbox import SandboxProcess

if TYPE_CHECKING:
    from flight_delay.transport.http import Asgi

log = logging.getLogger(__name__)


class FlightDelayWorker(UvicornWorker):
    """gunicorn's uvicorn worker on uvloop and httptools (head bounded); the app writes the access log."""

    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": LimitedHttpToolsProtocol,
        "lifespan": "off",
        "access_log": False,
        "server_header": False,
        # The client is the peer, as under gthread: X-Forwarded-For is not taken on its word.
        "proxy_headers": False,
    }


class GunicornServer(BaseApplication):
    """A gunicorn application whose workers each build the app with create_app after forking."""

    def __init__(
        self,
        config: dict[str, Any],
        history_writer: HostWriterProcess | None = None,
        sandbox: SandboxProcess | None = None,
        rollup_job: RollupProcess | None = None,
    ) -> None:
        self.app_config = config
        self.history_writer = history_writer
        self.sandbox = sandbox
        self.rollup_job = rollup_job
        super().__init__()

    def run(self) -> None:
        """Runs gunicorn's main loop with an arbiter that calls arbiter_turn on each turn."""
        run_arbiter(self)

    def arbiter_turn(self) -> None:
        """Restarts the history writer, the model sandbox or the roll-up job if one died."""
        for child in (self.history_writer, self.sandbox, self.rollup_job):
            if child is not None:
                child.ensure_running()

    def load_config(self) -> None:
        """Applies bind address, workers, worker class and timeouts from our configuration."""
        config = self.app_config
        options = {
            "bind": f"{config['ML_API_HOST']}:{config['ML_API_PORT']}",
            "workers": config["ML_API_WORKERS"],
            "worker_class": FlightDelayWorker,
            "timeout": config["ML_API_TIMEOUT"],
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": config["LOG_LEVEL"].lower(),
            "proc_name": "flight-delay",
            "preload_app": False,
            # The default control socket is one path per user: two servers would collide on it.
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Asgi:
        """Builds the app inside a worker, then moves its long-lived objects out of the collector's way."""
        from flight_delay.api import create_app
        from flight_delay.transport.asgi import asgi_app

        app = asgi_app(create_app(self.app_config))
        # The objects built so far (modules, Flask, SQLAlchemy, marshmallow, the model) live as long as
        # the worker: frozen, a full collection no longer walks them every few thousand requests, nor
        # in the middle of a batch, whose time per flight then varies less (bench/PROFILE.md).
        gc.freeze()
        return app


def ensure_schema(config: dict[str, Any]) -> None:
    """Migrates the database (under the start-up lock), or with MIGRATE_AT_START off checks it is at head."""
    url = config["DATABASE_URL"]
    if config["MIGRATE_AT_START"]:
        upgrade(url)
        return
    head = pending_revision(url)
    if head is not None:
        raise DatabaseNotMigrated(
            f"The database is not at revision {head} and MIGRATE_AT_START is off: run `flight-delay migrate`."
        )


@contextmanager
def open_registry(config: dict[str, Any]) -> Iterator[ModelRegistry]:
    """Opens the model registry outside the app (start-up, operator commands), migrating first."""
    ensure_schema(config)
    db = Database().bind(config["DATABASE_URL"], **engine_options(config))
    try:
        yield ModelRegistry().configure(
            config["MODEL_STORE_DIR"], db, config["MODEL_REFRESH_MS"], sandbox_of(config)
        )
    finally:
        db.dispose()


def prepare(config: dict[str, Any]) -> str | None:
    """Migrates and activates the start-up model, one replica at a time; returns the active version."""
    with open_registry(config) as registry, startup_lock(config["DATABASE_URL"]):
        return registry.bootstrap(config["DEFAULT_MODEL_PATH"])


def start_history_writer(config: dict[str, Any]) -> HostWriterProcess | None:
    """Starts the host's history writer for a SQLite file (the workers' only way to record on it)."""
    # A database server takes concurrent writes itself; SQLite takes them best from one process.
    if sqlite_file(config["DATABASE_URL"]) is None:
        return None
    history_writer = HostWriterProcess(config)
    history_writer.start()
    return history_writer


def start_rollup_job(config: dict[str, Any]) -> RollupProcess | None:
    """Starts monitoring's roll-up job, unless MONITORING_ROLLUP_INTERVAL_S is 0 (a cron runs it)."""
    if not config["MONITORING_ROLLUP_INTERVAL_S"]:
        return None
    job = RollupProcess(config)
    job.start()
    return job


def serve(config: dict[str, Any]) -> None:
    """Starts the model sandbox, prepares the database and model once, then runs gunicorn's workers."""
    check_access_policy(config)
    sandbox = SandboxProcess(config["LOG_LEVEL"])
    sandbox.start()  # it warms up while the database is prepared; the workers check uploads through it
    config = {**config, "MODEL_SANDBOX_SOCKET": sandbox.socket_path}
    history_writer = rollup_job = None
    try:
        version = prepare(config)
        log.info("active model at start: %s", version or "none (load one with POST /model/load/)")
        history_writer = start_history_writer(config)
        if history_writer is not None:
            config = {**config, "HISTORY_WRITER_SOCKET": history_writer.socket_path}
        rollup_job = start_rollup_job(config)
        GunicornServer(config, history_writer, sandbox, rollup_job).run()
    finally:
        if rollup_job is not None:
            rollup_job.stop()
        if history_writer is not None:
            history_writer.stop()
        sandbox.stop()
