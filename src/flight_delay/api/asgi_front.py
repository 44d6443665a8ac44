"""The ASGI app gunicorn's uvicorn workers run: every plain prediction on the event loop, the rest in Flask.

Under gunicorn's threaded worker, its pure-Python HTTP handling and the hand-offs between its
threads cost more CPU than the prediction itself. Here uvicorn parses HTTP in C (httptools) on one
event loop per worker (uvloop). Every prediction whose JSON body the request schema accepts, one
flight or a batch, on SQLite or PostgreSQL, is answered by one handler here and waits for its rows'
commit without holding a thread: through the host's history writer on SQLite, through the worker's
own PostgresLoopWriter on PostgreSQL (both an EventLoopWriter). A batch beyond LOOP_BODY_MAX_BYTES
is parsed, validated, scored and rendered in a thread, so it does not hold the worker's other
requests. What the handler does not take (other endpoints, refusals) goes to the Flask app on a
thread pool (a2wsgi), whose views and error handlers word every refusal (plain_predict.py says how
the two agree; tests compare the answers byte for byte).

Every body is read here, on the loop, before anything answers it: within its limit (beyond it, the
bytes that prove it too large are handed on, and Flask refuses it as it always did) and within
ML_API_BODY_TIMEOUT_S, else a 408. A client stalling mid-body so holds no Flask thread. Each worker
takes at most ML_API_MAX_CONCURRENT requests at once (a stalled one counts) and answers the next
with a 503 `overloaded` at once, rather than queueing work without bound for its threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from a2wsgi import WSGIMiddleware
from flask import Flask
from werkzeug.exceptions import HTTPException

from flight_delay.api.body_limit import body_limit, upload_paths
from flight_delay.api.errors import request_id_from
from flight_delay.api.plain_predict import (
    PREDICT_PATHS,
    PREDICT_RULE,
    PredictAnswer,
    answer,
    flights_from,
    is_json,
)
from flight_delay.errors import BodyTimeout, FlightDelayError, Overloaded
from flight_delay.extensions import predictions
from flight_delay.observability.metrics import observe_request
from flight_delay.serving.predictions import FlightInput

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A body beyond this is a batch: parsing, validating, scoring and rendering it would hold the loop,
# and every other request of the worker, for milliseconds to seconds. That work goes to a thread.
LOOP_BODY_MAX_BYTES = 64 * 1024

# Health checks are never refused for the cap on requests in flight: a load balancer's probe must
# learn whether the replica is up, and a replica at its cap is up (and busy), not to be taken out.
HEALTH_PREFIX = "/health/"

# gunicorn's access logger: its handlers (stdout for "-") are set from gunicorn's accesslog setting.
ACCESS_LOG = logging.getLogger("gunicorn.access")


class AsgiFront:
    """ASGI app answering plain predictions on the event loop and handing the rest to Flask's threads."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.flask = WSGIMiddleware(_terminated_input(app.wsgi_app), workers=app.config["ML_API_THREADS"])
        self.body_timeout_s = app.config["ML_API_BODY_TIMEOUT_S"]
        self.max_concurrent = app.config["ML_API_MAX_CONCURRENT"]
        self.in_flight = 0  # requests being served, health checks aside (the loop's only: no lock)
        self.upload_paths = upload_paths(app)

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Serves one request (lifespan and websocket scopes are a2wsgi's: acknowledged, closed)."""
        if scope["type"] != "http":
            await self.flask(scope, receive, send)  # type: ignore[arg-type]
            return
        started = time.perf_counter()
        if any(b"_" in name for name, _ in scope["headers"]):
            # As gunicorn did: X_Request_ID would reach WSGI as HTTP_X_REQUEST_ID, like X-Request-ID.
            scope["headers"] = [(name, value) for name, value in scope["headers"] if b"_" not in name]
        response = ObservedResponse(send)
        try:
            await self._admit(scope, receive, response.send, started)
        finally:
            ACCESS_LOG.info(access_line(scope, response, time.perf_counter() - started))

    async def _admit(self, scope: Message, receive: Receive, send: Send, started: float) -> None:
        """Serves the request if the worker has room for it (health checks always), else a 503 at once."""
        if is_health_check(scope["path"]):
            await self._serve(scope, receive, send, started)
        elif self.in_flight >= self.max_concurrent:
            message = f"This worker has {self.max_concurrent} requests in flight, its limit; retry shortly."
            await self._refuse(scope, send, Overloaded(message), started)
        else:
            self.in_flight += 1
            try:
                await self._serve(scope, receive, send, started)
            finally:
                self.in_flight -= 1

    async def _serve(self, scope: Message, receive: Receive, send: Send, started: float) -> None:
        """Reads the body on the loop within the deadline, then answers: on the loop, or in Flask."""
        try:
            body = await self._body(scope, receive)
        except TimeoutError:
            message = f"The request body did not arrive within {self.body_timeout_s} s."
            await self._refuse(scope, send, BodyTimeout(message), started)
            return
        if await self._predict(scope, body, send, started):
            return
        # The body replayed: Flask's thread reads it from memory, never waiting for the client.
        await self.flask(scope, replaying(body, receive), send)  # type: ignore[arg-type]

    async def _body(self, scope: Message, receive: Receive) -> bytes:
        """The body, up to one byte past its limit (Flask refuses it from those), within the deadline."""
        limit = body_limit(self.app.config, scope["path"] in self.upload_paths)
        declared = header(scope, b"content-length")
        if limit is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
            return b""  # refused by Flask from its declared length alone, unread, as before
        async with asyncio.timeout(self.body_timeout_s):
            return await read_body(receive, limit)

    async def _predict(self, scope: Message, body: bytes, send: Send, started: float) -> bool:
        """Answers a plain prediction here (a batch's work in a thread); False leaves it to Flask."""
        if not self._takes(scope, body):
            return False
        batch = len(body) > LOOP_BODY_MAX_BYTES
        parsed = await asyncio.to_thread(flights_from, body) if batch else flights_from(body)
        if parsed is None:  # refused: Flask words the refusal from the same body
            return False
        request_id = request_id_from(header(scope, b"x-request-id"))
        reply = await self._scored(*parsed, request_id, started, batch)
        await send_answer(send, reply)
        observe_request(PREDICT_RULE, "POST", reply.status, time.perf_counter() - started)
        return True

    def _takes(self, scope: Message, body: bytes) -> bool:
        """Whether the request is a prediction with a JSON body here whole and within its limit."""
        if scope["method"] != "POST" or scope["path"] not in PREDICT_PATHS:
            return False
        if predictions.event_loop_writer is None or not is_json(header(scope, b"content-type")):
            return False
        declared = header(scope, b"content-length")
        if declared and not (declared.isascii() and declared.isdigit() and int(declared) == len(body)):
            return False  # cut short, or odd: Flask reports it as it would
        limit = self.app.config.get("MAX_CONTENT_LENGTH")
        return len(body) > 0 and (limit is None or len(body) <= limit)

    async def _scored(
        self, flights: list[FlightInput], single: bool, request_id: str, started: float, batch: bool
    ) -> PredictAnswer:
        """Scores and records the flights; the answer Flask would give, success or refusal."""
        try:
            scored = await predictions.predict_on_event_loop(flights, request_id, started, single, batch)
            if batch:  # rendering thousands of predictions would hold the loop too
                return await asyncio.to_thread(answer, self.app, request_id, scored)
            return answer(self.app, request_id, scored)
        except Exception as exc:  # answered as Flask's error handlers answer it
            return answer(self.app, request_id, exc)

    async def _refuse(self, scope: Message, send: Send, error: FlightDelayError, started: float) -> None:
        """Answers an error on the loop, in the shape and with the headers Flask's handlers give it."""
        reply = answer(self.app, request_id_from(header(scope, b"x-request-id")), error)
        # After a 408 the rest of the body may still come: the connection cannot carry another request.
        await send_answer(send, reply, close=isinstance(error, BodyTimeout))
        observe_request(self._rule(scope), scope["method"], reply.status, time.perf_counter() - started)

    def _rule(self, scope: Message) -> str:
        """The route the request would reach, as Flask's metrics name it ("unmatched" for none)."""
        try:
            adapter = self.app.url_map.bind("localhost")
            rule, _ = adapter.match(scope["path"], scope["method"], return_rule=True)
        except HTTPException:
            return "unmatched"
        return rule.rule


class ObservedResponse:
    """Passes a response on to the server, noting its status, request id and body size for the log."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.status: int | None = None
        self.request_id = "-"
        self.sent: int | None = None  # body bytes, once a body message went out

    async def send(self, message: Message) -> None:
        """Notes what the message says of the response, then sends it."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", ()):
                if name.lower() == b"x-request-id":
                    self.request_id = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            self.sent = (self.sent or 0) + len(message.get("body", b""))
        await self._send(message)


