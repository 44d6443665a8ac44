"""The page signs in, in a real browser (headless Debian Chromium), against a production gunicorn.

Reading needs a reader token there: the page asks for one on the API's 401, keeps it in the tab's
sessionStorage (no cookie), sends it as Authorization, shows the records; a wrong token brings the form
back saying why; a predict token's sections say they need a reader token; a reader finds nothing on
the page that changes the service (it sends GETs only); signing out forgets the token. The strict
policy holds throughout (no violation, no script error). Once, in the SQLite pass, as test_ui.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from tests.access_roles import PREDICT_TOKEN, READER_HEADERS, READER_TOKEN, ROLES
from tests.browser import chromium, open_page, problems, wait_ready
from tests.factories import minimal_flight
from tests.servers import RunningServer, serve_with_model

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SECTIONS = ("model-error", "history-error", "versions-error", "monitoring-error")
REFUSED = re.compile(r"status of 40[13]")  # the browser's own note of a refused call: what the page shows


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, module_database_url: str, model_files: Callable[[int], Path]
) -> Iterator[RunningServer]:
    """A production server with a reader and a predict token, a model and three predictions."""
    data_dir = tmp_path_factory.mktemp("ui-access") / "data"
    env = {name: str(value).lower() for name, value in ROLES.items()} | {"FLIGHT_DELAY_ENV": "production"}
    with serve_with_model(data_dir, module_database_url, model_files(0), workers=1, **env) as running:
        for i in range(3):
            answer = requests.post(
                f"{running.url}/model/predict/",
                json=minimal_flight(dep_delay=float(i)),
                headers={"X-Request-ID": f"signed-{i}"},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    with chromium() as driver:
        yield driver


@pytest.fixture
def page(browser: WebDriver, server: RunningServer) -> Iterator[WebDriver]:
    """The page opened signed out (its tab's sessionStorage emptied); after the test, no problem but the
    refused calls the page showed."""
    open_page(browser, f"{server.url}/ui/")
    browser.execute_script("sessionStorage.clear()")
    reload(browser, lambda: browser.refresh())
    problems(browser)
    yield browser
    unexpected = [entry for entry in problems(browser) if not REFUSED.search(str(entry))]
    assert unexpected == []


def reload(driver: WebDriver, action: Callable[[], Any]) -> None:
    """Does what reloads the page, and waits until the new page has loaded everything."""
    old = driver.find_element(By.TAG_NAME, "html")
    action()
    WebDriverWait(driver, 30).until(staleness_of(old))
    wait_ready(driver)


def sign_in(driver: WebDriver, token: str) -> None:
    """Types the token into the form and signs in (the page reloads with it)."""
    field = driver.find_element(By.ID, "signin-token")
    field.send_keys(token)
    reload(driver, lambda: driver.find_element(By.ID, "signin-submit").click())


def stored_token(driver: WebDriver) -> str | None:
    """The token the tab keeps."""
    return driver.execute_script("return sessionStorage.getItem('flight-delay.token')")


def shown(driver: WebDriver, element_id: str) -> bool:
    """Whether the element is displayed."""
    return driver.find_element(By.ID, element_id).is_displayed()


def test_signing_in_shows_the_records_with_the_token_kept_in_the_tab(
    page: WebDriver, server: RunningServer
) -> None:
    assert shown(page, "signin")
    assert "needs a token to read" in page.find_element(By.ID, "signin-message").text
    assert "Sign in with a reader token" in page.find_element(By.ID, "history-error").text
    assert not page.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")

    sign_in(page, READER_TOKEN)

    request_ids = [
        cell.text for cell in page.find_elements(By.CSS_SELECTOR, "#history-table tbody td:nth-child(3)")
    ]
    assert request_ids == ["signed-2", "signed-1", "signed-0"]
    model = requests.get(f"{server.url}/model/", headers=READER_HEADERS, timeout=30).json()
    assert page.find_element(By.ID, "model-version").text == model["version"]
    assert page.find_elements(By.CSS_SELECTOR, "#audit-table tbody tr")
    assert not shown(page, "signin")
    assert shown(page, "signed-in")
    assert not any(shown(page, section) for section in SECTIONS)
    assert stored_token(page) == READER_TOKEN
    assert page.execute_script("return document.cookie") == ""
    assert READER_TOKEN not in page.current_url


def test_a_wrong_token_brings_the_form_back_saying_why(page: WebDriver) -> None:
    sign_in(page, "not-a-token-of-this-server")

    assert shown(page, "signin")
    assert "That token was refused (401)" in page.find_element(By.ID, "signin-message").text
    assert stored_token(page) is None
    assert "401 unauthorized" in page.find_element(By.ID, "history-error").text


def test_a_predict_token_is_told_its_sections_need_a_reader_token(page: WebDriver) -> None:
    sign_in(page, PREDICT_TOKEN)

    for section in ("model-error", "history-error", "versions-error"):
        text = page.find_element(By.ID, section).text
        assert text.startswith("Needs a reader token:"), (section, text)
        assert "403 forbidden" in text
    assert stored_token(page) == PREDICT_TOKEN  # a right token of another role: kept, not asked again
    assert not shown(page, "signin")


def test_a_reader_finds_no_admin_action_and_the_page_sends_gets_only(
    page: WebDriver, server: RunningServer
) -> None:
    before = server.log().count("\n")
    sign_in(page, READER_TOKEN)

    buttons = {button.get_attribute("id") for button in page.find_elements(By.TAG_NAME, "button")}
    assert buttons == {
        "signin-submit",
        "signout",
        "filter-apply",
        "filter-reset",
        "history-first",
        "history-prev",
        "history-next",
        "detail-close",
    }
    methods = re.findall(r'"([A-Z]+) /', "\n".join(server.log().splitlines()[before:]))
    assert methods
    assert set(methods) == {"GET"}


def test_signing_out_forgets_the_token(page: WebDriver) -> None:
    sign_in(page, READER_TOKEN)

    reload(page, lambda: page.find_element(By.ID, "signout").click())

    assert stored_token(page) is None
    assert shown(page, "signin")
    assert "Signed out" in page.find_element(By.ID, "signin-message").text
    assert not page.find_elements(By.CSS_SELECTOR, "#history-table tbody tr")
    assert "Sign in with a reader token" in page.find_element(By.ID, "history-error").text
