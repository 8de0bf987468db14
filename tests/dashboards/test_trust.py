"""Data-trust page: completeness per utility and district, quarantine by reason, silent sensors."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import open_page, page_text, texts, wait_for

pytestmark = pytest.mark.browser


def test_trust_page(dash_server, browser, screenshots):
    open_page(browser, dash_server.url + "/trust")
    water = wait_for(
        lambda: browser.find_element(By.CSS_SELECTOR, "#trust-utility tr[data-group='water']").text,
        what="water row",
    )
    assert water.startswith("供水") and "%" in water
    districts = wait_for(lambda: texts(browser, "#trust-district tbody tr"), what="districts")
    assert len(districts) == 20
    recent = browser.find_element(By.ID, "trust-recent").text
    assert "not_json" in recent and "unknown_sensor" in recent
    wait_for(lambda: "not_json" in texts(browser, "#trust-reasons .ytick text"), what="reason bars")
    assert "gp-510106-1" in browser.find_element(By.ID, "trust-silent").text
    assert "Traceback" not in page_text(browser)
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "trust.png"))
