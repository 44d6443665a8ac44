"""MLflow's scoring protocol: GET /ping, GET /version, POST /invocations, as `mlflow models serve` answers.

A client that posts a pandas DataFrame to an MLflow model server posts it here unchanged: JSON with
one of `dataframe_split` (with or without `index`), `dataframe_records`, `instances` (records) or
`inputs` (columns, or records), or `text/csv` with a header row. The rows become flights, which the
one data plane validates, scores and records (protocol `mlflow`); the answer is
`{"predictions": [...]}`. Errors are MLflow's: `{"error_code": ..., "message": ...}`, and a 415 in
plain text for a content type it does not read.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from werkzeug.http import parse_options_header

from flight_delay import __version__
from flight_delay.errors import FlightDelayError
from flight_delay.features import FIELDS_BY_NAME
from flight_delay.replies import ErrorReply, Reply, answer_headers, json_reply
from flight_delay.services import Services
from flight_delay.serving.dataplane import PredictRequest, run_off_loop_if
from flight_delay.serving.predictions import ScoredFlights
from flight_delay.transport.http import LOOP_BODY_MAX_BYTES, HttpRequest
from flight_delay.transport.native import parsed_json
from flight_delay.transport.routes import Route

MODEL_VERSION_HEADER = "X-Model-Version"  # the version that answered (the body has no room for it)
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
CONTENT_TYPES = ("text/csv", "application/json")
UNSUPPORTED = "This predictor only supports the following content types:"
ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "RESOURCE_DOES_NOT_EXIST",
    422: "INVALID_PARAMETER_VALUE",
    503: "TEMPORARILY_UNAVAILABLE",
}


class BadInvocation(FlightDelayError):
    """A scoring request MLflow's protocol cannot read (no input format, or a malformed one)."""

    status = 400
    code = "bad_request"


def mlflow_style(reply: ErrorReply, request_id: str) -> tuple[int, Any]:
    """MLflow's error: an error code and a message; a refused flight is a 400 INVALID_PARAMETER_VALUE."""
    message = reply.message
    if reply.errors:
        message += f" {reply.errors}"
    error_code = ERROR_CODES.get(reply.status, "INTERNAL_ERROR")
    return (400 if reply.status == 422 else reply.status), {"error_code": error_code, "message": message}


async def ping(request: HttpRequest, services: Services) -> Reply:
    """GET /ping: 200 while a model serves (a 503 when none can), as MLflow's container health check."""
    version = await services.health.scoring_version_now()
    body = b"\n"
    return Reply(200 if version else 503, answer_headers(len(body), request.request_id), body)


async def version(request: HttpRequest, services: Services) -> Reply:
    """GET /version: the server's version (MLflow answers its own)."""
    return json_reply(200, __version__, request.request_id)


async def invocations(request: HttpRequest, services: Services) -> Reply:
    """POST /invocations: a prediction per row of the DataFrame sent, {"predictions": [...]}."""
    refused = unsupported(request.header(b"content-type"), request.request_id)
    if refused is not None:
        return refused
    large = len(request.body) > LOOP_BODY_MAX_BYTES
    rows = await run_off_loop_if(large, rows_of, request.body, request.header(b"content-type"))
    predict = PredictRequest(rows, request.request_id, request.started, protocol="mlflow", large=large)
    return predictions_reply(await services.dataplane.predict(predict))


ROUTES = [
    Route("GET", "/ping", ping, mlflow_style),
    Route("GET", "/version", version, mlflow_style),
    Route("POST", "/invocations", invocations, mlflow_style),
]


def unsupported(content_type: str, request_id: str) -> Reply | None:
    """MLflow's 415, in plain text, for a content type other than JSON or CSV in UTF-8; else None."""
    mimetype, options = parse_options_header(content_type)
    if mimetype.lower() in CONTENT_TYPES and options.get("charset", "utf-8").lower() == "utf-8":
        return None
    body = f"{UNSUPPORTED} Types: {list(CONTENT_TYPES)}. Got '{content_type}'.".encode()
    return Reply(415, answer_headers(len(body), request_id, content_type="text/plain; charset=utf-8"), body)


