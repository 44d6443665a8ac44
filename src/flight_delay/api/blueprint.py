"""The API's blueprint: strict JSON bodies, and every error status documented in the one error shape."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import flask
import marshmallow as ma
from flask_smorest import Blueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import UnsupportedMediaType

from flight_delay.api.schemas import ErrorSchema
from flight_delay.compat.flask_smorest_internals import move_documentation
from flight_delay.errors import MalformedBody

View = TypeVar("View", bound=Callable[..., Any])

# Statuses any operation may answer, whatever its own errors are.
INTERNAL_ERROR = {500: "Unexpected error; logged, answered without details"}
TOO_LARGE = {413: "The body is larger than MAX_REQUEST_BYTES"}


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, refusing bodies that are not JSON instead of reading them as empty."""

    def load_json(self, req: flask.Request, schema: ma.Schema) -> Any:
        """Parses the body as UTF-8 JSON (none: missing); another content type is a 415, bad JSON a 400."""
        # webargs' public hook for the "json" location, replacing its body in full: the default one
        # goes through two private methods (_raw_load_json, _handle_invalid_json_error).
        if not req.mimetype and not req.get_data(cache=True):  # no body at all: no arguments (optional)
            return core.missing
        if not is_json_request(req):
            raise UnsupportedMediaType(f"Send the body as application/json, not {req.mimetype or 'untyped'}.")
        try:
            return core.parse_json(req.get_data(cache=True))
        except json.JSONDecodeError as exc:
            if exc.doc == "":  # an empty body: the arguments are missing, as webargs says by default
                return core.missing
            raise MalformedBody(f"Invalid JSON body: {exc}.") from exc
        except UnicodeDecodeError as exc:
            raise MalformedBody(f"Invalid JSON body: {exc}.") from exc
        except RecursionError as exc:  # json.loads gives up on very deep nesting
            raise MalformedBody("Invalid JSON body: nested too deeply.") from exc
        except ValueError as exc:  # an integer longer than Python converts (sys.get_int_max_str_digits())
            raise MalformedBody("Invalid JSON body: a number has too many digits.") from exc


class ApiBlueprint(Blueprint):
    """flask-smorest's Blueprint with the strict JSON parser."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def error_responses(self, responses: Mapping[int, str]) -> Callable[[View], View]:
        """Documents each error status an operation answers, with its description, in the error shape."""

        def document(view: View) -> View:
            documented: Any = view
            for status, description in responses.items():
                document_status = self.alt_response(status, schema=ErrorSchema, description=description)
                documented = document_status(documented)
            # alt_response's wrapper only calls the view: keep the documentation it gathered, not the
            # pass-through layers every request would otherwise go through (one per status).
            move_documentation(documented, view)
            return view

        return document
