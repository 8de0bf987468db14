"""Small waiting helpers for the browser tests (explicit waits, never fixed sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

T = TypeVar("T")


def wait_for(fn: Callable[[], T], *, timeout_s: float = 15, what: str = "") -> T:
    """Call ``fn`` until it returns something truthy (exceptions count as 'not yet')."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # stale elements while React re-renders
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or fn}: {last!r}")


def open_page(driver: WebDriver, url: str) -> None:
    """Load ``url`` with no remembered language (the app keeps the choice in localStorage).

    Console messages from the page before (e.g. a server a test has stopped) are discarded."""
    driver.get("about:blank")
    driver.get_log("browser")
    driver.get(url)
    driver.execute_script("window.localStorage.clear();")
    driver.get(url)


def texts(driver: WebDriver, css: str) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]


def page_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text
