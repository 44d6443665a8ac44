"""What every response must carry, asserted the same way by the fuzz, property and header tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ERROR_FIELDS = {"status", "code", "message", "request_id"}
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}
JSON_POLICY = "default-src 'none'; frame-ancestors 'none'"


def assert_error_shape(status: int, body: Any) -> None:
    """Checks an error body is the one JSON error shape, its status the HTTP status."""
    assert isinstance(body, dict), body
    assert ERROR_FIELDS <= body.keys() <= {*ERROR_FIELDS, "errors"}, body
    assert body["status"] == status, body
    for text in ("code", "message", "request_id"):
        assert isinstance(body[text], str), body
        assert body[text], body
    assert isinstance(body.get("errors", {}), dict), body


def assert_security_headers(headers: Mapping[str, str], policy: str = JSON_POLICY) -> None:
    """Checks the security headers every answer carries (header names in any case)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    for name, value in SECURITY_HEADERS.items():
        assert lowered.get(name) == value, (name, lowered.get(name))
    assert lowered.get("content-security-policy") == policy, lowered.get("content-security-policy")
