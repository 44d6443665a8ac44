"""Reads the prediction history for the API, and proves the database behind it takes writes."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import Database, database_error_reason, refused_read_only
from flight_delay.history.models import utcnow
from flight_delay.history.repository import HistoryPage, HistoryQuery, beat, find_predictions


@dataclass(frozen=True)
class DatabaseHealth:
    """Whether the database took a write, which backend it is, and why not when it did not."""

    ok: bool
    backend: str
    reason: str | None = None


class HistoryService:
    """Lists recorded predictions and checks that new ones can be recorded."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, query: HistoryQuery) -> HistoryPage:
        """Returns one page of the history; raises HistoryUnavailable if the database fails."""
        try:
            with self.db.transaction() as session:
                return find_predictions(session, query)
        except SQLAlchemyError as exc:
            raise HistoryUnavailable(f"The history cannot be read: {type(exc).__name__}.") from exc

    def check_writable(self) -> DatabaseHealth:
        """Rewrites and commits the heartbeat row: a read-only, full or locked database fails here."""
        backend = self.db.engine.dialect.name
        for attempt in range(2):
            try:
                with self.db.transaction() as session:
                    beat(session, utcnow())
            except Exception as exc:  # any failure means "down" for health purposes
                # A SQLite connection opened while the file was read-only stays read-only after it
                # is writable again; failing, it was discarded (database.py): one more try, afresh.
                if attempt == 0 and refused_read_only(getattr(exc, "orig", None)):
                    continue
                return DatabaseHealth(ok=False, backend=backend, reason=database_error_reason(exc))
            break
        return DatabaseHealth(ok=True, backend=backend)
