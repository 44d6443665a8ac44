"""uvicorn's httptools protocol, which uvicorn_protocol.py's class extends, and the state it reads.

What is used:
- `HttpToolsProtocol` (uvicorn.protocols.http.httptools_impl): subclassed, overriding asyncio's
  Protocol methods, httptools' parser callbacks (OVERRIDDEN_CALLBACKS) and two methods of uvicorn's
  own: `send_400_response`, which uvicorn calls when the parser fails (an exception raised in a
  parser callback included), and `on_response_complete`, which a request's cycle calls once its
  answer is out;
- the protocol's attributes (INHERITED_ATTRIBUTES): `transport`, `loop` and `logger`, read by the
  subclass directly, and `cycle` (the latest request's RequestResponseCycle), `pipeline` (a deque of
  `(cycle, app)` requests queued behind it, next on the left), `flow` (FlowControl: `read_paused`,
  `resume_reading()`) and `server_state.default_headers`, read only through the functions below;
- a cycle's `response_started`, `response_complete`, `disconnected`, `waiting_for_100_continue`
  and `message_event`, likewise.

Why no public API does it: uvicorn's public settings bound neither a request head's size nor the
time it takes to arrive, and answer a parser error with a plain-text 400; its `http` setting takes
a protocol class, but the only one that parses with httptools is this one, whose request cycle and
pipelining must be followed to answer a refusal in order after the requests before it.

What breaks if it changes: a renamed method is no longer called (a refusal in uvicorn's plain text,
or a head left unbounded), a renamed attribute raises AttributeError in the middle of a connection
(the worker logs it and drops the connection). tests/test_compat.py checks every name here on a
real protocol, and tests/test_http_protocol.py the behaviour end to end.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["HttpToolsProtocol"]

# httptools' parser callbacks and uvicorn's own methods the subclass overrides (each calls super()).
OVERRIDDEN_CALLBACKS = (
    "on_message_begin",
    "on_url",
    "on_header",
    "on_headers_complete",
    "on_body",
    "on_message_complete",
    "send_400_response",
    "on_response_complete",
)
# The protocol's attributes the subclass reads itself; the others only through the functions below.
INHERITED_ATTRIBUTES = ("transport", "loop", "logger")
CYCLE_ATTRIBUTES = (
    "response_started",
    "response_complete",
    "disconnected",
    "waiting_for_100_continue",
    "message_event",
)


def latest_cycle(protocol: HttpToolsProtocol) -> Any:
    """The cycle of the latest request whose head was read, None before the first."""
    return protocol.cycle


def set_latest_cycle(protocol: HttpToolsProtocol, cycle: Any) -> None:
    """Makes `cycle` the latest request again (after the one after it was dropped)."""
    protocol.cycle = cycle


def latest_request_unanswered(protocol: HttpToolsProtocol) -> bool:
    """Tells whether the latest request's answer is not yet all sent."""
    cycle = protocol.cycle
    return cycle is not None and not cycle.response_complete


def requests_queued(protocol: HttpToolsProtocol) -> bool:
    """Tells whether pipelined requests wait for the one in progress to be answered."""
    return bool(protocol.pipeline)


def drop_latest_if_queued(protocol: HttpToolsProtocol) -> bool:
    """Removes the latest request from the queue when it is there, never started; says if it was."""
    if protocol.pipeline and protocol.pipeline[0][0] is protocol.cycle:
        protocol.pipeline.popleft()
        return True
    return False


def response_started(cycle: Any) -> bool:
    """Tells whether the app began answering the request."""
    return cycle.response_started


def disconnect_app(cycle: Any) -> None:
    """Tells the request's app the client is gone: its receive() returns http.disconnect."""
    cycle.disconnected = True
    cycle.waiting_for_100_continue = False
    cycle.message_event.set()


def reading_paused(protocol: HttpToolsProtocol) -> bool:
    """Tells whether uvicorn stopped reading the connection (to hold back pipelined requests)."""
    return protocol.flow.read_paused


def resume_reading(protocol: HttpToolsProtocol) -> None:
    """Reads the connection again if uvicorn had paused it."""
    protocol.flow.resume_reading()


def default_headers(protocol: HttpToolsProtocol) -> list[tuple[bytes, bytes]]:
    """The headers uvicorn adds to every answer (date, and server unless turned off)."""
    return protocol.server_state.default_headers