def access_line(scope: Message, response: ObservedResponse, elapsed_s: float) -> str:
    """One access-log line: client, request line, status, bytes, milliseconds, worker pid, request id."""
    client = scope.get("client")
    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    request_line = f"{scope['method']} {target.decode('latin-1')} HTTP/{scope['http_version']}"
    elapsed_ms = int(elapsed_s * 1000)
    sent = "-" if response.sent is None else response.sent
    return (
        f'{client[0] if client else "-"} "{request_line}" {response.status or "-"} {sent} '
        f"{elapsed_ms}ms pid=<{os.getpid()}> request_id={response.request_id}"
    )


def is_health_check(path: str) -> bool:
    """Whether the path is a health endpoint's (/health/, /health/live, ...; with or without its slash)."""
    return path.startswith(HEALTH_PREFIX) or path == HEALTH_PREFIX.rstrip("/")


def header(scope: Message, name: bytes) -> str:
    """A request header's value, repeated ones joined by commas as in the WSGI environ; "" if absent."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ",".join(values)


async def send_answer(send: Send, reply: PredictAnswer, close: bool = False) -> None:
    """Sends a whole answer; `close` asks the server to close the connection after it."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.data})


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    """Reads the request body to its end, to the client's disconnect, or past `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: what came is all there is
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if not message.get("more_body", False) or (limit is not None and size > limit):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the body already read once, then whatever the connection says next."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        """The body read, then the server's own messages."""
        return pending.pop() if pending else await receive()

    return replay


def _terminated_input(wsgi_app: Any) -> Any:
    """Tells Flask the body stream ends by itself, as gunicorn's does, so a chunked body is readable."""

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        """Marks the input terminated (the ASGI server ends every body) and calls the app."""
        environ["wsgi.input_terminated"] = True
        return wsgi_app(environ, start_response)

    return app
