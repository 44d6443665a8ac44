"""MAX_CONTENT_LENGTH for bodies streamed without Content-Length (chunked), not only for declared ones.

Each request's limit is config.body_limit, which the ASGI front's BodyReader applies too.
"""

from __future__ import annotations

import io

from flask import Flask, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from flight_delay.config import MULTIPART_OVERHEAD_BYTES, body_limit
from flight_delay.errors import ModelTooLarge

__all__ = ["MULTIPART_OVERHEAD_BYTES", "body_limit", "buffer_streamed_body", "upload_paths"]

READ_SIZE = 1024 * 1024
# The model upload has its own limit, MAX_MODEL_BYTES, plus room for the multipart envelope.
MODEL_UPLOAD_ENDPOINT = "model.Load"


def buffer_streamed_body() -> None:
    """Reads a body sent without Content-Length whole, refusing it with a 413 past MAX_CONTENT_LENGTH.

    Werkzeug stops reading such a stream at the limit without an error, so an over-size chunked body
    would reach the views cut short: a JSON body as "invalid JSON", a model upload truncated. Read
    here, the body is handed on whole, from memory, as the views would have read it anyway.
    """
    environ = request.environ
    # Only servers that terminate the stream themselves (gunicorn) may be read without a length.
    if not environ.get("wsgi.input_terminated") or request.content_length is not None:
        return
    upload = request.endpoint == MODEL_UPLOAD_ENDPOINT
    limit = body_limit(current_app.config, upload)
    if limit is None:
        return
    body = _read_at_most(environ["wsgi.input"], limit + 1)
    if len(body) > limit:
        if upload:
            cap = current_app.config["MAX_MODEL_BYTES"]
            raise ModelTooLarge(f"The model file is larger than MAX_MODEL_BYTES ({cap} bytes).")
        raise RequestEntityTooLarge()
    environ["wsgi.input"] = io.BytesIO(body)


def upload_paths(app: Flask) -> frozenset[str]:
    """The model upload's paths (with and without the trailing slash), for fronts that route no request."""
    rules = [rule.rule for rule in app.url_map.iter_rules(MODEL_UPLOAD_ENDPOINT)]
    return frozenset({*rules, *(rule.rstrip("/") for rule in rules)})


def _read_at_most(stream: io.BufferedIOBase, size: int) -> bytes:
    """Reads until the stream ends or `size` bytes are read, whichever comes first."""
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(READ_SIZE, remaining))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)
