"""Calls into the ASGI app the workers run, in process, as uvicorn would: a scope, a body, the answer."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Answer:
    """What a client receives: status, headers (names lower-cased, as uvicorn sends them), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A response header's value (the first), or None."""
        return next((value for key, value in self.headers if key == name.lower()), None)


def request(
    method: str,
    path: str,
    body: Any = None,
    content_type: str | None = None,
    chunked: bool = False,
    **headers: str,
) -> dict[str, Any]:
    """A request: a JSON body unless given as bytes, the content type JSON's unless given."""
    data = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
    if content_type is None and body is not None and not isinstance(body, bytes):
        content_type = "application/json"
    return {
        "method": method,
        "path": path,
        "data": data,
        "content_type": content_type,
        "chunked": chunked,
        "headers": headers,
    }


def asgi_scope(sent: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The HTTP scope uvicorn builds for the request, and its body."""
    path, _, query = sent["path"].partition("?")
    data = sent.get("data", b"")
    headers = [(name.lower().encode(), value.encode()) for name, value in sent["headers"].items()]
    headers += [(name.lower().encode(), value.encode()) for name, value in sent.get("raw_headers", [])]
    if sent.get("content_type"):
        headers.append((b"content-type", sent["content_type"].encode()))
    if sent.get("chunked"):
        headers.append((b"transfer-encoding", b"chunked"))
    elif "content_length" in sent:  # what the head declares, whatever the body will be
        headers.append((b"content-length", str(sent["content_length"]).encode()))
    elif data or sent["method"] == "POST":
        headers.append((b"content-length", str(len(data)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": sent["method"],
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    return scope, data


async def call(app: Any, sent: dict[str, Any]) -> Answer:
    """Sends one request through the ASGI app as the server would, and collects the answer."""
    scope, data = asgi_scope(sent)
    messages = [{"type": "http.request", "body": data, "more_body": False}]
    replies: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        replies.append(message)

    await app(scope, receive, send)
    start = replies[0]
    headers = [(name.decode().lower(), value.decode()) for name, value in start["headers"]]
    return Answer(start["status"], headers, b"".join(m.get("body", b"") for m in replies[1:]))
