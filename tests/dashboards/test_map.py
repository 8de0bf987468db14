"""Map page: layers from the project's own PostGIS data, and 50,000 sensors aggregated."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from selenium.webdriver.common.by import By

from tests.conftest import create_database, drop_database
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.conftest import dashboard_settings, start_dashboard, stop_dashboard
from tests.dashboards.helpers import open_page, page_text, texts, wait_for
from tests.dashboards.scale import load_scale_sensors

pytestmark = pytest.mark.browser


def test_map_layers_and_switches(dash_server, dash_db, demo_networks, browser, screenshots):
    with psycopg.connect(dash_db) as conn:  # the demo's, the hostile one, other tests' sensors
        (n,) = conn.execute("SELECT count(*) FROM sensors WHERE status = 'active'").fetchone()
        # the session's readings as load_demo left them, fresh: later in a session they are
        # minutes old, their sensors silent, and silent outranks alarm (no alarm to show)
        conn.execute(
            "UPDATE sensor_latest SET ts = now() - interval '20 seconds'"
            " WHERE ts > now() - interval '1 hour'"
        )
    assert n >= 121
    open_page(browser, dash_server.url + "/map")
    wait_for(lambda: f"显示 {n} 个传感器" in page_text(browser), what="sensor count")
    legend = wait_for(lambda: texts(browser, ".map-graph .legendtext"), what="legend")
    for name in ("供水", "供电", "燃气", "重要设施"):
        assert name in legend, legend
    assert any(x.startswith("告警") for x in legend), legend
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "map.png"))
    # zoom into central Chengdu as a user would: the server answers with that view's sensors
    browser.execute_script(
        "const g = document.querySelector('#map-graph .js-plotly-plot');"
        "Plotly.relayout(g, {'xaxis.range': [104.0, 104.14], 'yaxis.range': [30.6, 30.72]});"
    )
    wait_for(
        lambda: (
            f"显示 {n} 个传感器" not in page_text(browser)
            and "个传感器" in browser.find_element(By.ID, "map-note").text
        ),
        what="the zoomed view's sensors",
    )
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "map-zoom.png"))
    # switch the networks off: their traces go
    browser.find_element(By.XPATH, "//label[contains(., '管网线路')]").click()
    wait_for(lambda: "供电" not in texts(browser, ".map-graph .legendtext"), what="networks off")
    browser.find_element(By.XPATH, "//label[contains(., '管网线路')]").click()
    assert severe_console_messages(browser) == []


def test_map_aggregates_fifty_thousand_sensors(stack, template_db, browser, screenshots, tmp_path):
    name = "dash_scale_" + uuid.uuid4().hex[:8]
    url = create_database(stack, name, template_db)
    try:
        with psycopg.connect(url) as conn:
            load_scale_sensors(conn, 50_000)
        server = start_dashboard(dashboard_settings(stack, url), tmp_path)
        try:
            t0 = time.monotonic()
            open_page(browser, server.url + "/map")
            wait_for(lambda: "50000" in page_text(browser), timeout_s=30, what="aggregated note")
            shown_s = time.monotonic() - t0
            assert "已按网格汇总显示" in page_text(browser)
            # the note can show before Plotly has drawn the legend: wait for the alerts' entry
            legend = wait_for(
                lambda: [
                    x for x in texts(browser, ".map-graph .legendtext") if x.startswith("告警")
                ],
                what="the alerts in the legend",
            )
            assert legend
            assert shown_s < 15, shown_s
            assert severe_console_messages(browser) == []
            browser.save_screenshot(str(screenshots / "map-50k.png"))
            # the overview copes too (grid cells instead of 50,000 SVG markers)
            open_page(browser, server.url + "/")
            wait_for(
                lambda: len(texts(browser, ".district-table .district-name")) == 20,
                timeout_s=30,
                what="overview at scale",
            )
            assert severe_console_messages(browser) == []
        finally:
            stop_dashboard(server)
    finally:
        drop_database(stack, name)
