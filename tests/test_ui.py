"""The page at /ui/ in a real browser (headless Debian Chromium) against a real gunicorn on 127.0.0.1.

Predictions sent with known X-Request-ID values appear in its table, paging and filters work, a row
opens its input and output from the keyboard, the model and its monitoring are shown, the page meets
no CSP violation and logs no error, and a server without a model gets the API's own message. The page
reads the API, which behaves the same on both backends: these run once, in the SQLite pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from flight_delay.features import CONTEXT_NAMES
from tests.browser import chromium, open_page, problems, wait_ready
from tests.factories import ADMIN_HEADERS, minimal_flight
from tests.servers import RunningServer, serve, serve_with_model

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SENT = 45  # single-flight predictions, request ids ui-000 .. ui-044: three pages of 20


def predict(url: str, request_id: str, flight: dict[str, Any]) -> dict[str, Any]:
    """Sends one prediction with a known request id and returns the answer."""
    response = requests.post(
        f"{url}/model/predict/", json=flight, headers={"X-Request-ID": request_id}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """A served model with SENT predictions, the even ones with an actual delay."""
    data_dir = tmp_path_factory.mktemp("ui") / "data"
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=1) as running:
        answers = [
            predict(running.url, f"ui-{i:03d}", minimal_flight(dep_delay=float(i))) for i in range(SENT)
        ]
        actuals = [
            {"history_id": a["predictions"][0]["history_id"], "arr_delay": 2.0 * i}
            for i, a in enumerate(answers)
            if i % 2 == 0
        ]
        posted = requests.post(
            f"{running.url}/model/actuals/", json={"actuals": actuals}, headers=ADMIN_HEADERS, timeout=30
        )
        assert posted.status_code == 200, posted.text
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module, 1280 px wide."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser: WebDriver, server: RunningServer) -> Iterator[WebDriver]:
    """The browser, checked after each test: no CSP violation, no error, no console warning."""
    problems(browser)  # forget what an earlier test left
    yield browser
    assert problems(browser) == []


def row_ids(driver: WebDriver) -> list[int]:
    """The history ids of the table's rows, top to bottom (read in one go: the page may replace them)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#history-table tbody tr')].map((r) => Number(r.dataset.id))"
    )


def request_ids(driver: WebDriver) -> list[str]:
    """The request ids of the table's rows, top to bottom."""
    cells = "#history-table tbody td:nth-child(3)"
    return driver.execute_script(
        f"return [...document.querySelectorAll('{cells}')].map((c) => c.textContent)"
    )


def wait_rows(driver: WebDriver, expected: Callable[[list[int]], bool]) -> list[int]:
    """Waits until the table's rows satisfy `expected` (a page being replaced), and returns their ids."""
    WebDriverWait(driver, 30).until(lambda d: expected(row_ids(d)))
    return row_ids(driver)


def test_the_history_shows_the_predictions_newest_first_a_page_at_a_time(
    page: WebDriver, server: RunningServer
) -> None:
    open_page(page, f"{server.url}/ui/?page_size=20")

    first = row_ids(page)
    assert len(first) == 20
    assert first == sorted(first, reverse=True)
    assert request_ids(page)[:3] == ["ui-044", "ui-043", "ui-042"]
    assert "of 45" in page.find_element(By.ID, "history-status").text

    page.find_element(By.ID, "history-next").click()
    second = wait_rows(page, lambda ids: bool(ids) and ids[0] < first[-1])
    assert second == [first[-1] - 1 - i for i in range(20)]
    page.find_element(By.ID, "history-next").click()
    third = wait_rows(page, lambda ids: bool(ids) and ids[0] < second[-1])
    assert len(third) == 5
    assert page.find_element(By.ID, "history-next").get_attribute("disabled") == "true"

    page.find_element(By.ID, "history-prev").click()
    assert wait_rows(page, lambda ids: ids == second) == second


def test_a_request_id_filter_finds_its_prediction(page: WebDriver, server: RunningServer) -> None:
    open_page(page, f"{server.url}/ui/")
    field = page.find_element(By.ID, "filter-request-id")
    field.send_keys("ui-007", Keys.ENTER)

    wait_rows(page, lambda ids: len(ids) == 1)
    assert request_ids(page) == ["ui-007"]
    assert "request_id=ui-007" in page.current_url  # the filter is in the address: a link keeps it


def test_the_model_version_and_its_card_are_shown(page: WebDriver, server: RunningServer) -> None:
    model = requests.get(f"{server.url}/model/", timeout=30).json()
    open_page(page, f"{server.url}/ui/")

    assert page.find_element(By.ID, "model-version").text == model["version"]
    assert page.find_element(By.ID, "model-kind").text == model["kind"]
    metrics = page.find_element(By.ID, "model-metrics").text
    assert f"{model['metrics']['test']['mae']:.2f}" in metrics
    assert "baseline: train_median" in metrics
    assert "sched_dep_time" in page.find_element(By.ID, "model-card-facts").text


