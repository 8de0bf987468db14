"""The alert console's detail: valves to close, customers and facilities without supply, from the
GIS network of the alert's pipe, and the timeline; for signed-in users only. Shelving takes
1-72 h whatever the browser sends."""

from __future__ import annotations

import json
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from selenium.webdriver.common.by import By

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import (
    browser_login,
    call_callback,
    http_login,
    open_page,
    page_text,
    texts,
    wait_for,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def main_alert(dash_db, demo_networks) -> tuple[int, dict]:
    """A critical alert on a water main whose isolation cuts customers off, in an incident with
    an explanation: (alert id, the isolation summary from gis.analysis)."""
    from gis.analysis import fetch_isolation

    with psycopg.connect(dash_db) as conn:
        pipe = None
        for (pipe_id,) in conn.execute(
            "SELECT pipe_id FROM water_pipes WHERE link_kind = 'pipe' ORDER BY pipe_id LIMIT 200"
        ).fetchall():
            iso = fetch_isolation(conn, "water", pipe_id, with_geometry=False)["isolation"]
            if iso["customers_without_supply"] > 0 and iso["valves_to_close"]:
                pipe = pipe_id
                break
        assert pipe, "no pipe with customers behind it in the demo network"
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, asset_id,"
            " geom) SELECT 'wp-main-1', 'water', 'water_pressure', '天府广场干管压力', 510104,"
            " pipe_id, ST_LineInterpolatePoint(geom, 0.5) FROM water_pipes WHERE pipe_id = %s",
            (pipe,),
        )
        alert_id = conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES ('wp-main-1', 'water', 'pressure',"
            " 'burst', 'critical', now(), 90, 200, '疑似爆管：压力骤降至 90 kPa',"
            " 'Suspected burst: pressure down to 90 kPa') RETURNING alert_id"
        ).fetchone()[0]
        incident = conn.execute(
            "INSERT INTO incidents (utility, kind, severity, opened_at, last_alert_at, centre,"
            " explanation_zh, explanation_en) SELECT 'water', 'burst', 'critical', now(), now(),"
            " geom, '干管压力骤降，疑似爆管', 'Sudden pressure drop on a main: suspected burst'"
            " FROM sensors WHERE sensor_id = 'wp-main-1' RETURNING incident_id"
        ).fetchone()[0]
        conn.execute("UPDATE alerts SET incident_id = %s WHERE alert_id = %s", (incident, alert_id))
    return alert_id, iso


def detail_over_http(opener, base: str, alert_id: object) -> str:
    """What the console's detail callback answers for ``alert_id`` (as JSON text)."""
    resp = call_callback(
        opener,
        base,
        "alerts-selected",
        {"alerts-selected.data": alert_id, "alerts-changed.data": 0, "lang.data": "en"},
        "alerts-selected.data",
    )
    return json.dumps(resp["response"], ensure_ascii=False)


def test_console_shows_isolation_for_an_alert_on_a_main(
    dash_server, main_alert, users, browser, screenshots
):
    alert_id, iso = main_alert
    browser_login(browser, dash_server.url, "wang.fang", users["wang.fang"])  # any role reads
    try:
        open_page(browser, dash_server.url + "/alerts")
        wait_for(
            lambda: browser.find_element(By.XPATH, f"//button[text()='#{alert_id}']"),
            what="alert",
        ).click()
        impact = wait_for(
            lambda: browser.find_element(By.ID, "alerts-impact").text, what="impact view"
        )
        assert f"停供用户 {iso['customers_without_supply']} 户" in impact
        assert "疑似爆管" in browser.find_element(By.ID, "alerts-explanation").text
        assert f"约 {iso['population_without_supply']} 人" in impact
        assert all(v in impact for v in iso["valves_to_close"])
        legend = wait_for(lambda: texts(browser, "#alerts-map .legendtext"), what="incident map")
        assert "需关闭阀门" in legend and "告警传感器" in legend, legend
        assert "Traceback" not in page_text(browser)
        assert severe_console_messages(browser) == []
        browser.save_screenshot(str(screenshots / "alerts-incident.png"))
    finally:
        browser.get(dash_server.url + "/logout")


