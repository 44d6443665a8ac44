"""The monitoring endpoints under /model/: actual arrival delays in, live accuracy and drift out."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask.views import MethodView

from flight_delay.api.blueprint import INTERNAL_ERROR, TOO_LARGE, ApiBlueprint
from flight_delay.api.schemas import (
    ActualsRequestSchema,
    ActualsResponseSchema,
    MonitoringQuerySchema,
    MonitoringReportSchema,
)
from flight_delay.api.services import services

blp = ApiBlueprint(
    "monitoring", __name__, url_prefix="/model", description="Live accuracy and drift from the history"
)

ACTUALS_REQUEST = ActualsRequestSchema()
MONITORING_QUERY = MonitoringQuerySchema()


@blp.route("/actuals/")
class Actuals(MethodView):
    """Actual arrival delays of recorded predictions."""

    @blp.arguments(ACTUALS_REQUEST)
    @blp.response(200, ActualsResponseSchema)
    @blp.error_responses(
        {
            400: "The body is not valid JSON",
            **TOO_LARGE,
            415: "The body is not application/json",
            422: "Invalid actuals, or a history_id of no prediction (unknown_prediction); none recorded",
            503: "The database is unavailable",
            **INTERNAL_ERROR,
        }
    )
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Records the actual arrival delay of predictions by history_id, all or none; again replaces.

        Needs an admin token (access.py); outside development one must be configured.
        """
        return {"recorded": services().monitoring.record_actuals(body["actuals"])}


@blp.route("/monitoring/")
class Monitoring(MethodView):
    """A model's live accuracy and input drift."""

    @blp.arguments(MONITORING_QUERY, location="query", unknown=ma.RAISE)
    @blp.response(200, MonitoringReportSchema)
    @blp.error_responses(
        {
            404: "No model of that version was ever loaded",
            422: "Invalid query",
            503: "No model loaded, or the database is unavailable",
            **INTERNAL_ERROR,
        }
    )
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """Live MAE/RMSE from recorded actuals and PSI drift per input field, over a window of predictions."""
        return services().monitoring.report(**query)