def test_a_row_opens_its_input_and_output_from_the_keyboard(page: WebDriver, server: RunningServer) -> None:
    open_page(page, f"{server.url}/ui/?request_id=ui-003")
    row = page.find_element(By.CSS_SELECTOR, "#history-table tbody tr")
    row.send_keys(Keys.ENTER)

    dialog = page.find_element(By.ID, "detail")
    WebDriverWait(page, 10).until(lambda _: dialog.get_attribute("open") is not None)
    shown_input = json.loads(page.find_element(By.ID, "detail-input").text)
    output = json.loads(page.find_element(By.ID, "detail-output").text)
    assert shown_input == minimal_flight(dep_delay=3.0)
    assert output["request_id"] == "ui-003"
    assert output["id"] == int(row.get_attribute("data-id"))
    assert isinstance(output["arr_delay"], float)

    page.switch_to.active_element.send_keys(Keys.ESCAPE)
    WebDriverWait(page, 10).until(lambda _: dialog.get_attribute("open") is None)
    assert page.switch_to.active_element == row  # focus goes back to the row


def test_live_accuracy_and_drift_are_charted(page: WebDriver, server: RunningServer) -> None:
    open_page(page, f"{server.url}/ui/")

    assert page.find_elements(By.CSS_SELECTOR, "#accuracy-chart svg circle.point")
    assert page.find_elements(By.CSS_SELECTOR, "#accuracy-chart svg line.reference")
    bars = page.find_elements(By.CSS_SELECTOR, "#drift-chart svg rect.bar")
    model = requests.get(f"{server.url}/model/", timeout=30).json()
    report = requests.get(f"{server.url}/model/monitoring/", timeout=30).json()
    flight_features = [n for n in model["contract"]["feature_names"] if n not in CONTEXT_NAMES]
    # Nothing posted: no prediction had context, so the flight's features and the prediction are compared.
    assert list(report["drift"]) == [*flight_features, "prediction"]
    assert len(bars) == len(flight_features) + 1
    assert "scored with context" in page.find_element(By.ID, "drift-note").text  # and says why
    labels = page.execute_script(
        "return [...document.querySelectorAll('#drift-chart svg text')].map((t) => t.textContent)"
    )
    assert "month" not in labels
    assert "prediction" in labels
    assert page.find_elements(By.CSS_SELECTOR, "#drift-chart svg line.threshold")
    compared = page.find_element(By.ID, "drift-compared").text
    assert compared.startswith("Compares all 7 days: ")
    assert (
        "with the model's training profile of its features (322 flights from 2013-01-01 to 2013-10-28"
        in compared
    )
    table = page.find_element(By.ID, "accuracy-table").get_attribute("textContent")
    assert "45" in table  # today's predictions
    assert "23" in table  # of which with an actual


def test_the_page_fits_a_phone(page: WebDriver, server: RunningServer) -> None:
    page.set_window_size(390, 844)
    try:
        open_page(page, f"{server.url}/ui/")
        assert page.execute_script("return window.innerWidth") <= 400
        overflow = page.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{overflow} px wider than the phone"
    finally:
        page.set_window_size(1280, 1000)


def test_the_page_answers_with_its_own_strict_policy(server: RunningServer) -> None:
    response = requests.get(f"{server.url}/ui/", timeout=30)

    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy
    assert "unsafe" not in policy
    assert "Authorization" not in response.text
    assert "test-admin-token" not in response.text


def test_without_a_model_the_page_shows_the_apis_message(
    tmp_path: Path, database_url: str, browser: WebDriver
) -> None:
    with serve(tmp_path / "data", database_url, workers=1) as empty:
        message = requests.get(f"{empty.url}/model/", timeout=30).json()["message"]
        problems(browser)
        open_page(browser, f"{empty.url}/ui/")
        wait_ready(browser)

        error = browser.find_element(By.ID, "model-error")
        assert error.is_displayed()
        assert message in error.text
        assert "503 model_not_loaded" in error.text
        assert "No prediction matches" in browser.find_element(By.ID, "history-status").text
        # The one thing logged is the browser noting the API's 503 itself; the page met no other problem.
        logged = problems(browser)
        assert all("/model/" in str(entry) and "503" in str(entry) for entry in logged), logged


def test_the_watch_sees_a_violation(browser: WebDriver, server: RunningServer) -> None:
    # Control: an inline script and a style attribute added to the page are refused and reported.
    open_page(browser, f"{server.url}/ui/")
    problems(browser)
    browser.execute_script(
        "const s = document.createElement('script'); s.textContent = 'window.ran = 1';"
        "document.body.append(s); document.body.setAttribute('style', 'color: red');"
    )

    WebDriverWait(browser, 10).until(lambda d: d.execute_script("return window.__problems.length") >= 2)
    assert browser.execute_script("return window.ran") is None
    found = " ".join(map(str, problems(browser)))
    assert "CSP script-src" in found
    assert "CSP style-src" in found
