"""The OpenAPI document as the service enforces it now, and Swagger UI's files (no CDN) for /docs.

Part of what the service enforces is only known at run time: the active model says which flight
fields a prediction needs, and the configuration which routes need which token (access.py: the
role, whether reading is public, whether predicting needs a token). So /openapi.json is
flask-smorest's document with those parts filled in from the live state each time it is served:
each operation needing a token lists the bearer schemes that may call it (`security`) and its 401
and 403, asked of the same Policy that checks requests.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from flask import Blueprint, Flask, Response, current_app
from flask_smorest import Api
from sqlalchemy.exc import SQLAlchemyError
from swagger_ui_bundle import swagger_ui_path

from flight_delay.access import WHO, Need, Policy
from flight_delay.api import errors
from flight_delay.api.lifecycle_schemas import CanarySchema
from flight_delay.api.schemas import ErrorSchema, PredictRequestSchema
from flight_delay.api.services import services
from flight_delay.errors import FlightDelayError
from flight_delay.serving.registry import ActiveModel
from flight_delay.tokens import GRANTS
from flight_delay.transport.middleware import uncapped
from flight_delay.transport.openapi import SCHEMAS as PROTOCOL_SCHEMAS
from flight_delay.transport.openapi import error_schema_of, mlflow_paths, v2_paths
from flight_delay.validation.wording import FLIGHT_DOC, FlightSchema

ASSETS_URL = "/docs/assets/"
SWAGGER_UI_ENDPOINT = "api-docs.openapi_swagger_ui"  # flask-smorest's route of the /docs page
OPENAPI_JSON_ENDPOINT = "api-docs.openapi_json"  # flask-smorest's route of /openapi.json
# The bearer schemes, one per role: an operation lists those whose tokens may call it.
SCHEMES = {
    "admin": ("adminToken", "an admin token (ML_API_ADMIN_TOKEN, ML_API_ADMIN_TOKENS): everything"),
    "reader": ("readerToken", "a reader token (ML_API_READER_TOKENS): the history, monitoring, the models"),
    "predict": ("predictToken", "a predict token (ML_API_PREDICT_TOKENS): predictions, when they need one"),
}
WWW_AUTHENTICATE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
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
    for scheme, description in SCHEMES.values():
        spec.components.security_scheme(
            scheme, {"type": "http", "scheme": "bearer", "description": description}
        )
    spec.components.response("NotFound", errors.error_response_doc("Unknown path"))
    allow = {"Allow": {"description": "the path's methods", "schema": {"type": "string"}}}
    spec.components.response("MethodNotAllowed", errors.error_response_doc("Method not allowed here", allow))


def serve_openapi_document() -> Response:
    """Serves the document with the active model's required fields and each route's security."""
    spec = current_app.extensions["flight_delay.api"].spec
    document = live_document(spec.to_dict(), services().access, active_model())
    return current_app.response_class(current_app.json.dumps(document, indent=2), mimetype="application/json")


def active_model() -> ActiveModel | None:
    """The model predictions are served with now, or None (none loaded, or none loadable now)."""
    try:
        return services().registry.active()
    except (FlightDelayError, SQLAlchemyError):  # predict answers these with a 503 likewise
        return None


def live_document(spec: dict[str, Any], policy: Policy, model: ActiveModel | None) -> dict[str, Any]:
    """Returns a copy of the static document with the run-time rules filled in (spec is not changed)."""
    components = spec["components"]
    schemas = {**components["schemas"], "Flight": flight_schema(components["schemas"]["Flight"], model)}
    # The V2 and MLflow routes are answered on the loop, not by Flask: their operations are the transports'.
    paths = {**spec["paths"], **v2_paths(), **mlflow_paths()}
    paths = {path: front_answers(path, access_answers(path, ops, policy)) for path, ops in paths.items()}
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


def access_answers(path: str, operations: dict[str, Any], policy: Policy) -> dict[str, Any]:
    """Each operation with what access.py answers before any view: its security, its 401 and 403."""
    error = {"application/json": {"schema": error_schema_of(path)}}
    return {
        method: operation
        if method == "parameters"
        else guarded(operation, policy.need(method.upper(), path), policy, error)
        for method, operation in operations.items()
    }


def guarded(
    operation: dict[str, Any], need: Need | None, policy: Policy, error: dict[str, Any]
) -> dict[str, Any]:
    """The operation with its security and refusals under the policy (as it is when anyone may call it)."""
    if need is None or (need.upload and not policy.allow_upload) or policy.open_without_token(need):
        return operation  # open now (upload disabled: the view documents its own 403)
    said = f"{need.action} needs {WHO[need.role]}"
    forbidden = refused(operation["responses"].get("403"), error, f"{said}: another role's is `forbidden`")
    responses = {**operation["responses"], "403": forbidden}
    if not policy.book.grants(need.role):  # no token could be right: every call is a 403
        forbidden["description"] += f"; none is configured: `{need.role}_token_required`"
        return {**operation, "responses": responses}
    said = f"{said}: none sent, or none of this server's"
    responses["401"] = {"description": said, "content": error, "headers": WWW_AUTHENTICATE}
    return {**operation, "security": security_of(need.role), "responses": responses}


def security_of(role: str) -> list[dict[str, list[str]]]:
    """The schemes whose tokens may meet a role: its own first, then those of the roles implying it."""
    granting = [role, *(other for other in SCHEMES if other != role and role in GRANTS[other])]
    return [{SCHEMES[name][0]: []} for name in granting]


def refused(response: dict[str, Any] | None, error: dict[str, Any], why: str) -> dict[str, Any]:
    """A 403 that says it may also be refused for the token (a copy: the document is not changed)."""
    if response is None:
        return {"description": why, "content": error}
    return {**response, "description": f"{response['description']}; or {why[0].lower()}{why[1:]}"}
