"""uvicorn's HTTP protocol (httptools) with the request head bounded in size and time, errors in our shape.

gunicorn refused request lines over 4 KiB and header fields over 8 KiB; httptools buffers a head
however long it grows, and uvicorn waits for it however long it takes. Here a head (request line
and headers; a chunked body's trailers alike) beyond REQUEST_HEAD_MAX_BYTES is refused with a 431,
one not complete within REQUEST_HEAD_TIMEOUT_SECONDS with a 408, and a request httptools cannot
parse with a 400: each in the error shape of every other answer, after the answers to the requests
before it on the connection (HTTP/1.1 answers in order), and the connection is then closed.

What is used: uvicorn's private HttpToolsProtocol, subclassed (its parser callbacks and two of its
methods overridden), and the protocol's state read through uvicorn_internals.py, which lists each name.

Why no public API does it: uvicorn's settings bound neither a request head's size nor the time it
takes, and answer a parser error in plain text; its `http` setting takes a protocol class, and the
only one parsing with httptools is this one.

What breaks if it changes: a renamed callback is no longer called (a head left unbounded, or a
refusal in uvicorn's plain text); tests/test_compat.py checks every name on a real protocol, and
tests/test_http_protocol.py the behaviour end to end.
"""

from __future__ import annotations

import asyncio
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES

from flight_delay.compat import uvicorn_internals
from flight_delay.compat.uvicorn_internals import HttpToolsProtocol
from flight_delay.replies import ErrorReply, render_error

# Far above what this API's requests carry (well under 2 KiB), far below what hurts a worker.
REQUEST_HEAD_MAX_BYTES = 64 * 1024
HEAD_TOO_LONG = f"The request line and headers are larger than {REQUEST_HEAD_MAX_BYTES} bytes."
# As gunicorn's limit_request_fields: each header costs far more in Python than its bytes.
REQUEST_HEADERS_MAX = 100
# From the connection (or the request's first byte) to the end of its head.
REQUEST_HEAD_TIMEOUT_SECONDS = 30.0
# After a refusal, how long what the client still sends is read and dropped before closing: closing
# with unread bytes makes the kernel reset the connection, and the client would lose the answer.
LINGER_SECONDS = 2.0


