"""The ASGI middleware every request crosses before it is routed, one concern each, outermost first.

AccessLog times the request and writes gunicorn's access line; HeaderScrub drops headers named with
underscores (as gunicorn did); Admission refuses what the worker has no room for; AccessGate refuses
a request without the token its route needs (access.py) before reading its body; BodyReader reads
the body within its limit, its deadline and the worker's byte budget, so that no handler or Flask
thread waits for a client, and lets large bodies be worked on a few at a time.
Non-HTTP scopes (lifespan, websocket) go straight through to the router, which hands them to a2wsgi.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from flight_delay.access import Policy
from flight_delay.config import body_limit
from flight_delay.errors import BodyTimeout, BodyTooLarge, FlightDelayError, ModelTooLarge, Overloaded
from flight_delay.loop_lock import PerLoop
from flight_delay.observability.metrics import observe_request
from flight_delay.replies import render_error, request_id_from
from flight_delay.transport.http import (
    BODY,
    LOOP_BODY_MAX_BYTES,
    STARTED,
    Asgi,
    BodyBudgetExceeded,
    Message,
    Receive,
    Send,
    header,
    read_body,
    send_reply,
)
from flight_delay.transport.router import Router

# gunicorn's access logger: its handlers (stdout for "-") are set from gunicorn's accesslog setting.
ACCESS_LOG = logging.getLogger("gunicorn.access")
# Health checks, metrics and MLflow's /ping are never refused for the cap on requests in flight (a load
# balancer's probe must learn whether the replica is up, and one at its cap is up), and read no body.
UNCAPPED_PREFIXES = ("/health", "/v2/health/", "/metrics", "/ping")


def uncapped(path: str) -> bool:
    """Whether the path is a health check's, the metrics' or MLflow's ping."""
    return path.startswith(UNCAPPED_PREFIXES)


async def refuse(
    router: Router, scope: Message, send: Send, error: FlightDelayError, close: bool = False
) -> None:
    """Answers a request refused before it was routed, in its route's error style, and counts it."""
    name, style = router.describe(scope["path"], scope["method"])
    reply = render_error(error, request_id_from(header(scope, b"x-request-id")), style)
    await send_reply(send, reply, close=close)
    observe_request(name, scope["method"], reply.status, time.perf_counter() - scope[STARTED])


class AccessLog:
    """Times the request from its arrival and writes one access line once it is answered."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Serves the request, noting what its response says, then logs it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[STARTED] = time.perf_counter()
        response = ObservedResponse(send)
        try:
            await self.app(scope, receive, response.send)
        finally:
            ACCESS_LOG.info(access_line(scope, response, time.perf_counter() - scope[STARTED]))


class HeaderScrub:
    """Drops headers named with underscores: X_Request_ID would pass for X-Request-ID in WSGI."""

    def __init__(self, app: Asgi) -> None:
        self.app = app

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Removes such headers, as gunicorn did, and passes the request on."""
        if scope["type"] == "http" and any(b"_" in name for name, _ in scope["headers"]):
            scope["headers"] = [(name, value) for name, value in scope["headers"] if b"_" not in name]
        await self.app(scope, receive, send)


class Admission:
    """Takes at most ML_API_MAX_CONCURRENT requests at once (health checks aside); the next is a 503."""

    def __init__(self, app: Asgi, router: Router, max_concurrent: int) -> None:
        self.app = app
        self.router = router
        self.max_concurrent = max_concurrent
        self.in_flight = 0  # requests being served, uncapped ones aside (the loop's only: no lock)

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Serves the request if the worker has room for it, else refuses it at once."""
        if scope["type"] != "http" or uncapped(scope["path"]):
            await self.app(scope, receive, send)
        elif self.in_flight >= self.max_concurrent:
            message = f"This worker has {self.max_concurrent} requests in flight, its limit; retry shortly."
            await refuse(self.router, scope, send, Overloaded(message))
        else:
            self.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= 1


class AccessGate:
    """Checks a request's token against what its route needs (access.py), from its headers, before a
    byte of its body is read.

    A client sending `Expect: 100-continue` is refused before uvicorn tells it to send the body; when
    a body was announced, the connection closes after the refusal, whatever the client sends next.
    """

    def __init__(self, app: Asgi, router: Router, policy: Policy) -> None:
        self.app = app
        self.router = router
        self.policy = policy

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Refuses a request without the token its route needs; passes every other request on."""
        if scope["type"] == "http":
            need = self.policy.need(scope["method"], scope["path"])
            if need is not None:
                try:
                    self.policy.check(need, header(scope, b"authorization"))
                except FlightDelayError as refused:
                    await refuse(self.router, scope, send, refused, close=announces_body(scope))
                    return
        await self.app(scope, receive, send)


def announces_body(scope: Message) -> bool:
    """Whether the request's head says a body follows (a length above 0, or a transfer coding)."""
    return header(scope, b"content-length") not in ("", "0") or bool(header(scope, b"transfer-encoding"))


