"""The Open Inference Protocol (KServe V2) over REST: model `flight-delay`, its version the active model's.

What tritonclient, MLServer's codecs and KServe's client call: health, server and model metadata,
readiness, and inference, with JSON or binary tensors (tensors.py). Each infer request goes through
the one data plane, so it is validated, scored, recorded (protocol `v2`) and counted like any other.
Errors are the protocol's: `{"error": "..."}`, 400 for a request it cannot serve.
"""

from __future__ import annotations

from typing import Any

import orjson

from flight_delay import __version__
from flight_delay.errors import FlightDelayError
from flight_delay.features import FIELDS_BY_NAME
from flight_delay.replies import ErrorReply, Reply, answer_headers, json_reply
from flight_delay.services import Services
from flight_delay.serving.dataplane import PredictRequest, run_off_loop_if
from flight_delay.serving.predictions import ScoredFlights
from flight_delay.serving.registry import ActiveModel
from flight_delay.transport.http import LOOP_BODY_MAX_BYTES, HttpRequest
from flight_delay.transport.native import parsed_json
from flight_delay.transport.routes import Route
from flight_delay.transport.tensors import BadTensor, Tensor, encoded, field_datatype, flights_of

MODEL = "flight-delay"
HEADER_LENGTH = "Inference-Header-Content-Length"
OUTPUTS = ("predict", "basis", "history_id", "warnings")
MODEL_PATHS = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")


class UnknownModel(FlightDelayError):
    """A V2 request names a model, or a model version, that this server does not serve."""

    status = 404
    code = "unknown_model"


def v2_style(reply: ErrorReply, request_id: str) -> tuple[int, Any]:
    """The protocol's error: `{"error": "..."}`, a 400 for any request it cannot serve."""
    text = reply.message
    if reply.errors:
        text += " " + orjson.dumps(reply.errors, option=orjson.OPT_NON_STR_KEYS).decode()
    return (400 if reply.status == 422 else reply.status), {"error": text}


async def server_live(request: HttpRequest, services: Services) -> Reply:
    """GET /v2/health/live: the process answers."""
    return json_reply(200, {"live": True}, request.request_id)


async def server_ready(request: HttpRequest, services: Services) -> Reply:
    """GET /v2/health/ready: the active model scores and the database takes writes (else a 503)."""
    found = await services.health.readiness_now()
    return json_reply(200 if found.ready else 503, {"ready": found.ready}, request.request_id)


async def server_metadata(request: HttpRequest, services: Services) -> Reply:
    """GET /v2: the server's name, version and protocol extensions."""
    body = {"name": MODEL, "version": __version__, "extensions": ["binary_tensor_data"]}
    return json_reply(200, body, request.request_id)


async def model_metadata(request: HttpRequest, services: Services) -> Reply:
    """GET /v2/models/flight-delay[/versions/{v}]: one input per field the model reads, the outputs."""
    active = await served_model(request, services)
    routing = await services.dataplane.routing()
    return json_reply(200, metadata(active, routing.versions()), request.request_id)


async def model_ready(request: HttpRequest, services: Services) -> Reply:
    """GET /v2/models/flight-delay[/versions/{v}]/ready: the active model scores the reference flight."""
    await served_model(request, services)
    version = await services.health.scoring_version_now()
    return json_reply(200 if version else 503, {"name": MODEL, "ready": bool(version)}, request.request_id)


async def infer(request: HttpRequest, services: Services) -> Reply:
    """POST /v2/models/flight-delay[/versions/{v}]/infer: a prediction per row of the input columns.

    Without a version, the canary answers its share of requests; a version in the path is served by it.
    """
    await served_model(request, services)
    large = len(request.body) > LOOP_BODY_MAX_BYTES
    document, flights = await run_off_loop_if(large, read_request, request)
    pinned = request.params.get("version")
    predict = PredictRequest(
        flights, request.request_id, request.started, protocol="v2", large=large, version=pinned
    )
    scored = await services.dataplane.predict(predict)
    return await run_off_loop_if(large, infer_reply, document, scored, request.request_id)


ROUTES = [
    Route("GET", "/v2/health/live", server_live, v2_style),
    Route("GET", "/v2/health/ready", server_ready, v2_style),
    Route("GET", "/v2", server_metadata, v2_style),
    *(Route("GET", path, model_metadata, v2_style) for path in MODEL_PATHS),
    *(Route("GET", f"{path}/ready", model_ready, v2_style) for path in MODEL_PATHS),
    *(Route("POST", f"{path}/infer", infer, v2_style) for path in MODEL_PATHS),
]


