"""ASGI's plain parts every transport and middleware shares: a request read whole, sending a Reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from flight_delay.replies import Reply

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Message, Receive, Send], Awaitable[None]]

# A body beyond this is a batch: parsing, checking, scoring and rendering it would hold the loop, and
# every other request of the worker, for milliseconds to seconds. That work goes to a thread.
LOOP_BODY_MAX_BYTES = 16 * 1024

# Where the middleware leaves what it learnt of a request, in its scope, for those after it.
STARTED = "flight_delay.started"  # time.perf_counter() at arrival
BODY = "flight_delay.body"  # the body, read whole by BodyReader


class BodyBudgetExceeded(Exception):
    """A body of unknown length grew past what the worker's body budget has room for."""


@dataclass
class HttpRequest:
    """A request whose body was read whole: what a route handler is given."""

    scope: Message
    body: bytes
    request_id: str
    started: float
    params: dict[str, str] = field(default_factory=dict)  # the route's path parameters

    @property
    def method(self) -> str:
        """The request's method, as sent (upper case)."""
        return str(self.scope["method"])

    def header(self, name: bytes) -> str:
        """A request header's value (repeated ones joined by commas); "" if absent."""
        return header(self.scope, name)


def header(scope: Message, name: bytes) -> str:
    """A request header's value, repeated ones joined by commas as in the WSGI environ; "" if absent."""
    values = [value.decode("latin-1") for key, value in scope["headers"] if key == name]
    return ",".join(values)


async def send_reply(send: Send, reply: Reply, close: bool = False) -> None:
    """Sends a whole answer; `close` asks the server to close the connection after it."""
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


async def read_body(receive: Receive, limit: int | None = None, held: Any = None) -> bytes:
    """Reads the request body to its end, to the client's disconnect, or past `limit` bytes.

    `held` (a body budget's share, for a body of unknown length) takes each chunk as it arrives, and
    raises BodyBudgetExceeded when one does not fit.
    """
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: what came is all there is
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if held is not None and not held.take(len(chunks[-1])):
            raise BodyBudgetExceeded
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
