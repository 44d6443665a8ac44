"""The ASGI app gunicorn's uvicorn workers run: middleware, then the transports' routes, then Flask.

```
AccessLog -> HeaderScrub -> Admission -> AccessGate -> BodyReader -> Router
    Router -> native | V2 | MLflow route -> DataPlane
           \\-> Flask (a2wsgi threads): everything else
```

A fifth protocol is one new module listing its ROUTES (a method, a path, a handler of a few lines
over the data plane, an error style), added to TRANSPORTS.
"""

from __future__ import annotations

from flask import Flask

from flight_delay.api.body_limit import upload_paths
from flight_delay.api.services import services_of
from flight_delay.transport import health, mlflow, native, v2
from flight_delay.transport.http import Asgi
from flight_delay.transport.middleware import AccessGate, AccessLog, Admission, BodyReader, HeaderScrub
from flight_delay.transport.router import Router

TRANSPORTS = (native, v2, mlflow, health)


def asgi_app(app: Flask) -> Asgi:
    """The worker's ASGI app over a Flask app built by create_app (whose services it uses)."""
    routes = [route for transport in TRANSPORTS for route in transport.ROUTES]
    services = services_of(app)
    router = Router(app, services, routes)
    reader = BodyReader(router, router, app.config, upload_paths(app))
    gate = AccessGate(reader, router, services.access)
    admission = Admission(gate, router, app.config["ML_API_MAX_CONCURRENT"])
    return AccessLog(HeaderScrub(admission))
