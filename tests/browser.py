"""Headless Debian Chromium under Selenium (chromedriver from Debian too), recording what the page reports.

`make test` installs both through scripts/ensure_chromium.sh when they are missing. No browser or
driver is downloaded: Selenium is given both paths, so its own manager never runs.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/lib/chromium/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")
MISSING = "Debian's chromium and chromium-driver are needed: bash scripts/ensure_chromium.sh (as root)"

# Runs in every document before its own scripts (CDP, so the page's policy does not apply to it):
# keeps every Content-Security-Policy violation and uncaught error the page meets.
WATCH = """
window.__problems = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__problems.push(`CSP ${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
window.addEventListener("error", (e) => window.__problems.push(`error ${e.message}`));
window.addEventListener("unhandledrejection", (e) => window.__problems.push(`rejection ${e.reason}`));
"""


def options(width: int, height: int) -> webdriver.ChromeOptions:
    """Headless Chromium at a window size, its console log kept (goog:loggingPrefs)."""
    chosen = webdriver.ChromeOptions()
    chosen.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        chosen.add_argument(argument)
    chosen.add_argument(f"--window-size={width},{height}")
    chosen.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return chosen


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A headless Chromium watching for CSP violations and errors, quit when the block ends."""
    assert os.path.exists(CHROMIUM), MISSING
    assert os.path.exists(CHROMEDRIVER), MISSING
    driver = webdriver.Chrome(options=options(width, height), service=Service(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH})
        yield driver
    finally:
        driver.quit()


def open_page(driver: webdriver.Chrome, url: str) -> None:
    """Opens the page and waits until its script has loaded everything it shows (body[data-ready])."""
    driver.get(url)
    wait_ready(driver)


def wait_ready(driver: webdriver.Chrome, timeout: float = 60) -> None:
    """Waits until the page's script says it is done."""
    WebDriverWait(driver, timeout).until(lambda d: d.execute_script("return document.body.dataset.ready"))


def problems(driver: webdriver.Chrome) -> list[Any]:
    """What went wrong so far: console messages at warning or worse, CSP violations, uncaught errors.

    Reading the console log empties it, so each call reports what came since the last.
    """
    console = [entry for entry in driver.get_log("browser") if entry["level"] in ("WARNING", "SEVERE")]
    return console + (driver.execute_script("return window.__problems || []") or [])
