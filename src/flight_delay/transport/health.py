"""GET /health/, /health/live and /health/ready answered on the event loop, never behind Flask's threads.

A load balancer's probe must be answered even when every Flask thread waits on a hung database:
these routes run on the loop, their checks in the health thread within HEALTH_TIMEOUT_S
(serving/health.py). Flask's health views (api/health.py: the document, an embedding WSGI server)
answer the same, from the same checks.
"""

from __future__ import annotations

from flight_delay.replies import Reply, json_reply
from flight_delay.services import Services
from flight_delay.serving.health import ready_body
from flight_delay.transport.http import HttpRequest
from flight_delay.transport.routes import Route


async def health(request: HttpRequest, services: Services) -> Reply:
    """GET /health/: the process, its model, whether its database takes a write (503 when not)."""
    report = await services.health.report_now()
    return json_reply(report.status, report.body, request.request_id)


async def live(request: HttpRequest, services: Services) -> Reply:
    """GET /health/live: the process answers."""
    return json_reply(200, {"status": "ok"}, request.request_id)


async def ready(request: HttpRequest, services: Services) -> Reply:
    """GET /health/ready: this replica can serve a prediction now, else a 503 `not_ready`."""
    return json_reply(200, ready_body(await services.health.readiness_now()), request.request_id)


ROUTES = [
    Route("GET", "/health/", health),
    Route("GET", "/health/live", live),
    Route("GET", "/health/ready", ready),
]
