"""GET /health/ for people, /health/live and /health/ready for orchestrators and load balancers."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from flight_delay.api.blueprint import INTERNAL_ERROR, ApiBlueprint
from flight_delay.api.schemas import HealthSchema, LiveSchema, ReadySchema
from flight_delay.api.services import services
from flight_delay.serving.health import ready_body

blp = ApiBlueprint("health", __name__, url_prefix="/health", description="Service health")


@blp.route("/")
class Health(MethodView):
    """The health of the API, for people: the process, its database and its model."""

    @blp.response(200, HealthSchema)
    @blp.alt_response(
        503, schema=HealthSchema, description="The database cannot be written (or does not answer)"
    )
    @blp.error_responses(INTERNAL_ERROR)
    def get(self) -> tuple[dict[str, Any], int]:
        """Reports status (ok; unavailable when the database fails), database, model, app version.

        Within HEALTH_TIMEOUT_S whatever the database does (then `unavailable`).
        """
        report = services().health.report()
        return report.body, report.status


@blp.route("/live")
class Live(MethodView):
    """Liveness: the process answers (no database, no model)."""

    @blp.response(200, LiveSchema)
    @blp.error_responses(INTERNAL_ERROR)
    def get(self) -> dict[str, Any]:
        """Answers 200 while the process serves requests; restart the replica when it stops."""
        return {"status": "ok"}


@blp.route("/ready")
class Ready(MethodView):
    """Readiness: this replica can serve a prediction now."""

    @blp.response(200, ReadySchema)
    @blp.error_responses({503: "Not ready: no model, a model that fails to score, or no database writes"})
    @blp.error_responses(INTERNAL_ERROR)
    def get(self) -> dict[str, Any]:
        """200 when the active model scores the reference flight and the database takes a write."""
        return ready_body(services().health.readiness())
