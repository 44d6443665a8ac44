"""The OpenAPI document as the service enforces it now, and Swagger UI's files (no CDN) for /docs.

Part of what the service enforces is only known at run time: the active model says which flight
fields a prediction needs, and the configuration whether loading a model needs the admin token. So
/openapi.json is flask-smorest's document with those parts filled in from the live state each time
it is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apispec import APISpec
from flask import Blueprint, Flask, Response, current_app
from flask_smorest import Api
from sqlalchemy.exc import SQLAlchemyError
from swagger_ui_bundle import swagger_ui_path

from flight_delay.api import errors
from flight_delay.api.lifecycle_schemas import CanarySchema
from flight_delay.api.schemas import ErrorSchema, PredictRequestSchema
from flight_delay.api.services import services
from flight_delay.errors import FlightDelayError
from flight_delay.serving.registry import ActiveModel
from flight_delay.tokens import TokenBook
from flight_delay.transport.middleware import uncapped
from flight_delay.transport.openapi import SCHEMAS as PROTOCOL_SCHEMAS
from flight_delay.transport.openapi import error_schema_of, mlflow_paths, v2_paths
from flight_delay.validation.wording import FLIGHT_DOC, FlightSchema

ASSETS_URL = "/docs/assets/"
SWAGGER_UI_ENDPOINT = "api-docs.openapi_swagger_ui"  # flask-smorest's route of the /docs page
OPENAPI_JSON_ENDPOINT = "api-docs.openapi_json"  # flask-smorest's route of /openapi.json
LOAD_PATH = "/model/load/"
NO_MODEL = (
    "No model is active: a flight valid by this schema is answered 503 `model_not_loaded` until one is "
    "loaded; the fields it reads are then required."
)


class FlightDelayApi(Api):
    """flask-smorest's Api documenting our one error shape for every error response."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all "default" response: each operation lists the statuses it really answers, so a
    # status it does not list is a documentation bug the fuzz tests catch.
    DEFAULT_ERROR_RESPONSE_NAME = None


def init_app(app: Flask, api: Api) -> None:
    """Registers the static route of Swagger UI's files and serves the live /openapi.json."""
    assets = Blueprint(
        "swagger_ui_assets", __name__, static_folder=swagger_ui_path, static_url_path=ASSETS_URL.rstrip("/")
    )
    app.register_blueprint(assets)
    app.extensions["flight_delay.api"] = api
    app.view_functions[OPENAPI_JSON_ENDPOINT] = serve_openapi_document


def document_components(spec: APISpec) -> None:
    """Names the components the operations refer to, and the answers that belong to no operation."""
    # The predict body is documented as oneOf these two, so they are named components; the flight's
    # date check is said in JSON Schema beside its fields' (its required fields when served: below).
    spec.components.schema("Flight", FLIGHT_DOC, schema=FlightSchema)
    spec.components.schema("PredictRequest", schema=PredictRequestSchema)
    spec.components.schema("Canary", schema=CanarySchema)  # PUT /model/traffic's, or null
    spec.components.security_scheme(
        "adminToken",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "an admin token (ML_API_ADMIN_TOKEN, ML_API_ADMIN_TOKENS)",
        },
    )
    spec.components.response("NotFound", errors.error_response_doc("Unknown path"))
    allow = {"Allow": {"description": "the path's methods", "schema": {"type": "string"}}}
    spec.components.response("MethodNotAllowed", errors.error_response_doc("Method not allowed here", allow))


def serve_openapi_document() -> Response:
    """Serves the document with the active model's required fields and the upload's security."""
    spec = current_app.extensions["flight_delay.api"].spec
    document = live_document(spec.to_dict(), current_app.config, active_model())
    return current_app.response_class(current_app.json.dumps(document, indent=2), mimetype="application/json")


def active_model() -> ActiveModel | None:
    """The model predictions are served with now, or None (none loaded, or none loadable now)."""
    try:
        return services().registry.active()
    except (FlightDelayError, SQLAlchemyError):  # predict answers these with a 503 likewise
        return None


def live_document(
    spec: dict[str, Any], config: Mapping[str, Any], model: ActiveModel | None
) -> dict[str, Any]:
    """Returns a copy of the static document with the run-time rules filled in (spec is not changed)."""
    components = spec["components"]
    schemas = {**components["schemas"], "Flight": flight_schema(components["schemas"]["Flight"], model)}
    load = spec["paths"][LOAD_PATH]
    paths = {**spec["paths"], LOAD_PATH: {**load, "post": load_operation(load["post"], config)}}
    # The V2 and MLflow routes are answered on the loop, not by Flask: their operations are the transports'.
    paths.update(v2_paths() | mlflow_paths())
    paths = {path: front_answers(path, operations) for path, operations in paths.items()}
    schemas.update(PROTOCOL_SCHEMAS)
    return {**spec, "paths": paths, "components": {**components, "schemas": schemas}}


def front_answers(path: str, operations: dict[str, Any]) -> dict[str, Any]:
    """Each operation with what the ASGI middleware may answer before any view: 503 `overloaded` where
    the cap on requests in flight and the body budget apply, 408 and 413 where a body is read."""
    error = {"application/json": {"schema": error_schema_of(path)}}
    documented = {}
    for method, operation in operations.items():
        if method == "parameters":  # the path's own parameters ({version}), not an operation
            documented[method] = operation
            continue
        responses = dict(operation["responses"])
        if not uncapped(path):
            responses["503"] = overloaded(responses.get("503"), error)
        if "requestBody" in operation:
            responses.setdefault(
                "408",
                {"description": "The body did not arrive within ML_API_BODY_TIMEOUT_S", "content": error},
            )
            responses.setdefault(
                "413", {"description": "The body is larger than its limit", "content": error}
            )
        documented[method] = {**operation, "responses": responses}
    return documented


def overloaded(response: dict[str, Any] | None, error: dict[str, Any]) -> dict[str, Any]:
    """A 503 that says it may also be `overloaded` (with Retry-After)."""
    said = "Overloaded (ML_API_MAX_CONCURRENT or the body budget): retry after Retry-After"
    if response is None:
        return {"description": said, "content": error}
    return {**response, "description": f"{response['description']}; or {said[0].lower()}{said[1:]}"}


def flight_schema(schema: dict[str, Any], model: ActiveModel | None) -> dict[str, Any]:
    """The Flight schema with the active model's input fields required, and non-null unless it allows."""
    if model is None:
        return {**schema, "description": NO_MODEL}
    properties = dict(schema["properties"])
    required = [name for name in model.model.input_fields if name in properties]
    nullable = set(model.model.nullable_fields)
    for name in required:
        if name not in nullable and properties[name].get("nullable"):
            properties[name] = {key: value for key, value in properties[name].items() if key != "nullable"}
    description = f"A flight. Model {model.version[:12]} reads the required fields."
    return {**schema, "properties": properties, "required": required, "description": description}


def load_operation(operation: dict[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """POST /model/load/ needing the admin token only when one is configured (and upload is enabled)."""
    if config["ML_API_ALLOW_UPLOAD"] and TokenBook.from_config(config).configured():
        return operation
    responses = {status: answer for status, answer in operation["responses"].items() if status != "401"}
    return {key: value for key, value in operation.items() if key != "security"} | {"responses": responses}