class BodyBudget:
    """The bytes of request bodies a worker holds at once (the loop's only: no lock), bounded."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Counts `size` more bytes held if they fit; False (nothing counted) if they do not."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        """Counts bytes no longer held."""
        self.held -= size


class BodyReader:
    """Reads the body whole before anything answers: within its limit, ML_API_BODY_TIMEOUT_S and the
    worker's byte budget (ML_API_BODY_BUDGET_BYTES); a large one then waits its turn to be worked on.
    """

    def __init__(
        self, app: Asgi, router: Router, config: Mapping[str, Any], upload_paths: frozenset[str]
    ) -> None:
        self.app = app
        self.router = router
        self.config = config
        self.timeout_s = config["ML_API_BODY_TIMEOUT_S"]
        self.upload_paths = upload_paths
        self.budget = BodyBudget(config["ML_API_BODY_BUDGET_BYTES"])
        large = config["ML_API_LARGE_CONCURRENT"]
        self.large_turns = PerLoop(lambda: asyncio.Semaphore(large))

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        """Reads the body into scope[BODY] and passes the request on; refuses it when it cannot."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif uncapped(scope["path"]):
            await self._without_body(scope, receive, send)
        else:
            held = Held(self.budget)
            try:
                if await self._read(scope, receive, send, held):
                    await self._work(scope, receive, send)
            finally:
                held.release()

    async def _read(self, scope: Message, receive: Receive, send: Send, held: Held) -> bool:
        """Reads the body into scope[BODY]; False once it refused the request (413, 503, 408)."""
        limit, too_large = self._limit(scope["path"])
        declared = header(scope, b"content-length")
        size = int(declared) if declared.isascii() and declared.isdigit() else None
        if limit is not None and size is not None and size > limit:
            await refuse(self.router, scope, send, too_large(), close=True)  # never read
            return False
        refusal = await self._receive(scope, receive, limit, size, held)
        if refusal is None and limit is not None and len(scope[BODY]) > limit:
            refusal = too_large()
        if refusal is not None:
            await refuse(self.router, scope, send, refusal, close=True)  # the rest may still come
        return refusal is None

    async def _receive(
        self, scope: Message, receive: Receive, limit: int | None, size: int | None, held: Held
    ) -> FlightDelayError | None:
        """Reads the body within the budget and the deadline; the refusal when it could not."""
        if size is not None and not held.take(size):  # reserved whole before a byte is read
            return over_budget(self.budget)
        try:
            async with asyncio.timeout(self.timeout_s):
                scope[BODY] = await read_body(receive, limit, None if size is not None else held)
        except TimeoutError:
            return BodyTimeout(f"The request body did not arrive within {self.timeout_s} s.")
        except BodyBudgetExceeded:
            return over_budget(self.budget)
        return None

    async def _work(self, scope: Message, receive: Receive, send: Send) -> None:
        """Passes the request on; a large body first waits for one of ML_API_LARGE_CONCURRENT turns."""
        if len(scope[BODY]) <= LOOP_BODY_MAX_BYTES:
            await self.app(scope, receive, send)
            return
        async with self.large_turns():
            await self.app(scope, receive, send)

    async def _without_body(self, scope: Message, receive: Receive, send: Send) -> None:
        """A health check or metrics: no body is read; one was sent, the connection closes after."""
        scope[BODY] = b""
        await self.app(scope, receive, closing(send) if announces_body(scope) else send)

    def _limit(self, path: str) -> tuple[int | None, Callable[[], FlightDelayError]]:
        """The most body bytes the path takes, and the refusal of more."""
        if path in self.upload_paths:
            message = (
                f"The model file is larger than MAX_MODEL_BYTES ({self.config['MAX_MODEL_BYTES']} bytes)."
            )
            return body_limit(self.config, upload=True), lambda: ModelTooLarge(message)
        limit = body_limit(self.config, upload=False)
        message = f"The body is larger than MAX_REQUEST_BYTES ({limit} bytes)."
        return limit, lambda: BodyTooLarge(message)


class Held:
    """The bytes one request holds of the worker's budget, given back when it is answered."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> bool:
        """Holds `size` more bytes if the budget has room."""
        if not self.budget.take(size):
            return False
        self.size += size
        return True

    def release(self) -> None:
        """Gives back everything held."""
        self.budget.give_back(self.size)
        self.size = 0


def over_budget(budget: BodyBudget) -> Overloaded:
    """The 503 of a body the worker has no room for now."""
    return Overloaded(
        f"This worker holds {budget.held} bytes of request bodies, near its limit; retry shortly."
    )


def closing(send: Send) -> Send:
    """A send that asks the server to close the connection after this response (its body unread)."""

    async def send_and_close(message: Message) -> None:
        """Adds `connection: close` to the response's head."""
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
        await send(message)

    return send_and_close


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
