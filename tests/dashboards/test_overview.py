"""The operations overview in headless Chromium against a real `cityops dashboard` process."""

from __future__ import annotations

import json
import urllib.request

import pytest
from selenium.webdriver.common.by import By

from tests.conftest import ROOT
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.conftest import (
    HOSTILE_NAME,
    dashboard_settings,
    start_dashboard,
    stop_dashboard,
)
from tests.dashboards.helpers import open_page, page_text, texts, wait_for
from tests.dashboards.tcpproxy import TcpProxy

pytestmark = pytest.mark.browser

DISTRICTS = json.loads((ROOT / "data" / "chengdu_districts.geojson").read_text("utf-8"))
NAMES_ZH = {f["properties"]["name_zh"] for f in DISTRICTS["features"]}
NAMES_EN = {f["properties"]["name_en"] for f in DISTRICTS["features"]}


def district_names(driver) -> set[str]:
    return set(texts(driver, ".district-table .district-name"))


def test_overview_in_chinese_then_english(clean_server, browser, screenshots):
    """On the clean demo database: this screenshot is the README's (docs/screenshots)."""
    assert len(NAMES_ZH) == 20
    open_page(browser, clean_server.url + "/")
    wait_for(lambda: district_names(browser) == NAMES_ZH, what="20 district names in Chinese")
    # the open alerts: sensor, message in Chinese, time in Asia/Shanghai (UTC+8)

    def demo_alerts() -> list[str]:
        rows = texts(browser, ".alerts-table tr.alert-row")
        return rows if len(rows) == 3 else []

    rows = wait_for(demo_alerts, what="the three demo alerts")
    major = next(r for r in rows if "wp-510104-1" in r)
    assert "供水压力过低：152.5 kPa（下限 200 kPa）" in major
    assert "严重" in major and "锦江区" in major
    # only clean demo data on the picture: nothing hostile, no rows of other tests
    assert not any("hostile" in r or "<img" in r or "注入" in r for r in rows), rows
    assert "<img" not in page_text(browser) and "wp-hostile-1" not in page_text(browser)
    # districts with a problem are marked; the silent gas sensor counts in its district
    wait_for(  # one lookup: the table is redrawn on every refresh (no stale row element)
        lambda: browser.find_elements(By.CSS_SELECTOR, "tr[data-adcode='510106'] td.silent"),
        what="the silent sensor counted in 金牛区",
    )
    assert "更新于" in page_text(browser)
    # the map drew districts and sensors in every state present
    legend = wait_for(lambda: texts(browser, ".map-graph .legendtext"), what="map legend")
    assert any(text.startswith("告警") for text in legend), legend
    assert any(text.startswith("无数据") for text in legend), legend
    assert any(text.startswith("静默") for text in legend), legend
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "overview.png"))

    browser.find_element(By.ID, "lang-switch").click()
    wait_for(lambda: district_names(browser) == NAMES_EN, what="district names in English")
    wait_for(
        lambda: any(
            "Water pressure low: 152.5 kPa (limit 200 kPa)" in r
            for r in texts(browser, ".alerts-table tr.alert-row")
        ),
        what="alert message in English",
    )
    assert "Overview" in page_text(browser) and "Open alerts" in page_text(browser)
    assert severe_console_messages(browser) == []


def test_hostile_sensor_name_is_text(dash_server, browser, screenshots):
    open_page(browser, dash_server.url + "/")

    def hostile_row() -> tuple[str, int]:
        # textContent, not .text: a row scrolled out of the panel is still on the page
        for r in browser.find_elements(By.CSS_SELECTOR, ".alerts-table tr.alert-row"):
            content = r.get_attribute("textContent") or ""
            if "wp-hostile-1" in content:
                return content, len(r.find_elements(By.TAG_NAME, "img"))
        raise LookupError

    text, images = wait_for(hostile_row, what="the hostile sensor's alert")
    shown = HOSTILE_NAME.replace("$", "＄")
    assert shown in text  # the markup is visible as characters
    assert images == 0
    assert browser.execute_script("return window.__pwned === undefined")
    assert not browser.find_elements(By.CSS_SELECTOR, "mjx-container, .MathJax")
    assert severe_console_messages(browser) == []
    # the evidence, apart from the README's overview: the hostile row scrolled into view
    browser.execute_script(
        "for (const r of document.querySelectorAll('.alerts-table tr.alert-row'))"
        " if (r.textContent.includes('wp-hostile-1')) r.scrollIntoView({block: 'center'});"
    )
    browser.save_screenshot(str(screenshots / "injection-as-text.png"))


def test_security_headers_on_every_response(dash_server):
    for path in ("/", "/_dash-layout", "/assets/style.css", "/no-such-page"):
        with urllib.request.urlopen(dash_server.url + path, timeout=5) as resp:
            csp = resp.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
    with urllib.request.urlopen(dash_server.url + "/", timeout=5) as resp:
        page = resp.read().decode()
    # every script and stylesheet comes from this server
    assert (
        "http://"
        not in page.replace(dash_server.url, "").split("<footer>")[1].split("_dash-config")[0]
    )
    assert "cdn" not in page.lower()


def test_database_outage_shows_banner_and_recovers(stack, dash_db, browser, tmp_path):
    """The dashboard reaches PostgreSQL through a proxy that the test cuts and restores."""
    proxy = TcpProxy(stack.state.pg_port)
    url = dash_db.replace(f":{stack.state.pg_port}/", f":{proxy.port}/")
    server = start_dashboard(dashboard_settings(stack, url), tmp_path)
    try:
        open_page(browser, server.url + "/")
        wait_for(lambda: district_names(browser) == NAMES_ZH, what="districts before outage")
        proxy.cut()
        banner = wait_for(
            lambda: browser.find_element(By.CSS_SELECTOR, ".banner-error").text, what="banner"
        )
        assert "数据库暂时无法连接" in banner
        # the last good data stays on screen, and no traceback reaches the page
        assert district_names(browser) == NAMES_ZH
        assert "Traceback" not in page_text(browser)
        # a page opened during the outage says so too
        browser.get(server.url + "/wall")
        wait_for(
            lambda: browser.find_element(By.CSS_SELECTOR, "#wall-banner .banner-error"),
            what="wall banner",
        )
        proxy.restore()
        wait_for(
            lambda: len(texts(browser, ".wall-kpi h3")) == 3, timeout_s=20, what="wall recovered"
        )
        # the database banner went, and so did every page's stale banner (assets/stale.js)
        wait_for(
            lambda: not browser.find_elements(By.CSS_SELECTOR, "#wall-banner .banner-error"),
            what="wall banner gone",
        )
        wait_for(
            lambda: not browser.find_elements(By.CSS_SELECTOR, "#stale-banner[data-kind]"),
            what="stale banner gone",
        )
        browser.get(server.url + "/")
        wait_for(
            lambda: not browser.find_elements(By.CSS_SELECTOR, ".banner-error"),
            timeout_s=20,
            what="banner gone after the database came back",
        )
        wait_for(lambda: "更新于" in page_text(browser), what="updated line")
        assert severe_console_messages(browser) == []
    finally:
        stop_dashboard(server)
        proxy.close()
    assert "Traceback" not in server.log_path.read_text(errors="replace")
