"""What the OpenAPI document cannot say, told to schemathesis: the refusals that are the service being right.

JSON Schema judges each value alone, so three rules of the service have no spelling in the document,
and a request valid by it may still be refused, rightly (the document says each rule in words):

- POST /model/load/: whether the bytes are a model. The body is documented as a binary file; one
  that is not a model is a 400 `invalid_artifact`, one that cannot score a 422 `unusable_model`.
- GET /model/history/ and /model/monitoring/: `until` earlier than `since`. OpenAPI 3.0 relates no
  two parameters.
- The same: an instant outside years 1..9999 once in UTC, e.g. 0001-01-01T00:00:00+01:00
  (it depends on the time against the offset: no pattern short of thousands of cases says it);
  likewise a flight's `as_of` in POST /model/predict/.
- POST /flights/ and /weather/: a fact not yet known by the server's clock (a departure, a landing,
  a weather hour not over), a landing without its departure (arr_delay needs dep_delay and
  air_time), an observation off the hour in UTC, or local fields other than time_hour's in New York.
- POST /model/actuals/: a history_id that no recorded prediction has (422 `unknown_prediction`), and
  GET /model/monitoring/: a model_version never loaded (404 `unknown_model_version`): what exists is
  the database's to say. So too a model's life: a version never loaded (404, activating, replaying,
  in the traffic split), a replay id never made (404 `unknown_replay`), a rollback with no previous
  version (409), a canary or shadow of the active version (422 `invalid_traffic`); and POST
  .../replay's window as the history's, and a traffic change that sets neither part (one of two
  fields required: OpenAPI 3.0 has no word for it).
- The Open Inference Protocol's infer and MLflow's /invocations: the protocol's generic request is
  documented (tensors, DataFrames), not each flight field's rule over a tensor's data or a row, nor
  that every tensor's data fills its shape: such a request is the protocol's 400.

Only those refusals of schema-valid requests are dropped, and only when the request really breaks the
rule; any other failure stands. Imported by tests/test_openapi_fuzz.py; for the CLI:
`SCHEMATHESIS_HOOKS=tests.schemathesis_hooks schemathesis run --checks all URL/openapi.json`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import schemathesis
from schemathesis import Case, HookContext, Response
from schemathesis.core.failures import Failure
from schemathesis.openapi.checks import RejectedPositiveData

MODEL_REFUSALS = {400: "invalid_artifact", 422: "unusable_model"}
# The context rules' refusals (context/ingestion.py), by a part of their wording, per list posted.
CONTEXT_RULES = {
    "/flights/": ("flights", ("Needs dep_delay and air_time", "after the server's clock")),
    "/weather/": (
        "observations",
        ("Must be on the hour", "The hour is not over", "time_hour's New York local"),
    ),
}
UNKNOWN_RECORDS = {
    ("/model/actuals/", 422, "unknown_prediction"),
    ("/model/monitoring/", 404, "unknown_model_version"),
    ("/model/versions/{version}/activate", 404, "unknown_model_version"),
    ("/model/versions/{version}/replay", 404, "unknown_model_version"),
    ("/model/traffic", 404, "unknown_model_version"),
    ("/model/traffic", 422, "invalid_traffic"),
    ("/model/rollback", 409, "no_previous_version"),
    ("/model/replays/{replay_id}", 404, "unknown_replay"),
}
REPLAY = "/model/versions/{version}/replay"


@schemathesis.hook
def filter_failure(context: HookContext, failure: Failure, case: Case, response: Response) -> bool:
    """Keeps every failure but a schema-valid request refused for a rule the document cannot state."""
    if not isinstance(failure, RejectedPositiveData):
        return True
    return not is_inexpressible_refusal(case, response)


def is_inexpressible_refusal(case: Case, response: Response) -> bool:
    """Tells whether the response refuses the request for one of the rules above, rightly."""
    try:
        body = response.json()
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if case.path == "/model/load/":
        return MODEL_REFUSALS.get(response.status_code) == body.get("code")
    if case.path.endswith("/infer") or case.path == "/invocations":
        return response.status_code == 400
    if case.path in ("/model/history/", "/model/monitoring/") and response.status_code == 422:
        return refuses_only_the_window(case.query or {}, body.get("errors") or {})
    if case.path in CONTEXT_RULES and response.status_code == 422:
        return refuses_only_context_rules(case.path, body)
    if case.path == "/model/predict/" and response.status_code == 422:
        return refuses_only_as_of_range(case.body, body.get("errors") or {})
    if case.path == REPLAY and response.status_code == 422 and isinstance(case.body, dict):
        return refuses_only_the_window(case.body, body.get("errors") or {})
    if case.path == "/model/traffic" and response.status_code == 422 and body.get("code") == "invalid_input":
        return sets_nothing(case.body, body.get("errors") or {})
    return (case.path, response.status_code, body.get("code")) in UNKNOWN_RECORDS


def refuses_only_context_rules(path: str, body: dict[str, Any]) -> bool:
    """Tells whether every refusal of a post is one of the context rules the document cannot state."""
    key, wordings = CONTEXT_RULES[path]
    per_item = (body.get("errors") or {}).get(key)
    if not isinstance(per_item, dict) or not per_item:
        return False
    messages = [m for fields in per_item.values() for found in fields.values() for m in found]
    return all(isinstance(m, str) and any(part in m for part in wordings) for m in messages)


def refuses_only_as_of_range(sent: Any, errors: dict[str, Any]) -> bool:
    """True when every refusal is an `as_of` that UTC cannot express (a bare flight or a batch)."""
    flights = sent.get("flights") if isinstance(sent, dict) and "flights" in sent else [sent]
    per_flight = errors.get("flights") if "flights" in errors else {"0": errors}
    if not isinstance(per_flight, dict) or not per_flight or not isinstance(flights, list):
        return False
    for index, fields in per_flight.items():
        flight = flights[int(index)] if str(index).isdigit() and int(index) < len(flights) else None
        if set(fields) != {"as_of"} or not isinstance(flight, dict):
            return False
        if in_utc_range(instant(flight.get("as_of"))):
            return False
    return True


def sets_nothing(sent: Any, errors: dict[str, Any]) -> bool:
    """True when a traffic change names neither canary nor shadow, and that alone is refused."""
    return (
        isinstance(sent, dict)
        and "canary" not in sent
        and "shadow" not in sent
        and set(errors) == {"_schema"}
    )


def refuses_only_the_window(query: dict[str, Any], errors: dict[str, Any]) -> bool:
    """True when every field at fault is `since` or `until`, each really outside the rules above."""
    if not errors or not set(errors) <= {"since", "until"}:
        return False
    since, until = instant(query.get("since")), instant(query.get("until"))
    faults = {"since": not in_utc_range(since), "until": not in_utc_range(until) or is_before(until, since)}
    return all(faults[name] for name in errors)


def instant(value: Any) -> datetime | None:
    """Reads a date-time query value as the service does (None when absent or unreadable)."""
    try:
        return datetime.fromisoformat(str(value)) if value is not None else None
    except ValueError:
        return None


def in_utc_range(value: datetime | None) -> bool:
    """Whether an instant can be written in UTC within years 1..9999 (absent: nothing to check)."""
    try:
        return value is None or value.tzinfo is None or bool(value.astimezone(UTC))
    except OverflowError:
        return False


def is_before(until: datetime | None, since: datetime | None) -> bool:
    """Whether the window ends before it starts (False when either end is absent or unreadable)."""
    if until is None or since is None or not (in_utc_range(until) and in_utc_range(since)):
        return False
    return until < since
