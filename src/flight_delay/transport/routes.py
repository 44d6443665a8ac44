"""Routes the transports answer on the event loop: a method, a path pattern, a handler, an error shape.

A transport module (native.py, v2.py, mlflow.py) lists its routes; the router (router.py) matches
them before anything goes to Flask. A handler is given the request, read whole, and the app's
services, and returns a Reply or raises a domain error, which the router renders in the route's
error shape (the one shape of this API, unless the protocol has its own).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from flight_delay.access import path_regex
from flight_delay.replies import ErrorStyle, Reply, native_style
from flight_delay.services import Services
from flight_delay.transport.http import HttpRequest

Handler = Callable[[HttpRequest, Services], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """One route: `{name}` in the pattern matches one path segment; a trailing slash is optional."""

    method: str
    pattern: str
    handler: Handler
    errors: ErrorStyle = native_style
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Compiles the pattern: each {name} a segment, the trailing slash optional (access.path_regex)."""
        object.__setattr__(self, "regex", path_regex(self.pattern))

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when the path is this route's; None when it is not."""
        found = self.regex.match(path)
        return None if found is None else found.groupdict()
