"""The services of an app (built by the composition root, services.py), for views and transports."""

from __future__ import annotations

from flask import Flask, current_app

from flight_delay.services import EXTENSION, Services


def services() -> Services:
    """The services of the app serving the request."""
    return services_of(current_app)


def services_of(app: Flask) -> Services:
    """The services an app was built with (create_app)."""
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]
