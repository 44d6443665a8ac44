"""Reads the prediction history for the API."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from flight_delay.errors import HistoryUnavailable
from flight_delay.history.database import Database
from flight_delay.history.repository import HistoryPage, HistoryQuery, find_predictions


class HistoryService:
    """Lists recorded predictions."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, query: HistoryQuery) -> HistoryPage:
        """Returns one page of the history; raises HistoryUnavailable if the database fails."""
        try:
            with self.db.transaction() as session:
                return find_predictions(session, query)
        except SQLAlchemyError as exc:
            raise HistoryUnavailable(f"The history cannot be read: {type(exc).__name__}.") from exc
