"""uvicorn's HTTP protocol (httptools) with a bound on the request head and errors in our JSON shape.

gunicorn refused request lines over 4 KiB and header fields over 8 KiB; httptools buffers a head
however long it grows, so a client could fill a worker's memory with one endless header. Here a
head (request line and headers) beyond REQUEST_HEAD_MAX_BYTES is refused with a 431, and a request
httptools cannot parse gets its 400; both in the error shape of every other answer, then closed.
"""

from __future__ import annotations

import uuid

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from werkzeug.http import HTTP_STATUS_CODES

from flight_delay.api.errors import error_body
from flight_delay.api.security import JSON_HEADERS

# Far above what this API's requests carry (well under 2 KiB), far below what hurts a worker.
REQUEST_HEAD_MAX_BYTES = 64 * 1024
# After a refusal, how long what the client still sends is read and dropped before closing: closing
# with unread bytes makes the kernel reset the connection, and the client would lose the answer.
LINGER_SECONDS = 2.0


class HeadTooLarge(Exception):
    """Raised from a parser callback: httptools stops and uvicorn answers through send_400_response."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol counting each request head's bytes and refusing it past the limit."""

    # The head's parsed bytes (request target, header lines), counted as httptools hands them over.
    head_bytes = 0
    # Bytes received while a head is unfinished (httptools buffers a header until its line ends);
    # None between a complete head and the next request's first byte.
    fed_bytes: int | None = 0
    head_too_large = False
    refused = False

    def data_received(self, data: bytes) -> None:
        """Feeds the parser; bytes that leave the head unfinished count too (httptools buffers them)."""
        if self.refused:  # answered already: the rest is dropped until the connection closes
            return
        super().data_received(data)
        if self.fed_bytes is None or self.refused or self.transport.is_closing():
            return
        self.fed_bytes += len(data)
        if self.fed_bytes > REQUEST_HEAD_MAX_BYTES:
            self.head_too_large = True
            self.send_400_response("")

    def on_message_begin(self) -> None:
        """A new request: its head starts counting from zero."""
        self.head_bytes = self.fed_bytes = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        """Counts the request target (in pieces as it arrives)."""
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        """Counts one header line."""
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        """The head is whole: the body and what follows are not the head's."""
        self.fed_bytes = None
        super().on_headers_complete()

    def _count(self, size: int) -> None:
        """Adds to the head's bytes; stops the parser once they pass the limit."""
        self.head_bytes += size
        if self.head_bytes > REQUEST_HEAD_MAX_BYTES:
            self.head_too_large = True
            raise HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        """Refuses a request the parser stopped on: a 431 for a head too large, else a 400."""
        if self.head_too_large:
            self.logger.warning("Refused a request head over %d bytes.", REQUEST_HEAD_MAX_BYTES)
            message = f"The request line and headers are larger than {REQUEST_HEAD_MAX_BYTES} bytes."
            self.refuse(431, "request_header_fields_too_large", message)
        else:
            self.refuse(400, "bad_request", msg)

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answers with an error outside any request (no app involved), then closes the connection."""
        request_id = uuid.uuid4().hex
        body = orjson.dumps(error_body(status, code, message, None, request_id)) + b"\n"
        reason = HTTP_STATUS_CODES.get(status, "Error").encode()
        head = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("x-request-id", request_id),
            ("cache-control", "no-store"),
            *((name.lower(), value) for name, value in JSON_HEADERS),
            ("connection", "close"),
        ]
        head += [f"{name}: {value}\r\n".encode("latin-1") for name, value in headers]
        self.transport.write(b"".join(head) + b"\r\n" + body)
        self.refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()  # the answer is whole: the client may stop sending and read it
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
