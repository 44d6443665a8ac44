"""GET /health/: whether the service, its database and its model are usable."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from sqlalchemy.exc import SQLAlchemyError

from flight_delay import __version__
from flight_delay.api.blueprint import INTERNAL_ERROR, ApiBlueprint
from flight_delay.api.schemas import HealthSchema
from flight_delay.errors import ModelNotLoaded
from flight_delay.extensions import history, registry

blp = ApiBlueprint("health", __name__, url_prefix="/health", description="Service health")


def model_health() -> dict[str, Any]:
    """Describes the active model, or why there is none."""
    try:
        active = registry.active()
    except ModelNotLoaded as exc:
        return {"loaded": False, "reason": exc.message}
    except SQLAlchemyError:
        return {"loaded": False, "reason": "The database is unavailable."}
    return {"loaded": True, "version": active.version, "kind": active.model.kind}


@blp.route("/")
class Health(MethodView):
    """The health of the API."""

    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="The database cannot be written")
    @blp.error_responses(INTERNAL_ERROR)
    def get(self) -> tuple[dict[str, Any], int]:
        """Reports status (ok, no_model or unavailable), the database, the model, the app version."""
        model = model_health()
        # Last: a refused write discards the connections this request opened (see make_engine).
        database = history.check_writable()
        status = ("ok" if model["loaded"] else "no_model") if database.ok else "unavailable"
        body = {"status": status, "version": __version__, "database": database, "model": model}
        return body, 200 if database.ok else 503