async def served_model(request: HttpRequest, services: Services) -> ActiveModel:
    """The active model, when the path names this model (and a version served now, if it names one)."""
    if request.params.get("model") != MODEL:
        raise UnknownModel(f"No model {request.params.get('model')!r} here; this server serves {MODEL!r}.")
    routing = await services.dataplane.routing()
    version = request.params.get("version")
    if version is not None and version not in routing.versions():
        raise UnknownModel(
            f"Version {version!r} of {MODEL} is not served; the active one is {routing.active.version}."
        )
    return routing.active


def metadata(active: ActiveModel, versions: tuple[str, ...] = ()) -> dict[str, Any]:
    """The model's metadata: one input per field it reads (shape [-1]), its outputs, the versions served."""
    inputs = [
        {"name": name, "datatype": field_datatype(name), "shape": [-1]}
        for name in active.model.input_fields
        if name in FIELDS_BY_NAME
    ]
    outputs = [
        {"name": "predict", "datatype": "FP64", "shape": [-1]},
        {"name": "basis", "datatype": "BYTES", "shape": [-1]},
        {"name": "history_id", "datatype": "INT64", "shape": [-1]},
        {"name": "warnings", "datatype": "BYTES", "shape": [-1]},
    ]
    return {
        "name": MODEL,
        "versions": list(versions or (active.version,)),
        "platform": active.model.kind,
        "inputs": inputs,
        "outputs": outputs,
    }


def read_request(request: HttpRequest) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The request's JSON header and its flights (the binary tensor extension's data after the header)."""
    declared = request.header(HEADER_LENGTH.lower().encode())
    length = len(request.body)
    if declared:
        if not declared.isdigit() or int(declared) > len(request.body):
            raise BadTensor(f"{HEADER_LENGTH} must be the length of the JSON header, at most the body's.")
        length = int(declared)
    document = parsed_json(request.body[:length])
    if type(document) is not dict:
        raise BadTensor("The inference request must be a JSON object.")
    return document, flights_of(document, request.body[length:])


def infer_reply(document: dict[str, Any], scored: ScoredFlights, request_id: str) -> Reply:
    """The inference response: the outputs asked for, in JSON or as binary data after the JSON header."""
    tensors = {tensor.name: tensor for tensor in output_tensors(scored)}
    wanted = requested_outputs(document)
    header: dict[str, Any] = {"model_name": MODEL, "model_version": scored.model_version}
    header["id"] = str(document.get("id", request_id))
    header["outputs"], binary = [], []
    for name, as_binary in wanted:
        tensor = tensors[name]
        spec: dict[str, Any] = {"name": name, "datatype": tensor.datatype, "shape": [len(tensor.values)]}
        if as_binary:
            binary.append(encoded(tensor))
            spec["parameters"] = {"binary_data_size": len(binary[-1])}
        else:
            spec["data"] = list(tensor.values)
        header["outputs"].append(spec)
    return binary_reply(header, binary, request_id) if binary else json_reply(200, header, request_id)


def requested_outputs(document: dict[str, Any]) -> list[tuple[str, bool]]:
    """Which outputs to answer and whether each goes as binary data (all, when none are named)."""
    parameters = document.get("parameters") or {}
    everything_binary = bool(parameters.get("binary_data_output", False))
    named = document.get("outputs")
    if named is None:
        return [(name, everything_binary) for name in OUTPUTS]
    if type(named) is not list or not all(type(o) is dict and o.get("name") in OUTPUTS for o in named):
        raise BadTensor(f"`outputs` must name outputs among {list(OUTPUTS)}.")
    return [
        (o["name"], bool((o.get("parameters") or {}).get("binary_data", everything_binary))) for o in named
    ]


def output_tensors(scored: ScoredFlights) -> list[Tensor]:
    """Every output: the predicted delays, their basis, their history ids, their warnings as JSON text."""
    predictions = scored.predictions
    return [
        Tensor("predict", "FP64", [float(p["arr_delay"]) for p in predictions]),
        Tensor("basis", "BYTES", [str(p["basis"]) for p in predictions]),
        Tensor("history_id", "INT64", [int(p["history_id"]) for p in predictions]),
        Tensor("warnings", "BYTES", [orjson.dumps(p.get("warnings", [])).decode() for p in predictions]),
    ]


def binary_reply(header: dict[str, Any], binary: list[bytes], request_id: str) -> Reply:
    """A response with binary outputs: the JSON header, then their data, its length in a header."""
    head = orjson.dumps(header)
    body = head + b"".join(binary)
    extra = [(HEADER_LENGTH, str(len(head)))]
    headers = answer_headers(len(body), request_id, extra, content_type="application/octet-stream")
    return Reply(200, headers, body)
