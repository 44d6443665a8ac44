"""The server stack alone: our gunicorn worker parsing the flight's JSON and answering a constant.

No Flask, no model, no database: served like ours (gunicorn, FlightDelayWorker: uvicorn on uvloop
and httptools, same number of workers), it shows the most requests per second this stack can answer
on this machine, the ceiling of any optimisation that keeps it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Message = MutableMapping[str, Any]


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """Reads the JSON body (for any path: readiness polls too) and answers one fixed prediction."""
    if scope["type"] != "http":
        return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    flight = orjson.loads(body) if body else {}
    data = orjson.dumps(
        {"model_version": "ceiling", "predictions": [{"history_id": 0, "arr_delay": float(len(flight))}]}
    )
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": data})