def test_alert_detail_needs_a_signed_in_user(dash_server, main_alert, users, browser):
    alert_id, iso = main_alert
    valve = iso["valves_to_close"][0]
    # anonymous, straight to the callback: no timeline, no impact, no explanation, no map
    anonymous = detail_over_http(urllib.request.build_opener(), dash_server.url, alert_id)
    assert "Log in to see the alert's details" in anonymous
    for secret in (valve, "alerts-impact", "alerts-map", "suspected burst", "Timeline"):
        assert secret not in anonymous, secret
    # a signed-in operator (the least role) reads it all
    opener = http_login(dash_server.url, "wang.fang", users["wang.fang"])
    signed_in = detail_over_http(opener, dash_server.url, alert_id)
    assert valve in signed_in and "alerts-impact" in signed_in and "Timeline" in signed_in
    assert "Log in" not in signed_in
    # a selection that is not an alert id is no selection, not a server error
    for junk in ("x", [1], 10**30, True):
        assert "Select an alert" in detail_over_http(opener, dash_server.url, junk)
    # in the browser, anonymously: the table, then a login prompt instead of the detail
    open_page(browser, dash_server.url + "/alerts")
    wait_for(
        lambda: browser.find_element(By.XPATH, f"//button[text()='#{alert_id}']"), what="alert"
    ).click()
    prompt = wait_for(lambda: browser.find_element(By.ID, "alerts-login").text, what="prompt")
    assert "登录后可查看告警详情" in prompt
    assert not browser.find_elements(By.ID, "alerts-impact")
    assert severe_console_messages(browser) == []


def shelve_over_http(opener, base: str, alert_id: int, hours: object) -> str:
    resp = call_callback(
        opener,
        base,
        "alerts-shelve",
        {
            "alerts-shelve.n_clicks": 1,
            "alerts-selected.data": alert_id,
            "alerts-comment.value": "via HTTP",
            "alerts-shelve-hours.value": hours,
            "alerts-changed.data": 0,
            "lang.data": "en",
        },
        "alerts-shelve.n_clicks",
    )
    return json.dumps(resp["response"].get("alerts-result", {}), ensure_ascii=False)


def test_shelve_hours_are_checked_on_the_server(dash_server, dash_db, users):
    pytest.importorskip("alerts.lifecycle")
    with psycopg.connect(dash_db) as conn:
        alert_id = conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES ('wf-510105-1', 'water', 'flow',"
            " 'high', 'warning', now(), 90, 80, '流量偏高', 'Flow high') RETURNING alert_id"
        ).fetchone()[0]
        conn.commit()

    def shelved() -> tuple[float | None, int]:
        with psycopg.connect(dash_db) as conn:
            until = conn.execute(
                "SELECT shelved_until FROM alerts WHERE alert_id = %s", (alert_id,)
            ).fetchone()[0]
            n = conn.execute(
                "SELECT count(*) FROM alert_audit WHERE alert_id = %s", (alert_id,)
            ).fetchone()[0]
        hours = None if until is None else (until - datetime.now(UTC)) / timedelta(hours=1)
        return hours, n

    opener = http_login(dash_server.url, "zhang.wei", users["zhang.wei"])
    # not a number of hours: a message in the form, nothing written (was a 500 before)
    for bad in ("abc", "NaN", "inf", "1e999", [4], {"h": 4}, "9" * 5000):
        answer = shelve_over_http(opener, dash_server.url, alert_id, bad)
        assert "Shelve for a number of hours from 1 to 72" in answer, (bad, answer)
    assert shelved() == (None, 0)
    # numbers are clamped to 1-72 h, and the message says so
    for sent, expected_h, clamped in (
        (1e308, 72, True),
        (10**30, 72, True),
        ("100", 72, True),
        (0.01, 1, True),
        (-5, 1, True),
        (8, 8, False),
        ("24", 24, False),
    ):
        answer = shelve_over_http(opener, dash_server.url, alert_id, sent)
        assert "Done: Shelve" in answer, (sent, answer)
        assert ("limited to 1–72 h" in answer) is clamped, (sent, answer)
        hours, _n = shelved()
        assert hours is not None and abs(hours - expected_h) < 0.05, (sent, hours)
    assert shelved()[1] == 7  # one audit row per shelve that was done
