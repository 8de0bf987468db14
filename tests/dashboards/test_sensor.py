"""Sensor detail: readings over a window (rollup when long, raw when short), limits, alerts,
data-trust figures; a hostile sensor name shows as text."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.conftest import HOSTILE_NAME
from tests.dashboards.helpers import open_page, page_text, wait_for

pytestmark = pytest.mark.browser


def test_sensor_detail_windows_and_trust(dash_server, browser, screenshots):
    open_page(browser, dash_server.url + "/sensor?id=wp-510104-1")
    title = wait_for(lambda: browser.find_element(By.ID, "sensor-title"), what="title")
    assert "锦江区供水压力监测点1" in title.text and "wp-510104-1" in title.text
    wait_for(
        lambda: browser.find_elements(By.CSS_SELECTOR, "[data-quantity='pressure'] .main-svg"),
        what="pressure chart",
    )
    # a day: the 1-minute rollup; the limits and the alert are on the chart
    assert "1分钟汇总" in browser.find_element(By.ID, "sensor-source").text
    chart = browser.find_element(By.CSS_SELECTOR, "[data-quantity='pressure']").text
    assert "告警限值 200 kPa" in chart and "压力 [kPa]" in chart
    trust = browser.find_element(By.ID, "sensor-trust").text
    assert "压力" in trust and "%" in trust
    assert "供水压力过低" in browser.find_element(By.ID, "sensor-alerts").text
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "sensor.png"))

    browser.find_element(By.XPATH, "//label[contains(., '1小时')]").click()
    wait_for(lambda: "原始读数" in browser.find_element(By.ID, "sensor-source").text, what="raw")
    assert severe_console_messages(browser) == []


def test_hostile_name_on_sensor_page_is_text(dash_server, browser):
    open_page(browser, dash_server.url + "/sensor?id=wp-hostile-1")
    title = wait_for(lambda: browser.find_element(By.ID, "sensor-title"), what="title")
    assert HOSTILE_NAME.replace("$", "＄") in title.text
    assert not title.find_elements(By.TAG_NAME, "img")
    assert browser.execute_script("return window.__pwned === undefined")
    assert "Traceback" not in page_text(browser)
    assert severe_console_messages(browser) == []
