"""GET /metrics: Prometheus text exposition of every worker's counters."""

from __future__ import annotations

from flask import Response, request
from flask.views import MethodView

from flight_delay.api.blueprint import INTERNAL_ERROR, ApiBlueprint
from flight_delay.api.services import services
from flight_delay.observability.metrics import exposition

blp = ApiBlueprint("metrics", __name__, url_prefix="/metrics", description="Prometheus metrics")


@blp.route("/")
class Metrics(MethodView):
    """The service's metrics."""

    @blp.response(200, content_type="text/plain", description="Prometheus text (or OpenMetrics) format")
    @blp.error_responses(INTERNAL_ERROR)
    def get(self) -> Response:
        """Requests and latency per endpoint and status, predictions per model, loads, history failures.

        Also the active model's live MAE, drift PSI and roll-up lag, renewed at most every
        MONITORING_REFRESH_S (and at once when the active model changes).
        """
        services().gauges.refresh_if_stale()
        body, content_type = exposition(request.headers.get("Accept"), services().gauges)
        return Response(body, content_type=content_type)
