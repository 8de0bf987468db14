"""The planner's map shows the metered areas (issue 15 item 2): name, meters with their signs and
whether the balance alerts, to planners and admins only, from the real dashboard process."""

from __future__ import annotations

import psycopg
import pytest

import alerts.api
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import (
    browser_login,
    browser_logout,
    call_callback,
    http_login,
    open_page,
    wait_for,
)

SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[104.06, 30.65], [104.07, 30.65], [104.07, 30.66], [104.06, 30.66], [104.06, 30.65]]
    ],
}


def _draw_map(opener, base: str) -> list[dict]:
    """The map the page draws at load and on "clear" (no question asked)."""
    values = {
        "planner-clear.n_clicks": 1,
        "planner-layer.value": "water_pipes",
        "planner-map.selectedData": None,
        "lang.data": "zh",
    }
    resp = call_callback(opener, base, "planner-run", values, "planner-clear.n_clicks")
    return resp["response"]["planner-map"]["figure"]["data"]


def _areas(traces: list[dict]) -> dict[str, dict]:
    return {t["meta"]["area_id"]: t for t in traces if "area_id" in (t.get("meta") or {})}


def test_planner_map_shows_metered_areas_with_meters_and_balance_state(
    dash_server, dash_db, users
) -> None:
    area = {
        "area_id": "test-planner-dma",
        "name": "锦江测试分区",
        "meters": [("wf-510104-1", 1, False), ("wf-510105-1", -1, False)],
        "members": [],
        "boundary": SQUARE,
    }
    with psycopg.connect(dash_db, autocommit=True) as conn:
        alerts.api.write_metered_areas(conn, "test", [area], origin="import")
    alert_id = None
    try:
        planner = http_login(dash_server.url, "li.na", users["li.na"])
        shown = _areas(_draw_map(planner, dash_server.url))["test-planner-dma"]
        assert shown["meta"]["alerting"] is False
        assert "锦江测试分区" in shown["text"] and "+wf-510104-1 −wf-510105-1" in shown["text"]
        assert "水量平衡正常" in shown["text"]
        ring = [(x, y) for x, y in zip(shown["x"], shown["y"], strict=True) if x is not None]
        assert (104.06, 30.65) in ring and (104.07, 30.66) in ring

        with psycopg.connect(dash_db, autocommit=True) as conn:
            alert_id = conn.execute(
                "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at,"
                " value, message_zh, message_en) VALUES ('wf-510104-1', 'water', 'flow',"
                " 'water_burst', 'critical', now(), 80, '爆管', 'burst') RETURNING alert_id"
            ).fetchone()[0]  # type: ignore[index]
        shown = _areas(_draw_map(planner, dash_server.url))["test-planner-dma"]
        assert shown["meta"]["alerting"] is True
        assert shown["line"]["color"] == "#f5222d" and "水量平衡告警: water_burst" in shown["text"]

        admin = http_login(dash_server.url, "zhou.min", users["zhou.min"])
        assert "test-planner-dma" in _areas(_draw_map(admin, dash_server.url))
        # an operator sees the page's empty map but not the utility's meters
        operator = http_login(dash_server.url, "wang.fang", users["wang.fang"])
        traces = _draw_map(operator, dash_server.url)
        assert traces and _areas(traces) == {}
    finally:  # the session's database is shared by the other page tests
        with psycopg.connect(dash_db, autocommit=True) as conn:
            if alert_id is not None:
                conn.execute("DELETE FROM alerts WHERE alert_id = %s", (alert_id,))
            conn.execute("DELETE FROM metered_areas WHERE area_id = 'test-planner-dma'")


@pytest.mark.browser
def test_planner_map_draws_the_areas_in_a_real_browser(
    dash_server, dash_db, users, browser, screenshots
) -> None:
    """What the browser draws: the page's Plotly figure holds the area's outline."""
    area = {
        "area_id": "test-browser-dma",
        "name": "青羊测试分区",
        "meters": [("wf-510105-1", 1, False)],
        "members": [],
        "boundary": SQUARE,
    }
    with psycopg.connect(dash_db, autocommit=True) as conn:
        alerts.api.write_metered_areas(conn, "test", [area], origin="derived")
    try:
        browser_login(browser, dash_server.url, "li.na", users["li.na"])
        open_page(browser, dash_server.url + "/planner")
        script = (
            "const g = document.querySelector('#planner-map .js-plotly-plot');"
            "return g && g.data ? g.data.filter(t => t.meta && t.meta.area_id)"
            ".map(t => [t.meta.area_id, t.text]) : null;"
        )
        drawn = wait_for(lambda: browser.execute_script(script) or None, what="area layer")
        assert [a for a, _ in drawn] == ["test-browser-dma"]
        assert "青羊测试分区" in drawn[0][1] and "+wf-510105-1" in drawn[0][1]
        assert severe_console_messages(browser) == []
        browser.save_screenshot(str(screenshots / "planner-areas.png"))
        browser_logout(browser, dash_server.url)
    finally:
        with psycopg.connect(dash_db, autocommit=True) as conn:
            conn.execute("DELETE FROM metered_areas WHERE area_id = 'test-browser-dma'")
