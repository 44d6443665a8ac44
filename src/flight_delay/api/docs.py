"""Serves Swagger UI's files from the swagger-ui-bundle package, so /docs works without a CDN."""

from __future__ import annotations

from flask import Blueprint, Flask
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/docs/assets/"
SWAGGER_UI_ENDPOINT = "api-docs.openapi_swagger_ui"  # flask-smorest's route of the /docs page


def init_app(app: Flask) -> None:
    """Registers the static route of Swagger UI's JavaScript and CSS."""
    assets = Blueprint(
        "swagger_ui_assets", __name__, static_folder=swagger_ui_path, static_url_path=ASSETS_URL.rstrip("/")
    )
    app.register_blueprint(assets)
