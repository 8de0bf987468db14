"""The wall (kiosk) page: key figures, ticker, the headline (flashing while a critical alert is
open), no scrolling at 1920x1080. Its sizes at 3 m: test_wall_sizes.py."""

from __future__ import annotations

import psycopg
import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import set_viewport, severe_console_messages
from tests.dashboards.conftest import dashboard_settings, start_dashboard, stop_dashboard
from tests.dashboards.helpers import open_page, page_text, texts, wait_for

pytestmark = pytest.mark.browser


def kpi(browser, utility: str, key: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, f"#wall-kpi-{utility} [data-kpi='{key}']").text


def test_wall_shows_figures_and_a_new_critical_alert(clean_server, clean_db, browser, screenshots):
    """On the clean demo database: this screenshot is the README's (docs/screenshots)."""
    open_page(browser, clean_server.url + "/wall?sound=1")
    wait_for(lambda: len(texts(browser, ".wall-kpi h3")) == 3, what="three utility cards")
    assert texts(browser, ".wall-kpi h3") == ["供水", "供电", "燃气"]
    with psycopg.connect(clean_db) as conn:
        water = conn.execute(
            "SELECT count(*) FROM sensors WHERE utility = 'water' AND status = 'active'"
        ).fetchone()[0]
    assert water == 60  # the demo sensors only
    # the cards are re-rendered on every refresh: look elements up inside each wait
    wait_for(lambda: kpi(browser, "water", "kpi.sensors") == str(water), what="water sensors")
    # a burst: a new critical alert appears on the flashing strip and in the ticker, and the
    # engine's incident for it cuts 42 customers off
    with psycopg.connect(clean_db) as conn:
        conn.execute(
            "INSERT INTO incidents (utility, kind, severity, opened_at, last_alert_at, centre,"
            " affected, explanation_zh, explanation_en) VALUES ('power', 'voltage_low',"
            " 'critical', now(), now(), ST_SetSRID(ST_MakePoint(104.27, 30.56), 4326),"
            ' \'{"customers_without_supply": 42, "population_without_supply": 110}\','
            " '母线电压过低', 'Bus voltage low')"
        )
        cut = conn.execute(
            "SELECT sum((affected ->> 'customers_without_supply')::numeric) FROM incidents"
            " WHERE state = 'open' AND utility = 'power'"
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES ('pb-510112-1', 'power', 'voltage',"
            " 'low', 'critical', now(), 8800, 9300, '10kV母线电压过低：8800 V',"
            " '10 kV bus voltage low: 8800 V')"
        )
    wait_for(
        lambda: "紧急告警" in browser.find_element(By.CSS_SELECTOR, ".critical-alarm").text,
        what="critical strip",
    )
    assert "animation" in browser.execute_script(
        "const s = getComputedStyle(document.querySelector('.critical-alarm'));"
        " return s.animationName !== 'none' ? 'animation' : 'static'"
    )
    wait_for(
        lambda: "10kV母线电压过低" in browser.find_element(By.ID, "wall-ticker").text,
        what="ticker",
    )
    # the optional sound went off once, for the new alert only (not for those open at load)
    wait_for(
        lambda: browser.execute_script("return window.cityopsAlarmCount") == 1, what="alarm sound"
    )
    wait_for(lambda: kpi(browser, "power", "kpi.critical") == "1", what="power critical count")
    wait_for(lambda: kpi(browser, "power", "kpi.outages") == f"{int(cut):,}", what="customers cut")
    # a kiosk: no navigation, nothing to scroll at 1920x1080
    assert not browser.find_element(By.ID, "header-row").is_displayed()
    size = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight,"
        " window.innerWidth, window.innerHeight]"
    )
    assert size[0] <= size[2] and size[1] <= size[3], size
    assert "Traceback" not in page_text(browser)
    # only clean demo data on the picture
    shown = page_text(browser) + browser.find_element(By.ID, "wall-ticker").get_attribute(
        "textContent"
    )
    assert "<img" not in shown and "hostile" not in shown and "注入" not in shown
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "wall.png"))
    # a 4K wall: the same layout scaled, still nothing to scroll
    set_viewport(browser, 3840, 2160)
    try:
        wait_for(lambda: kpi(browser, "power", "kpi.critical") == "1", what="4K render")
        size = browser.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]"
        )
        assert size[0] <= 3840 and size[1] <= 2160, size
    finally:
        set_viewport(browser, 1920, 1080)


def test_wall_in_english_by_url(dash_server, browser):
    open_page(browser, dash_server.url + "/wall?lang=en")
    wait_for(lambda: texts(browser, ".wall-kpi h3") == ["Water", "Power", "Gas"], what="English")
    assert "Latest events" in page_text(browser)
    assert severe_console_messages(browser) == []


def test_wall_says_when_the_server_is_gone_and_recovers(stack, dash_db, browser, tmp_path):
    """Stop the dashboard server itself: the wall says so with every page's stale banner
    (assets/stale.js) within 10 s, measured on the browser's clock, and has no watchdog of its
    own any more (it took 17 s with a 5 s refresh, and the wall showed two banners); start it
    again on the same port: the wall carries on by itself."""
    settings = dashboard_settings(stack, dash_db)
    server = start_dashboard(settings, tmp_path)
    stale = "#stale-banner[data-kind=server]"
    try:
        open_page(browser, server.url + "/wall")
        wait_for(lambda: len(texts(browser, ".wall-kpi h3")) == 3, what="wall")
        assert not browser.find_elements(By.CSS_SELECTOR, stale)
        assert not browser.find_elements(By.ID, "wall-offline")  # one banner, not two
        stopped_ms = browser.execute_script("return Date.now();")
        stop_dashboard(server)
        banner = wait_for(
            lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, stale) if e.is_displayed()],
            timeout_s=30,
            what="server-lost banner",
        )[0]
        delay_s = (int(banner.get_attribute("data-since")) - stopped_ms) / 1000
        print(f"wall: server gone -> banner {delay_s:.1f} s")
        assert delay_s <= 10, delay_s
        assert "连接已中断" in banner.text
        # over the wall's top (a kiosk has no room to push), the figures dimmed
        assert banner.value_of_css_property("position") == "fixed"
        server = start_dashboard(settings, tmp_path)
        wait_for(
            lambda: not browser.find_elements(By.CSS_SELECTOR, stale),
            timeout_s=30,
            what="banner gone after the server came back",
        )
    finally:
        stop_dashboard(server)
        browser.get("about:blank")
        browser.get_log("browser")  # the outage's failed requests are expected here
