"""Many concurrent clients of a running server, and the history rows their predictions left behind."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import requests
from sqlalchemy import create_engine, select

from flight_delay.history.models import Prediction
from tests.factories import minimal_flight


class Recorded(NamedTuple):
    """What the history says about one prediction."""

    request_id: str
    model_version: str
    arr_delay: float


@dataclass(frozen=True)
class Outcome:
    """One request: its answer (status None when no HTTP answer came) and the run's marks around it."""

    request_id: str
    status: int | None
    body: Any
    marks_before_send: frozenset[str]
    marks_before_answer: frozenset[str]

    def kind(self) -> str:
        """Sums the outcome up: served, dropped (no HTTP answer), locked (a refusal), or what it was."""
        if self.status in (200, None):
            return "served" if self.status == 200 else "dropped"
        code, message = self.body.get("code"), self.body.get("message", "")
        if (self.status, code) == (503, "history_unavailable") and message.endswith("database is locked."):
            # SQLite's writer waited longer than SQLITE_BUSY_TIMEOUT_MS: refused, and recorded nothing.
            return "locked"
        if (self.status, code) == (503, "history_unavailable") and "history writer did not answer" in message:
            # The host's writer died holding the rows: not served; they may or may not be committed.
            return "writer lost"
        return f"{self.status} {self.body}"

    def served(self) -> dict[int, Recorded]:
        """The history rows this answer promises: history_id -> what must be recorded."""
        if self.status != 200:
            return {}
        version = self.body["model_version"]
        return {
            p["history_id"]: Recorded(self.request_id, version, p["arr_delay"])
            for p in self.body["predictions"]
        }


class Traffic:
    """Sends `total` one-flight predictions from `clients` threads while a disturbance runs beside them."""

    def __init__(self, url: str | Sequence[str], total: int, clients: int, prefix: str) -> None:
        # Several URLs (replicas): client i sends to urls[i % len(urls)].
        self.urls = [url] if isinstance(url, str) else list(url)
        self.url = self.urls[0]
        self.total = total
        self.clients = clients
        self.prefix = prefix
        self.outcomes: list[Outcome] = []
        self._numbers = itertools.count()
        self._marks: set[str] = set()
        self._answered = threading.Condition()

    def mark(self, name: str) -> None:
        """Notes that something happened; outcomes record which marks preceded them."""
        with self._answered:
            self._marks.add(name)

    def marks(self) -> frozenset[str]:
        """The marks made so far."""
        with self._answered:
            return frozenset(self._marks)

    def wait_for_answers(self, count: int) -> None:
        """Blocks until `count` requests have had their outcome."""
        with self._answered:
            self._answered.wait_for(lambda: len(self.outcomes) >= count)

    def run(self, disturbance: Callable[[Traffic], None]) -> float:
        """Runs the clients and the disturbance to completion; returns the wall time in seconds."""
        started = time.perf_counter()
        with ThreadPoolExecutor(self.clients + 1) as pool:
            futures = [pool.submit(self._client, self.urls[i % len(self.urls)]) for i in range(self.clients)]
            futures.append(pool.submit(disturbance, self))
            for future in futures:
                future.result()  # re-raises a client's or the disturbance's failure
        return time.perf_counter() - started

    def kinds(self) -> Counter[str]:
        """How many outcomes of each kind."""
        return Counter(outcome.kind() for outcome in self.outcomes)

    def served(self) -> dict[int, Recorded]:
        """Every history row the successful answers promise."""
        return {i: row for outcome in self.outcomes for i, row in outcome.served().items()}

    def _take(self) -> int | None:
        """Hands out the next request number, or None when all were sent."""
        number = next(self._numbers)
        return number if number < self.total else None

    def _client(self, url: str) -> None:
        """One client: a keep-alive session sending predictions to `url` until none are left."""
        with requests.Session() as session:
            while (number := self._take()) is not None:
                self._send(session, url, number)

    def _send(self, session: requests.Session, url: str, number: int) -> None:
        """Sends one prediction and records its outcome; a dropped connection is an outcome too."""
        request_id = f"{self.prefix}-{number}"
        before = self.marks()
        try:
            response = session.post(
                f"{url}/model/predict/",
                json=minimal_flight(dep_delay=float(number % 400)),
                headers={"X-Request-ID": request_id},
                timeout=60,
            )
            status, body = response.status_code, response.json()
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            status, body = None, None
        with self._answered:
            self.outcomes.append(Outcome(request_id, status, body, before, frozenset(self._marks)))
            self._answered.notify_all()


def recorded_predictions(database_url: str) -> dict[int, Recorded]:
    """Reads every history row straight from the database (the server has stopped)."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Prediction.id, Prediction.request_id, Prediction.model_version, Prediction.arr_delay)
            )
            return {row.id: Recorded(row.request_id, row.model_version, row.arr_delay) for row in rows}
    finally:
        engine.dispose()
