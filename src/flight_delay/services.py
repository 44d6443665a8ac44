"""The composition root: builds every service of one app from its configuration, nothing global.

`build_services(config)` makes the database, the model registry, the history writer for the
database's backend and the data plane over them, and the services the Flask views call. create_app
keeps them in `app.extensions["flight_delay"]`; the transports on the event loop get them from there
too (transport/asgi.py), so one app is one set of services, and tests may build as many as they like.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flight_delay.access import Policy
from flight_delay.context.ingestion import ContextPosts
from flight_delay.context.state import ContextState
from flight_delay.history.database import Database, engine_options
from flight_delay.history.postgres_writer import PostgresBackend, postgres_connect_kwargs
from flight_delay.history.service import HistoryService
from flight_delay.history.sqlite_writer import SqliteBackend
from flight_delay.history.writer import LoopHistoryWriter
from flight_delay.monitoring.gauges import MonitoringGauges
from flight_delay.monitoring.report import MonitoringService
from flight_delay.serving.dataplane import DataPlane
from flight_delay.serving.health import HealthChecks
from flight_delay.serving.predictions import PredictionService
from flight_delay.serving.registry import ModelRegistry, sandbox_of
from flight_delay.serving.replay import Replays
from flight_delay.serving.shadow import ShadowScorer

EXTENSION = "flight_delay"


@dataclass(frozen=True)
class Services:
    """Everything one app serves with, built once per app (per worker, under gunicorn)."""

    config: Mapping[str, Any]
    db: Database
    registry: ModelRegistry
    writer: LoopHistoryWriter
    dataplane: DataPlane
    history: HistoryService
    health: HealthChecks
    monitoring: MonitoringService
    gauges: MonitoringGauges
    context: ContextState  # this worker's posted flights and weather, which predictions read
    context_posts: ContextPosts  # POST /flights/ and /weather/
    replays: Replays
    access: Policy  # who may read, predict and change what (access.py)


def build_services(config: Mapping[str, Any]) -> Services:
    """Builds the services over the configured database (migrated already: serve or tests did it)."""
    db = Database().bind(config["DATABASE_URL"], **engine_options(config))
    registry = ModelRegistry().configure(
        Path(config["MODEL_STORE_DIR"]), db, config["MODEL_REFRESH_MS"], sandbox_of(config)
    )
    writer = history_writer(config, db)
    context = ContextState(db).configure(config)
    scorer = PredictionService(config["ML_API_STRICT_INPUTS"], context)
    shadows = ShadowScorer(writer, config["SHADOW_QUEUE_FLIGHTS"], context)
    dataplane = DataPlane(registry, scorer, writer, config["HISTORY_WRITE_TIMEOUT_S"], shadows)
    history = HistoryService(db)
    monitoring = MonitoringService(db)
    return Services(
        config=config,
        db=db,
        registry=registry,
        writer=writer,
        dataplane=dataplane,
        history=history,
        health=HealthChecks(registry, history, config["HEALTH_TIMEOUT_S"]),
        monitoring=monitoring,
        gauges=MonitoringGauges(monitoring),
        context=context,
        context_posts=ContextPosts(db),
        replays=Replays(registry, config["REPLAY_WAIT_FLIGHTS"]),
        access=Policy.from_config(config),
    )


def history_writer(config: Mapping[str, Any], db: Database) -> LoopHistoryWriter:
    """The group commit over the database's backend: PostgreSQL's, or SQLite's (the host writer)."""
    deadline_s = config["HISTORY_WRITE_TIMEOUT_S"]
    postgres = postgres_connect_kwargs(config, db)
    if postgres is not None:
        dialect = db.bound_engine().dialect
        return LoopHistoryWriter(lambda: PostgresBackend(postgres, dialect), commit_timeout_s=deadline_s)
    if db.bound_engine().dialect.name != "sqlite":
        raise ValueError("DATABASE_URL must name a SQLite file or a PostgreSQL database (postgresql+psycopg)")
    socket_path = config.get("HISTORY_WRITER_SOCKET")
    return LoopHistoryWriter(lambda: SqliteBackend(db, socket_path, deadline_s), commit_timeout_s=deadline_s)
