"""Whether this replica can serve a prediction now: GET /health/ready's and the V2 protocol's answer."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from flight_delay.errors import FlightDelayError
from flight_delay.history.service import DatabaseHealth, HistoryService
from flight_delay.serving.loader import check_reference_prediction
from flight_delay.serving.registry import ModelRegistry


@dataclass(frozen=True)
class Readiness:
    """Ready or not, the model it would serve, the database's health, and why not when it is not."""

    ready: bool
    model_version: str | None
    database: DatabaseHealth | None
    reason: str | None = None


def scoring_model(registry: ModelRegistry) -> tuple[str | None, str | None]:
    """The active model's version once it scored the reference flight; else None and why."""
    try:
        active = registry.active()
        check_reference_prediction(active.model)
    except FlightDelayError as exc:
        return None, exc.message
    except SQLAlchemyError:
        return None, "The database is unavailable."
    return active.version, None


def readiness(registry: ModelRegistry, history: HistoryService) -> Readiness:
    """Ready when the active model scores the reference flight and the database takes a write."""
    version, reason = scoring_model(registry)
    if version is None:
        return Readiness(False, None, None, reason)
    database = history.check_writable()
    if not database.ok:
        return Readiness(False, version, database, f"The database does not take writes: {database.reason}.")
    return Readiness(True, version, database)
