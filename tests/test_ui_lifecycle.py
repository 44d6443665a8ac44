"""The page's versions section in a real browser: versions, the traffic split, replays and the audit.

A real gunicorn serves a model with a candidate stored, a replay done, a canary and a shadow set, all
through the API with the admin token; the page (read-only, no token) shows each, under its strict
policy, with no error. Once, in the SQLite pass, as test_ui.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from flight_delay.serving.lifecycle import canary_bucket, canary_share
from tests.browser import chromium, open_page, problems
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.servers import RunningServer, serve_with_model

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def call(method: str, url: str, **kwargs: Any) -> Any:
    """One admin call, checked; its JSON answer."""
    response = requests.request(
        method, url, headers={**ADMIN_HEADERS, "X-Reason": "ui test"}, timeout=60, **kwargs
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


@pytest.fixture(scope="module")
def lifecycle(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[tuple[RunningServer, dict[str, Any]]]:
    """A served model, 10 predictions with actuals, a candidate replayed, then canary 20% and shadow."""
    data_dir = tmp_path_factory.mktemp("ui-lifecycle") / "data"
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=1) as server:
        url = server.url
        answers = [
            call("POST", f"{url}/model/predict/", json=minimal_flight(dep_delay=float(i))) for i in range(10)
        ]
        actuals = [
            {"history_id": a["predictions"][0]["history_id"], "arr_delay": 3.0 * i}
            for i, a in enumerate(answers)
        ]
        call("POST", f"{url}/model/actuals/", json={"actuals": actuals})
        with model_files(1).open("rb") as handle:
            candidate = call("POST", f"{url}/model/load/?activate=false", files={"file": handle})["version"]
        replay = call("POST", f"{url}/model/versions/{candidate}/replay", json={})
        call(
            "PUT",
            f"{url}/model/traffic",
            json={"canary": {"version": candidate, "percent": 20}, "shadow": candidate},
        )
        time.sleep(0.5)  # past MODEL_REFRESH_MS: the next prediction is shadowed
        outside = next(f"ui-{i}" for i in range(1000) if canary_bucket(f"ui-{i}") >= canary_share(20))
        requests.post(
            f"{url}/model/predict/", json=minimal_flight(), headers={"X-Request-ID": outside}, timeout=30
        )
        wait_for_shadow_row(url, candidate)
        yield server, {"candidate": candidate, "replay": replay}


def wait_for_shadow_row(url: str, version: str) -> None:
    """Waits until the shadow's prediction is in the history (it is recorded after the answer)."""
    deadline = time.monotonic() + 30
    while not requests.get(f"{url}/model/history/?model_version={version}", timeout=30).json()["items"]:
        assert time.monotonic() < deadline, "the shadow recorded nothing"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    with chromium() as driver:
        yield driver


def texts(driver: WebDriver, selector: str) -> list[list[str]]:
    """The cells' text of a table's rows, read in one go."""
    rows = f"[...document.querySelectorAll('{selector} tbody tr')]"
    return driver.execute_script(f"return {rows}.map((r) => [...r.cells].map((c) => c.textContent))")


def test_the_page_shows_versions_split_replays_and_audit(
    browser: WebDriver, lifecycle: tuple[RunningServer, dict[str, Any]]
) -> None:
    server, made = lifecycle
    candidate, replay = made["candidate"], made["replay"]
    active = requests.get(f"{server.url}/model/", timeout=30).json()["version"]
    problems(browser)

    open_page(browser, f"{server.url}/ui/")

    versions = texts(browser, "#versions-table")
    assert [row[:4] for row in versions] == [
        [candidate[:12], "candidate", "20.0%", "shadow"],
        [active[:12], "active", "80.0%", "–"],
    ]
    split = browser.find_element(By.ID, "traffic-text").text
    assert f"canary {candidate[:12]} answers 20.0%" in split
    assert f"shadow {candidate[:12]} scores every prediction" in split
    replays = texts(browser, "#replays-table")
    assert replays[0][1] == candidate[:12]
    assert replays[0][3:6] == ["10", f"{replay['candidate']['mae']:.2f}", f"{replay['served']['mae']:.2f}"]
    audit = texts(browser, "#audit-table")
    assert [row[1] for row in audit] == ["shadow", "canary 20.0%", "upload", "activate", "upload"]
    assert {row[4] for row in audit} == {"admin"}
    assert audit[0][5] == "ui test"
    models = [row[3] for row in texts(browser, "#history-table")]
    assert f"{candidate[:12]} (shadow)" in models
    assert problems(browser) == []
