"""flask-smorest's internals used to document error responses without wrapping views (api/blueprint.py).

What is used: `_apidoc`, the dict flask-smorest's decorators (`Blueprint.alt_response` among them)
store on the function they return, and which `Blueprint.route` reads when it registers the view to
build the operation's OpenAPI document. `alt_response` returns a wrapper that only calls the view;
the documentation it gathered is moved onto the view itself and the wrappers dropped.

Why no public API does it: `alt_response` is the public way to document a response in the shape of
a schema, and it always wraps the view; `Blueprint.doc` does not wrap, but takes raw OpenAPI, not a
schema resolved the way alt_response resolves it. Kept, one pass-through call per documented status
would run on every request.

What breaks if it changes: if flask-smorest keeps its documentation elsewhere, the error statuses
vanish from /openapi.json (the API still answers them); if `alt_response`'s wrapper starts doing
more than calling the view, dropping it would skip that. tests/test_compat.py checks both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def move_documentation(documented: Callable[..., Any], view: Callable[..., Any]) -> None:
    """Gives `view` the OpenAPI documentation flask-smorest's decorators gathered on `documented`."""
    view._apidoc = documented._apidoc  # type: ignore[attr-defined]
