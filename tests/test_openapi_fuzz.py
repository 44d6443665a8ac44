"""Schemathesis fuzzes every operation of the real server from its own /openapi.json.

Against `flight-delay serve` on 127.0.0.1 (gunicorn, 2 workers) rather than the WSGI app in-process,
so what is checked is what clients get: gunicorn's HTTP parsing, the real headers and content types.
A model is loaded first, so /model/predict/ really predicts and writes the history. The server runs
as strict as it gets (reading and predicting each need a token: issue 26): every case carries the
admin token, and schemathesis' ignored_auth check sends each operation that documents a security
requirement without a token and with a wrong one, expecting the 401.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from schemathesis import Case, CheckContext, Response

import tests.schemathesis_hooks  # noqa: F401  (registers its filter_failure hook)
from tests.access_roles import ROLES
from tests.contracts import assert_error_shape, assert_security_headers
from tests.factories import ADMIN_HEADERS
from tests.servers import RunningServer, serve_with_model

pytestmark = pytest.mark.slow

# Per operation, for the fuzzing phase (the examples and coverage phases add their own cases).
MAX_EXAMPLES = 100
CHECKS = ["all"]


@pytest.fixture(scope="module")
def fuzzed_server(
    tmp_path_factory: pytest.TempPathFactory,
    module_database_url: str,
    model_files: Callable[[int], Path],
) -> Iterator[RunningServer]:
    """A real server with the tiny model loaded, its reads and predictions behind their tokens."""
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    strict = {name: str(value).lower() for name, value in ROLES.items()} | {
        "ML_API_PREDICT_NEEDS_TOKEN": "true"
    }
    with serve_with_model(data_dir, module_database_url, model_files(0), **strict) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: RunningServer) -> schemathesis.BaseSchema:
    """The server's own OpenAPI document, set up for bounded, repeatable fuzzing of that server."""
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json", timeout=30)
    schema.config.update(base_url=fuzzed_server.url, headers=ADMIN_HEADERS, request_timeout=60)
    schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    schema.config.checks.update(included_check_names=CHECKS)
    return schema


@pytest.fixture
def fuzzing(fuzzed_server: RunningServer) -> Iterator[RunningServer]:
    """The server under fuzzing; once every operation is fuzzed, checks what the fuzzing left."""
    yield fuzzed_server
    history = requests.get(
        f"{fuzzed_server.url}/model/history/?page_size=1", headers=ADMIN_HEADERS, timeout=30
    ).json()
    assert history["total"] > 0, "no fuzzed flight reached the model"
    assert "Traceback" not in fuzzed_server.log()


def conforms_to_contracts(ctx: CheckContext, response: Response, case: Case) -> None:
    """Every answer has the security headers; every 4xx/5xx the one error shape, or its protocol's."""
    assert_security_headers({name: values[0] for name, values in response.headers.items()})
    if response.status_code < 400:
        return
    if case.path.startswith("/v2"):
        assert set(response.json()) == {"error"}, response.text  # the Open Inference Protocol's
    elif case.path in MLFLOW_PATHS:
        if response.status_code != 415:  # MLflow's 415 is plain text
            assert set(response.json()) == {"error_code", "message"}, response.text
    else:
        assert_error_shape(response.status_code, response.json())


MLFLOW_PATHS = ("/ping", "/version", "/invocations")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Case, fuzzing: RunningServer) -> None:
    case.call_and_validate(additional_checks=[conforms_to_contracts])
