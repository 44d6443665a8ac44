"""The /model/ endpoints: predict, load, the active model's metadata and the history."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Response, current_app, g, request, url_for
from flask.views import MethodView
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from flight_delay.api.auth import caller
from flight_delay.api.blueprint import INTERNAL_ERROR, TOO_LARGE, ApiBlueprint
from flight_delay.api.body_limit import MULTIPART_OVERHEAD_BYTES
from flight_delay.api.errors import flask_reply
from flight_delay.api.lifecycle_schemas import LoadQuerySchema, UploadedModelSchema
from flight_delay.api.schemas import (
    HistoryPageSchema,
    HistoryQuerySchema,
    ModelInfoSchema,
    PredictResponseSchema,
)
from flight_delay.api.services import services
from flight_delay.card import model_card
from flight_delay.errors import InvalidInput, ModelTooLarge
from flight_delay.features import INPUT_FIELDS, REFERENCE_FLIGHT
from flight_delay.history.repository import HistoryQuery
from flight_delay.serving.lifecycle import ACTIVE, CANDIDATE, Actor
from flight_delay.serving.signing import verify
from flight_delay.transport import native

blp = ApiBlueprint("model", __name__, url_prefix="/model", description="Predictions and models")

UPLOAD_DOC = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


# One instance each, reused: given a class, webargs would build a new schema (and deep-copy its nested
# fields) for every request, a cost paid before any validation.
HISTORY_QUERY = HistoryQuerySchema()

# A real flight with the fields the project's model reads: what Swagger UI offers to send.
EXAMPLE_FLIGHT = {name: REFERENCE_FLIGHT[name] for name in INPUT_FIELDS}

# The body is a bare flight or a batch; the schema wraps the first into the second.
PREDICT_DOC = {
    "required": True,
    "description": 'One flight, or {"flights": [...]}',
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/Flight"},
                    {"$ref": "#/components/schemas/PredictRequest"},
                ]
            },
            "examples": {
                "flight": {"summary": "One flight", "value": EXAMPLE_FLIGHT},
                "batch": {
                    "summary": "A batch, one flight not yet departed",
                    "value": {"flights": [EXAMPLE_FLIGHT, {**EXAMPLE_FLIGHT, "dep_delay": None}]},
                },
            },
        }
    },
}


def read_model_upload() -> tuple[bytes, str | None]:
    """Reads the uploaded file (multipart `file`, or the octet-stream body) within MAX_MODEL_BYTES."""
    limit = current_app.config["MAX_MODEL_BYTES"]
    request.max_content_length = limit + MULTIPART_OVERHEAD_BYTES
    try:
        data, filename = _read_body()
    except RequestEntityTooLarge as exc:
        raise ModelTooLarge(f"The model file is larger than MAX_MODEL_BYTES ({limit} bytes).") from exc
    if len(data) > limit:
        raise ModelTooLarge(f"The model file is {len(data)} bytes; MAX_MODEL_BYTES is {limit}.")
    return data, filename


def _read_body() -> tuple[bytes, str | None]:
    """Returns the file's bytes and name from a multipart form, or the bytes of an octet-stream body."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise InvalidInput(
                "Send the model file as multipart field 'file'.",
                {"file": ["Missing data for required field."]},
            )
        return upload.read(), upload.filename
    if request.mimetype == "application/octet-stream":
        return request.get_data(cache=False), None
    raise UnsupportedMediaType(
        "Send the model as multipart/form-data (field 'file') or application/octet-stream."
    )


@blp.route("/predict/")
class Predict(MethodView):
    """Arrival-delay predictions."""

    @blp.doc(requestBody=PREDICT_DOC)
    @blp.response(200, PredictResponseSchema)
    @blp.error_responses(
        {
            400: "The body is not valid JSON",
            **TOO_LARGE,
            415: "The body is not application/json",
            422: "Invalid or unscorable flight",
            503: "No model, or history unavailable",
            **INTERNAL_ERROR,
        }
    )
    def post(self) -> Response:
        """Predicts the arrival delay (minutes) of each flight and records it in the history."""
        body = request.get_data(cache=False)
        predict = native.request_of(body, request.content_type or "", g.request_id, g.started)
        return flask_reply(native.answer(services().dataplane.predict_blocking(predict)))