def rows_of(body: bytes, content_type: str) -> list[Any]:
    """The DataFrame's rows, one mapping per row, from JSON (any of FORMATS) or CSV."""
    if parse_options_header(content_type)[0].lower() == "text/csv":
        return csv_rows(body)
    document = parsed_json(body)
    keys = [key for key in FORMATS if type(document) is dict and key in document]
    if len(keys) != 1:
        raise BadInvocation(
            f"The input must be a JSON dictionary with exactly one of the input fields {list(FORMATS)}."
        )
    return FORMAT_READERS[keys[0]](document[keys[0]])


def split_rows(frame: Any) -> list[Any]:
    """dataframe_split: {"columns": [...], "data": [[...], ...]} (an "index" is allowed, and unused)."""
    columns, data = (frame.get("columns"), frame.get("data")) if type(frame) is dict else (None, None)
    if type(columns) is not list or type(data) is not list or not all(type(row) is list for row in data):
        raise BadInvocation('dataframe_split must be {"columns": [...], "data": [[...], ...]}.')
    if any(len(row) != len(columns) for row in data):
        raise BadInvocation("dataframe_split: every row of data must have a value per column.")
    return [dict(zip(columns, row, strict=True)) for row in data]


def record_rows(records: Any) -> list[Any]:
    """dataframe_records, instances: a list of rows, each an object of column: value."""
    if type(records) is not list:
        raise BadInvocation("The records must be a list of objects, one per row.")
    return records


def column_rows(inputs: Any) -> list[Any]:
    """inputs: columns ({"column": [values...]}), or a list of records."""
    if type(inputs) is list:
        return record_rows(inputs)
    if type(inputs) is not dict or not all(type(values) is list for values in inputs.values()):
        raise BadInvocation('inputs must be {"column": [values, ...]} or a list of records.')
    lengths = {len(values) for values in inputs.values()}
    if len(lengths) > 1:
        raise BadInvocation("inputs: every column must have as many values.")
    count = lengths.pop() if lengths else 0
    return [{name: values[row] for name, values in inputs.items()} for row in range(count)]


FORMAT_READERS = {
    "dataframe_split": split_rows,
    "dataframe_records": record_rows,
    "instances": record_rows,
    "inputs": column_rows,
}


def csv_rows(body: bytes) -> list[dict[str, Any]]:
    """A CSV's rows under its header, each value read as its field's type (an empty cell is null)."""
    try:
        lines = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadInvocation(f"Failed to parse the input as CSV: {exc}.") from exc
    if not lines:
        raise BadInvocation("The CSV is empty: a header row, then a row per flight.")
    header, *rows = lines
    if any(len(row) != len(header) for row in rows):
        raise BadInvocation("The CSV's rows must each have a value per column of its header.")
    return [{name: cell_value(name, cell) for name, cell in zip(header, row, strict=True)} for row in rows]


def cell_value(name: str, cell: str) -> Any:
    """A CSV cell as its field's JSON value: a number where one belongs and reads as one; "" is null."""
    if cell == "":
        return None
    spec = FIELDS_BY_NAME.get(name)
    if spec is None or spec.kind == "str":
        return cell
    if spec.kind == "int" and cell.lstrip("+-").isdigit():
        return int(cell)
    try:
        return float(cell)
    except ValueError:
        return cell  # refused by the field's rule, in its words


def predictions_reply(scored: ScoredFlights) -> Reply:
    """MLflow's answer: {"predictions": [...]}, one delay per row, in order; X-Model-Version says by whom."""
    delays = [float(prediction["arr_delay"]) for prediction in scored.predictions]
    served_by = [(MODEL_VERSION_HEADER, scored.model_version)]
    return json_reply(200, {"predictions": delays}, scored.request_id, served_by)
