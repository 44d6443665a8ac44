"""The OpenAPI operations of the routes answered on the loop by the V2 and MLflow transports.

The native route is documented by Flask's view (api/model.py), which answers the same way; these
routes are not Flask's, so their operations are written here, in each protocol's own terms, and
api/docs.py adds them to /openapi.json. What JSON Schema cannot say (a tensor's data must match its
shape and its field's rule; the binary tensor extension's bytes after the JSON header) is said in
words, and such a request is refused with the protocol's 400.
"""

from __future__ import annotations

from typing import Any

from flight_delay.features import API_FIELDS
from flight_delay.transport.tensors import DATATYPES

FIELDS = [spec.name for spec in API_FIELDS]
OUTPUTS = ["predict", "basis", "history_id", "warnings"]
# The protocols' own error shapes, components of the document (SCHEMAS), referred to by name.
SCHEMAS = {
    "V2Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "MLflowError": {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
    },
}
V2_ERROR = {"$ref": "#/components/schemas/V2Error"}
MLFLOW_ERROR = {"$ref": "#/components/schemas/MLflowError"}
V2_INPUT = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string", "enum": FIELDS, "description": "a flight field, once per request"},
        "shape": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0},
            "minItems": 1,
            "maxItems": 2,
            "description": "[N] or [N, 1]: N flights, every input the same N",
        },
        "datatype": {"type": "string", "enum": sorted(DATATYPES)},
        "parameters": {"type": "object", "description": "binary_data_size: its bytes after the JSON header"},
        "data": {
            "type": "array",
            "items": {},
            "description": "N values (nested lists flattened); null or NaN: missing",
        },
    },
}
V2_REQUEST = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object", "description": "binary_data_output: every output as binary data"},
        "inputs": {"type": "array", "items": V2_INPUT, "minItems": 1},
        "outputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "enum": OUTPUTS},
                    "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                },
            },
        },
    },
}
V2_OUTPUT = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "enum": OUTPUTS},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "array", "items": {}},
        "parameters": {"type": "object"},
    },
}
V2_RESPONSE = {
    "type": "object",
    "required": ["model_name", "model_version", "id", "outputs"],
    "properties": {
        "model_name": {"type": "string"},
        "model_version": {"type": "string", "description": "the sha256 of the artifact that answered"},
        "id": {"type": "string"},
        "outputs": {"type": "array", "items": V2_OUTPUT},
    },
}
MODEL_PARAMETERS = [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}]
VERSION_PARAMETERS = [
    *MODEL_PARAMETERS,
    {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}},
]


def json_answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """A documented JSON response."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def v2_errors(*statuses: int) -> dict[str, Any]:
    """The protocol's error responses, {"error": "..."}, for each status."""
    said = {
        400: "A request the protocol cannot read, or flights the field rules refuse",
        404: "No such model, or a version not served",
        408: "The body did not arrive in time",
        413: "The body is larger than MAX_REQUEST_BYTES",
        500: "Unexpected error; logged, answered without details",
        503: "No model, the history unavailable, or overloaded",
    }
    return {str(status): json_answer(said[status], V2_ERROR) for status in statuses}


def v2_get(summary: str, schema: dict[str, Any], parameters: list[Any], *errors: int) -> dict[str, Any]:
    """A GET of the protocol: its answer, its errors."""
    responses = {"200": json_answer(summary, schema), **v2_errors(*errors, 500)}
    return {
        "get": {
            "tags": ["Open Inference Protocol (KServe V2)"],
            "summary": summary,
            "parameters": parameters,
            "responses": responses,
        }
    }


def v2_infer(parameters: list[Any]) -> dict[str, Any]:
    """POST .../infer: columns in, outputs out, as JSON or with the binary tensor extension."""
    binary = {"type": "string", "format": "binary", "description": "JSON header, then the inputs' bytes"}
    body = {"application/json": {"schema": V2_REQUEST}, "application/octet-stream": {"schema": binary}}
    success = json_answer("One output value per flight", V2_RESPONSE)
    success["content"]["application/octet-stream"] = {"schema": binary}
    operation = {
        "tags": ["Open Inference Protocol (KServe V2)"],
        "summary": "Predicts each flight of the columns sent, and records it (protocol v2)",
        "description": "With `Inference-Header-Content-Length`, the body's first bytes are the JSON header.",
        "parameters": parameters,
        "requestBody": {"required": True, "content": body},
        "responses": {"200": success, **v2_errors(400, 404, 408, 413, 500, 503)},
    }
    return {"post": operation}