@blp.route("/load/")
class Load(MethodView):
    """Model upload."""

    @blp.doc(requestBody=UPLOAD_DOC)
    @blp.arguments(LoadQuerySchema, location="query", unknown=ma.RAISE)
    @blp.response(201, UploadedModelSchema)
    @blp.error_responses(
        {
            400: "Not a model file, or it names what is not allowed",
            403: "Upload disabled, or signature missing or wrong",
            413: "Larger than MAX_MODEL_BYTES",
            415: "Wrong content type",
            422: "A model that cannot serve, or whose check crashed or hit a limit in the sandbox",
            503: "The database or the model sandbox is unavailable",
            **INTERNAL_ERROR,
        }
    )
    def post(self, query: dict[str, Any]) -> dict[str, Any]:
        """Checks an uploaded model file and makes it the model every worker serves (or a candidate).

        Accepted: a pickle (.pkl) whose every global is on the allowlist, the pickle-free .lgbm.json
        bundle `flight-delay train` writes, or a LightGBM text model. Each is read and checked in a
        sandboxed child process (no files, no network, bounded memory, CPU and time). Needs the admin
        token when one is configured, and an X-Model-Signature when ML_API_MODEL_SIGNING_KEY is set.
        With `?activate=false` it is stored as a candidate, serving nothing until activated. The upload
        is in the audit, with the token's name and the X-Reason header.
        """
        data, filename = read_model_upload()
        signing_key = current_app.config["ML_API_MODEL_SIGNING_KEY"]
        if signing_key:
            verify(data, request.headers.get("X-Model-Signature"), signing_key)
        actor = Actor(caller().name, request.headers.get("X-Reason") or None)
        if not query["activate"]:
            return {
                **services().registry.store_candidate(data, filename, actor),
                "stage": CANDIDATE,
                "loaded_at": None,
            }
        return {**services().registry.activate_upload(data, filename, actor).info(), "stage": ACTIVE}


@blp.route("/")
class ActiveModelInfo(MethodView):
    """The active model."""

    @blp.response(200, ModelInfoSchema)
    @blp.error_responses({503: "No model loaded, or the database is unavailable", **INTERNAL_ERROR})
    def get(self) -> dict[str, Any]:
        """Returns the active model's version, kind, input fields, metrics and load time."""
        return services().registry.active().info()


MARKDOWN = {"schema": {"type": "string"}}


@blp.route("/card")
class ActiveModelCard(MethodView):
    """The active model's card."""

    @blp.doc(responses={200: {"description": "The card", "content": {"text/markdown": MARKDOWN}}})
    @blp.error_responses({503: "No model loaded, or the database is unavailable", **INTERNAL_ERROR})
    def get(self) -> Response:
        """Returns the active model's card in Markdown: intended use, training, metrics, limits."""
        card = model_card(services().registry.active().info())
        return current_app.response_class(card, mimetype="text/markdown")


@blp.route("/history/")
class History(MethodView):
    """The prediction history."""

    @blp.arguments(HISTORY_QUERY, location="query", unknown=ma.RAISE)
    @blp.response(200, HistoryPageSchema)
    @blp.error_responses(
        {422: "Invalid filters or cursor", 503: "The history cannot be read", **INTERNAL_ERROR}
    )
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Lists every prediction served, newest first, a page at a time.

        Newest first by the time it was recorded (then by id), filtered by model version, request id
        and a time window. `total` counts the predictions matching the filters up to 10,000, and
        `total_capped` says when more match: counting stops there, so that every page of a history of
        any size costs what its first page costs. Follow `next_cursor` (or `next`) for older ones.
        """
        cursor = args.get("cursor")
        page = services().history.page(
            HistoryQuery(
                page_size=args["page_size"],
                before_id=int(cursor) if cursor else None,
                model_version=args.get("model_version"),
                request_id=args.get("request_id"),
                since=args.get("since"),
                until=args.get("until"),
            )
        )
        next_cursor = None if page.next_before_id is None else str(page.next_before_id)
        return {
            "items": page.items,
            "total": page.total,
            "total_capped": page.total_capped,
            "page_size": args["page_size"],
            "next_cursor": next_cursor,
            "next": next_cursor and url_for("model.History", **_query_args(args, next_cursor)),
        }


def _query_args(args: dict[str, Any], cursor: str) -> dict[str, str]:
    """Renders the filters and the new cursor as query-string arguments for the next link."""
    rendered = {k: v.isoformat() if hasattr(v, "isoformat") else str(v) for k, v in args.items()}
    return {**rendered, "cursor": cursor}
