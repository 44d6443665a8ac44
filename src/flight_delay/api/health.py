"""GET /health/ for people, /health/live and /health/ready for orchestrators and load balancers."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from flight_delay import __version__
from flight_delay.api.blueprint import INTERNAL_ERROR, ApiBlueprint
from flight_delay.api.schemas import HealthSchema, LiveSchema, ReadySchema
from flight_delay.api.services import services
from flight_delay.errors import ModelNotLoaded, NotReady
from flight_delay.serving.readiness import readiness

blp = ApiBlueprint("health", __name__, url_prefix="/health", description="Service health")


def model_health() -> dict[str, Any]:
    """Describes the active model, or why there is none."""
    try:
        active = services().registry.active()
    except ModelNotLoaded as exc:
        return {"loaded": False, "reason": exc.message}
    except SQLAlchemyError:
        return {"loaded": False, "reason": "The database is unavailable."}
    return {"loaded": True, "version": active.version, "kind": active.model.kind}


@blp.route("/")
class Health(MethodView):
    """The health of the API, for people: the process, its database and its model."""

    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="The database cannot be written")
    @blp.error_responses(INTERNAL_ERROR)
    def get(self) -> tuple[dict[str, Any], int]:
        """Reports status (ok; unavailable when the database fails), database, model, app version."""
        model = model_health()
        # Last: a refused write discards the connections this request opened (see make_engine).
        database = services().history.check_writable()
        status = "ok" if database.ok else "unavailable"
        body = {"status": status, "version": __version__, "database": database, "model": model}
        return body, 200 if database.ok else 503


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
        found = readiness(services().registry, services().history)
        if not found.ready:
            raise NotReady(found.reason or "Not ready.")
        return {"status": "ready", "model_version": found.model_version, "database": found.database}