def v2_paths() -> dict[str, Any]:
    """Every route of the Open Inference Protocol."""
    ready = {"type": "object", "properties": {"ready": {"type": "boolean"}, "name": {"type": "string"}}}
    model = {"type": "object", "required": ["name", "versions", "inputs", "outputs"]}
    server = {"type": "object", "required": ["name", "version", "extensions"]}
    return {
        "/v2/health/live": v2_get(
            "The process answers", {"type": "object", "properties": {"live": {"type": "boolean"}}}, []
        ),
        "/v2/health/ready": _not_ready(v2_get("Ready to serve a prediction", ready, [])),
        "/v2": v2_get("The server's name, version, extensions", server, []),
        "/v2/models/{model}": v2_get("The model's inputs and outputs", model, MODEL_PARAMETERS, 404, 503),
        "/v2/models/{model}/versions/{version}": v2_get(
            "The version's metadata", model, VERSION_PARAMETERS, 404, 503
        ),
        "/v2/models/{model}/ready": _not_ready(v2_get("The model scores", ready, MODEL_PARAMETERS, 404)),
        "/v2/models/{model}/versions/{version}/ready": _not_ready(
            v2_get("The version scores", ready, VERSION_PARAMETERS, 404)
        ),
        "/v2/models/{model}/infer": v2_infer(MODEL_PARAMETERS),
        "/v2/models/{model}/versions/{version}/infer": v2_infer(VERSION_PARAMETERS),
    }


def _not_ready(path: dict[str, Any]) -> dict[str, Any]:
    """A readiness route: 503 with {"ready": false} (or the protocol's error) when not ready."""
    responses = path["get"]["responses"]
    responses["503"] = json_answer(
        "Not ready", {"oneOf": [responses["200"]["content"]["application/json"]["schema"], V2_ERROR]}
    )
    return path


ROWS = {"type": "array", "items": {"type": "object"}}
SPLIT = {
    "type": "object",
    "required": ["columns", "data"],
    "properties": {"columns": {"type": "array"}, "data": {"type": "array"}, "index": {"type": "array"}},
}
FORMATS = {
    "dataframe_split": SPLIT,
    "dataframe_records": ROWS,
    "instances": ROWS,
    "inputs": {"oneOf": [ROWS, {"type": "object", "additionalProperties": {"type": "array"}}]},
}
PREDICTIONS = {
    "type": "object",
    "required": ["predictions"],
    "properties": {"predictions": {"type": "array", "items": {"type": "number"}}},
}
MLFLOW_TAG = ["MLflow scoring protocol"]
SERVED_BY = {
    "X-Model-Version": {
        "description": "the model version that answered (the active one, or a canary)",
        "schema": {"type": "string"},
    }
}


def mlflow_errors() -> dict[str, Any]:
    """MLflow's error responses, {"error_code", "message"}, for each status."""
    said = {
        400: "A body MLflow's protocol cannot read, or rows the field rules refuse",
        408: "The body did not arrive in time",
        413: "The body is larger than MAX_REQUEST_BYTES",
        500: "Unexpected error; logged, answered without details",
        503: "No model, the history unavailable, or overloaded",
    }
    return {str(status): json_answer(description, MLFLOW_ERROR) for status, description in said.items()}


def invocations() -> dict[str, Any]:
    """POST /invocations: a DataFrame in any of MLflow's input formats, or CSV."""
    body = {"oneOf": [{"type": "object", "required": [k], "properties": {k: v}} for k, v in FORMATS.items()]}
    content = {"application/json": {"schema": body}, "text/csv": {"schema": {"type": "string"}}}
    unsupported = {"description": "Another content type (plain text, as MLflow answers)"}
    unsupported["content"] = {"text/plain": {"schema": {"type": "string"}}}
    operation = {
        "tags": MLFLOW_TAG,
        "summary": "Predicts each row of the DataFrame sent, and records it (protocol mlflow)",
        "description": "JSON with exactly one input format, or text/csv with a header row; a row a flight.",
        "requestBody": {"required": True, "content": content},
        "responses": {
            "200": {**json_answer("One prediction per row", PREDICTIONS), "headers": SERVED_BY},
            **mlflow_errors(),
            "415": unsupported,
        },
    }
    return {"post": operation}


def mlflow_paths() -> dict[str, Any]:
    """MLflow's scoring protocol: /ping, /version, /invocations."""
    healthy = {"description": "A model serves", "content": {"application/json": {}}}
    unhealthy = {"description": "No model serves", "content": {"application/json": {}}}
    version = {"200": json_answer("The version", {"type": "string"}), "500": mlflow_errors()["500"]}
    return {
        "/ping": {
            "get": {"tags": MLFLOW_TAG, "summary": "Health", "responses": {"200": healthy, "503": unhealthy}}
        },
        "/version": {"get": {"tags": MLFLOW_TAG, "summary": "The server's version", "responses": version}},
        "/invocations": invocations(),
    }


def error_schema_of(path: str) -> dict[str, str]:
    """The error schema a path answers with: the one error shape, or its protocol's (V2, MLflow)."""
    if path.startswith("/v2"):
        return V2_ERROR
    if path in ("/ping", "/version", "/invocations"):
        return MLFLOW_ERROR
    return {"$ref": "#/components/schemas/Error"}
