"""Every page in English (the switch or ?lang=en) and on a phone-sized screen, with no console
errors; an unknown path is a page, not a traceback."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import set_viewport, severe_console_messages
from tests.dashboards.helpers import open_page, page_text, wait_for

pytestmark = pytest.mark.browser

PAGES = {
    "/": ("Sensor state across the city", "Jinjiang District"),
    "/map": ("Layers", "sensors shown"),
    "/sensor?id=wp-510104-1": ("Data trust", "Pressure [kPa]"),
    "/alerts": ("Open alerts", "Water pressure low"),
    "/trust": ("By utility (last hour)", "Water"),
    "/planner": ("Log in as a planner or admin to ask and export", "Planner"),
    "/dictionary": ("Diameter (mm)", "Water pipes"),
    "/no-such-page": ("Page not found", "Overview"),
}


def test_every_page_in_english(dash_server, browser):
    for path, expected in PAGES.items():
        sep = "&" if "?" in path else "?"
        open_page(browser, f"{dash_server.url}{path}{sep}lang=en")
        for text in expected:
            wait_for(lambda text=text: text in page_text(browser), what=f"{text!r} on {path}")
        assert browser.find_element(By.ID, "lang-switch").text == "中文"
        assert "Traceback" not in page_text(browser)
        assert severe_console_messages(browser) == [], path


def test_alert_console_on_a_phone(dash_server, browser, screenshots):
    set_viewport(browser, 390, 844)
    try:
        open_page(browser, dash_server.url + "/alerts")
        wait_for(lambda: "供水压力过低" in page_text(browser), what="alerts on a phone")
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= 420, width  # no sideways scrolling of the page itself
        assert severe_console_messages(browser) == []
        browser.save_screenshot(str(screenshots / "alerts-phone.png"))
    finally:
        set_viewport(browser, 1920, 1080)


def test_on_a_phone_a_tap_anywhere_on_an_alert_selects_it(dash_server, browser):
    """Emergency staff on a phone open an alert by tapping its row (its message, not only the
    number badge), and every row is at least 44 px tall."""
    set_viewport(browser, 390, 844)
    try:
        open_page(browser, dash_server.url + "/alerts?lang=en")
        row = wait_for(
            lambda: browser.find_element(By.CSS_SELECTOR, "#alerts-table tr.pickable"),
            what="a selectable alert row",
        )
        alert_id = row.get_attribute("data-alert-id")
        heights = browser.execute_script(
            "return [...document.querySelectorAll('#alerts-table tr.pickable')]"
            ".map(r => r.getBoundingClientRect().height)"
        )
        assert heights and min(heights) >= 44, heights
        badge = row.find_element(By.CSS_SELECTOR, "button.pick").rect
        assert badge["height"] >= 44 and badge["width"] >= 44, badge
        message = row.find_element(By.CSS_SELECTOR, "td.message")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", message)
        message.click()
        wait_for(lambda: f"Selected alert: {alert_id}" in page_text(browser), what="selection")
    finally:
        set_viewport(browser, 1920, 1080)
