"""Who may read and change, against a real `flight-delay serve` (gunicorn, uvicorn workers) on 127.0.0.1.

A production server with the admin token, a dashboard's reader token (`dash`) and a pricing service's
predict token (`pricing`): the history, monitoring, the card, the versions, the traffic split, the
replays and the audit (all the page reads) answer 401 without a token, 403 to the predict token and
200 to the reader; the reader may change nothing (403). No token, right or wrong, is ever in the
server's log (at DEBUG), an answer or the history. On both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.access_roles import AS, CHANGES, PREDICT_HEADERS, READER_HEADERS, READS, ROLES, TOKENS
from tests.contracts import assert_error_shape
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.servers import RunningServer, serve_with_model

pytestmark = pytest.mark.slow

# Wrong tokens a client might send: a real one cut short, lengthened, in another case, as Basic.
NEAR_MISSES = [TOKENS[1][:-1], TOKENS[1] + "x", TOKENS[2].upper()]


class Recorded:
    """Every answer the test got, so that it can look for a token in any of them."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[requests.Response] = []

    def ask(self, method: str, path: str, headers: dict[str, str], **kwargs: object) -> requests.Response:
        """One request to the server, its answer kept."""
        answer = requests.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)
        self.answers.append(answer)
        return answer

    def text(self) -> str:
        """Every answer's headers and body, as one text."""
        return "\n".join(f"{dict(a.headers)}\n{a.text}" for a in self.answers)


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """A production server (one worker) with the three roles' tokens, a model loaded, logging at DEBUG."""
    data_dir = tmp_path_factory.mktemp("access") / "data"
    env = {name: str(value).lower() for name, value in ROLES.items()}
    env |= {"FLIGHT_DELAY_ENV": "production", "LOG_LEVEL": "DEBUG"}
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=1, **env) as running:
        yield running


@pytest.fixture(scope="module")
def recorded(server: RunningServer) -> Recorded:
    """A client of the server that predicted three flights (no token: predicting is open by default)."""
    client = Recorded(server.url)
    for i in range(3):
        answer = client.ask("POST", "/model/predict/", {"X-Request-ID": f"access-{i}"}, json=minimal_flight())
        assert answer.status_code == 200, answer.text
    return client


@pytest.mark.parametrize("path", READS)
def test_reads_answer_401_without_a_token_403_to_predict_200_to_a_reader(
    recorded: Recorded, path: str
) -> None:
    answers = {who: recorded.ask("GET", path, headers) for who, headers in AS.items()}

    assert {who: answer.status_code for who, answer in answers.items()} == {
        "none": 401,
        "wrong": 401,
        "predict": 403,
        "reader": 200,
        "admin": 200,
    }
    assert answers["none"].headers["WWW-Authenticate"] == 'Bearer realm="flight-delay"'
    for who in ("none", "wrong", "predict"):
        assert_error_shape(answers[who].status_code, answers[who].json())
    assert answers["predict"].json()["code"] == "forbidden"


def test_a_reader_and_a_predict_token_change_nothing(
    recorded: Recorded, model_files: Callable[[int], Path]
) -> None:
    audit = recorded.ask("GET", "/model/audit/", READER_HEADERS).json()
    for headers in (READER_HEADERS, PREDICT_HEADERS):
        for method, path, body in CHANGES:
            answer = recorded.ask(method, path, headers, json=body)
            assert (answer.status_code, answer.json()["code"]) == (403, "forbidden"), (method, path)
        with model_files(1).open("rb") as handle:
            load = recorded.ask("POST", "/model/load/", headers, files={"file": handle})
        assert load.status_code == 403
    assert recorded.ask("POST", "/model/actuals/", {}, json=CHANGES[1][2]).status_code == 401
    assert recorded.ask("GET", "/model/audit/", READER_HEADERS).json() == audit


def test_no_token_is_in_the_log_an_answer_or_the_history(server: RunningServer, recorded: Recorded) -> None:
    for wrong in NEAR_MISSES:
        assert recorded.ask("GET", "/model/history/", {"Authorization": f"Bearer {wrong}"}).status_code == 401
    assert recorded.ask("GET", "/model/history/", {"Authorization": f"Basic {TOKENS[1]}"}).status_code == 401
    history = recorded.ask("GET", "/model/history/?page_size=500", READER_HEADERS)
    audit = recorded.ask("GET", "/model/audit/", ADMIN_HEADERS)

    assert history.json()["total"] >= 3
    assert audit.json()["events"][0]["by"] == "admin"
    log = server.log()
    assert '"GET /model/history/ HTTP/1.1" 401' in log  # the refusals were logged, by their access lines
    for token in (*TOKENS, *NEAR_MISSES):
        assert token not in log, "a token in the server's log"
        assert token not in recorded.text(), "a token in an answer"
