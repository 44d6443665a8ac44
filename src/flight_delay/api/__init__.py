"""The HTTP API: app factory, blueprints, schemas and error mapping."""

from flight_delay.api.app import create_app

__all__ = ["create_app"]
