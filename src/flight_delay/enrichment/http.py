"""A JSON GET with timeouts, retries with backoff on 429/5xx, and secrets kept out of errors."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

import requests

SECRET_PARAMS = frozenset({"key", "apiToken"})
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class ApiError(RuntimeError):
    """An API answered with an error, or could not be reached after every attempt."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ApiError):
    """The API says the thing asked for does not exist (404)."""


def redacted_url(url: str, params: Mapping[str, Any]) -> str:
    """Renders the URL with its query, secrets replaced by ***."""
    shown = {k: ("***" if k in SECRET_PARAMS else v) for k, v in params.items()}
    return f"{url}?{urlencode(shown)}"


def retry_delay(response: requests.Response | None, attempt: int, backoff_s: float) -> float:
    """Waits what Retry-After asks (in seconds, capped), else exponential backoff."""
    header = response.headers.get("Retry-After") if response is not None else None
    if header and header.isdigit():
        return min(float(header), 60.0)
    return backoff_s * 2 ** (attempt - 1)


def get_json(
    session: requests.Session,
    url: str,
    params: Mapping[str, Any],
    *,
    timeout_s: float = 10.0,
    attempts: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> Any:
    """GETs JSON; retries 429, 5xx and network errors; 404 raises NotFound; other 4xx fail at once."""
    shown = redacted_url(url, params)
    last_problem = "no attempt made"
    for attempt in range(1, attempts + 1):
        response = None
        try:
            response = session.get(url, params=params, timeout=timeout_s)
        except (requests.ConnectionError, requests.Timeout) as exc:
            last_problem = type(exc).__name__
        else:
            if response.status_code == 200:
                return response.json()
            if response.status_code == 404:
                raise NotFound(f"404 from {shown}", 404)
            if response.status_code not in RETRY_STATUSES:
                raise ApiError(
                    f"{response.status_code} from {shown}: {response.text[:200]}", response.status_code
                )
            last_problem = f"status {response.status_code}"
        if attempt < attempts:
            sleep(retry_delay(response, attempt, backoff_s))
    raise ApiError(f"gave up on {shown} after {attempts} attempts ({last_problem})")
