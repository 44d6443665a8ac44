"""Security headers on every response, errors included: set once, in the app factory's after_request."""

from __future__ import annotations

import base64
import hashlib
import re

from flask import Response

from flight_delay.replies import JSON_HEADERS, SECURITY_HEADERS

# Swagger UI at /docs: its files come from this origin (swagger-ui-bundle), it fetches /openapi.json,
# its CSS draws icons from data: URIs and its components set inline styles. Its one inline script
# (flask-smorest's page template) is allowed by hash, so no other inline script can run.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self' {script_hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The page at /ui/: its script, stylesheet and icon are files of this origin (no inline script or style),
# it reads the API on this origin, its charts are SVG drawn by that script, and its filter form submits
# to itself.
UI_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def script_hash(source: str) -> str:
    """Returns the CSP source expression ('sha256-…') allowing one inline script."""
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def docs_policy(page: str) -> str:
    """Returns the policy of the Swagger UI page, allowing exactly the inline scripts it contains."""
    hashes = " ".join(script_hash(source) for source in INLINE_SCRIPT.findall(page))
    return DOCS_POLICY.format(script_hashes=hashes)


def secure(response: Response, page_policy: str | None = None) -> Response:
    """Adds the security headers; a page (/docs, /ui/) gets the policy it needs, everything else none."""
    if page_policy is not None:
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = page_policy
    elif "Content-Security-Policy" in response.headers:  # set by a view: ours replace its
        response.headers.update(JSON_HEADERS)
    else:
        response.headers.extend(JSON_HEADERS)  # the common case: appended, not searched for first
    return response