class HeadTooLarge(Exception):
    """Raised from a parser callback (with why): httptools stops, and uvicorn calls send_400_response."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol bounding each request head's bytes and time, refusing in our error shape."""

    # The head's parsed bytes (request target, header lines), counted as httptools hands them over.
    head_bytes = 0
    header_count = 0
    # Bytes received since the request began or its body last moved on: what httptools may be
    # holding unfinished (a header or trailer line); None between requests.
    unparsed_bytes: int | None = None
    reading_head = False
    head_too_large: str | None = None  # why, once a head was refused for its size
    previous_cycle: Any = None  # the request before the latest, to fall back on if that one is dropped
    head_timer: asyncio.TimerHandle | None = None
    refusal: bytes | None = None  # the refusal to send once the answers before it are out
    refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Starts the head timer: a connection that never sends a request is closed."""
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stops the head timer."""
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feeds the parser, counting the bytes that leave a request's head or trailers unfinished.

        Counted before the parser runs: its callbacks set the count back to zero where what came
        was a request's start (so a chunk counts only from there) or body bytes.
        """
        if self.refused:  # answered already: the rest is dropped until the connection closes
            return
        if self.unparsed_bytes is not None:
            self.unparsed_bytes += len(data)
        super().data_received(data)
        if self.refused or self.transport.is_closing():
            return
        if self.unparsed_bytes is None:
            if self.head_timer is None and not uvicorn_internals.latest_request_unanswered(self):
                self._arm_head_timer()  # bytes (blank lines) that begin no request: still on the clock
            return
        if self.unparsed_bytes > REQUEST_HEAD_MAX_BYTES:
            self.head_too_large = HEAD_TOO_LONG
            self.send_400_response("")

    def on_message_begin(self) -> None:
        """A new request: its head counts from zero, against a fresh clock."""
        self.head_bytes = self.unparsed_bytes = self.header_count = 0
        self.reading_head = True
        self._disarm_head_timer()
        self._arm_head_timer()
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        """Counts the request target (in pieces as it arrives)."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Counts one header line (a chunked body's trailers count afresh, in the same bounds)."""
        self.header_count += 1
        if self.header_count > REQUEST_HEADERS_MAX:
            self.head_too_large = f"The request has more than {REQUEST_HEADERS_MAX} header fields."
            raise HeadTooLarge(self.head_too_large)
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is whole: its clock stops; a chunked body's trailers count afresh."""
        self._disarm_head_timer()
        self.previous_cycle = uvicorn_internals.latest_cycle(self)
        super().on_headers_complete()  # may raise (a target uvicorn cannot read): still the head's fault
        self.head_bytes = self.unparsed_bytes = self.header_count = 0
        self.reading_head = False

    def on_body(self, body: bytes) -> None:
        """Body bytes are not the head's: the count starts again after them."""
        self.unparsed_bytes = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The request is whole: nothing is counted until the next one begins."""
        self.unparsed_bytes = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """Refuses a request the parser stopped on: a 431 for a head too large, else a 400."""
        if self.head_too_large:
            self.logger.warning("Refused a request head: %s", self.head_too_large)
            self.refuse(431, "request_header_fields_too_large", self.head_too_large)
        else:
            self.refuse(400, "bad_request", msg)

    def on_response_complete(self) -> None:
        """After each answer, sends a refusal that was waiting for it."""
        super().on_response_complete()
        self._send_refusal_when_due()

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answers with an error outside the app, in order after earlier answers, then closes."""
        self.refused = True
        self._disarm_head_timer()
        self.refusal = refusal_bytes(status, code, message, uvicorn_internals.default_headers(self))
        uvicorn_internals.resume_reading(self)  # paused for pipelining, maybe: what comes now is dropped
        if not self.reading_head and uvicorn_internals.latest_request_unanswered(self):
            # The parser failed in the body of the latest request.
            if uvicorn_internals.drop_latest_if_queued(self):  # queued, never started: dropped
                uvicorn_internals.set_latest_cycle(self, self.previous_cycle)
            else:  # in flight: its app sees a disconnect, the client this refusal
                cycle = uvicorn_internals.latest_cycle(self)
                uvicorn_internals.disconnect_app(cycle)
                if uvicorn_internals.response_started(cycle):  # no room left for an answer in order
                    self.transport.close()
                else:
                    self._write_refusal()
                return
        self._send_refusal_when_due()

    def _send_refusal_when_due(self) -> None:
        """Sends the refusal once every request before it on the connection is answered."""
        if self.refusal is None or self.transport.is_closing():
            return
        if uvicorn_internals.latest_request_unanswered(self) or uvicorn_internals.requests_queued(self):
            return
        self._write_refusal()

    def _write_refusal(self) -> None:
        """Writes the refusal and closes the connection once the client has had time to read it."""
        assert self.refusal is not None
        self.transport.write(self.refusal)
        self.refusal = None
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is whole: the client may stop sending and read it
        self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def _count(self, size: int) -> None:
        """Adds to the head's bytes; stops the parser once they pass the limit."""
        self.head_bytes += size
        if self.head_bytes > REQUEST_HEAD_MAX_BYTES:
            self.head_too_large = HEAD_TOO_LONG
            raise HeadTooLarge(self.head_too_large)

    def _arm_head_timer(self) -> None:
        """Starts the clock on the head being read (or awaited), unless it runs already."""
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(REQUEST_HEAD_TIMEOUT_SECONDS, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        """Stops the head's clock."""
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        """Closes a connection that sent nothing; refuses a head still unfinished with a 408."""
        self.head_timer = None
        if self.refused or self.transport.is_closing():
            return
        if uvicorn_internals.reading_paused(self):  # paused for pipelining: not the client's delay
            self._arm_head_timer()
            return
        if not self.reading_head:  # no request begun (keep-alive idling has uvicorn's own timer)
            self.transport.close()
            return
        message = f"The request line and headers did not arrive within {REQUEST_HEAD_TIMEOUT_SECONDS:.0f} s."
        self.refuse(408, "request_timeout", message)


def refusal_bytes(status: int, code: str, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 error answer in our error shape, with our headers, closing the connection."""
    reply = render_error(ErrorReply(status, code, message))
    reason = HTTP_STATUS_CODES.get(status, "Error").encode()
    head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    headers = [*reply.headers, ("connection", "close")]
    head += [f"{name.lower()}: {value}\r\n".encode("latin-1") for name, value in headers]
    return b"".join(head) + b"\r\n" + reply.body
