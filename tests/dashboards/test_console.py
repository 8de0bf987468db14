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
    browser_logout,
    call_callback,
    http_login,
    insert_alert,
    open_page,
    page_text,
    refresh_over_http,
    texts,
    wait_for,
)

pytestmark = pytest.mark.browser


def pipe_with_customers(conn, *, from_last: bool = False) -> tuple[str, dict]:
    """A water pipe of the demo network whose isolation closes valves and cuts customers off
    (the first such pipe by id, or the last), and that isolation's summary."""
    from gis.analysis import fetch_isolation

    order = "DESC" if from_last else "ASC"
    for (pipe_id,) in conn.execute(
        f"SELECT pipe_id FROM water_pipes WHERE link_kind = 'pipe' ORDER BY pipe_id {order}"  # noqa: S608
        " LIMIT 300"
    ).fetchall():
        iso = fetch_isolation(conn, "water", pipe_id, with_geometry=False)["isolation"]
        if iso["customers_without_supply"] > 0 and iso["valves_to_close"]:
            return pipe_id, iso
    raise AssertionError("no pipe with customers behind it in the demo network")


@pytest.fixture(scope="module")
def main_alert(dash_db, demo_networks) -> tuple[int, dict]:
    """A critical alert on a water main whose isolation cuts customers off, in an incident with
    an explanation: (alert id, the isolation summary from gis.analysis)."""
    with psycopg.connect(dash_db) as conn:
        pipe, iso = pipe_with_customers(conn)
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
        browser_logout(browser, dash_server.url)


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
    alert_id = insert_alert(
        dash_db, "wf-510105-1", "flow", "high", "warning", 90, 80, "流量偏高", "Flow high"
    )

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


def _walk(node):
    """Every component (dict with props) in a Dash JSON tree."""
    if isinstance(node, dict):
        if "props" in node:
            yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


def _kpi(tree, key: str) -> str:
    return next(c["props"]["children"] for c in _walk(tree) if c["props"].get("data-kpi") == key)


def _alert_ids(tree) -> set[int]:
    return {int(c["props"]["data-alert-id"]) for c in _walk(tree) if "data-alert-id" in c["props"]}


def wall_over_http(base: str) -> dict:
    return refresh_over_http(base, "wall")


def console_over_http(base: str) -> dict:
    severities = ["critical", "major", "warning", "info"]
    return refresh_over_http(
        base, "alerts", **{"alerts-severity.value": severities, "alerts-changed.data": 0}
    )


def test_shelved_alerts_leave_the_attention_lists_and_have_their_own_section(
    dash_server, dash_db, users, browser, screenshots
):
    from zoneinfo import ZoneInfo

    from alerts import api as alert_api
    from dashboards import queries

    alert_id = insert_alert(
        dash_db,
        "gd-510113-1",
        "gas_concentration",
        "high",
        "critical",
        31,
        20,
        "可燃气体浓度过高：31 %LEL（搁置测试）",
        "Gas concentration high: 31 %LEL (shelve test)",
    )
    base = dash_server.url

    # open: on the wall (critical strip and count), the overview and the console's open table
    wall = wall_over_http(base)
    assert alert_id in wall["wall-critical-ids"]["data"]
    critical_before = int(_kpi(wall["wall-kpi-gas"]["children"], "kpi.critical"))
    with psycopg.connect(dash_db) as conn:
        by_district, _ = queries.fetch_alert_stats(conn)
    district_before = by_district[510113][0]
    console = console_over_http(base)
    assert alert_id in _alert_ids(console["alerts-table"]["children"])
    assert alert_id not in _alert_ids(console["alerts-shelved"]["children"])

    # shelved by the alert lifecycle (as the console's shelve button does)
    reason = "燃气公司正在更换探头 <b>$x$</b>"
    with psycopg.connect(dash_db) as conn:
        life = alert_api.shelve_alert(
            conn, alert_id, "zhang.wei", datetime.now(UTC) + timedelta(hours=3), reason
        )
    until_local = life.shelved_until.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%m-%d %H:%M")

    wall = wall_over_http(base)
    assert alert_id not in wall["wall-critical-ids"]["data"]
    assert "shelve test" not in json.dumps(wall["wall-alarm"], ensure_ascii=False)
    assert int(_kpi(wall["wall-kpi-gas"]["children"], "kpi.critical")) == critical_before - 1
    with psycopg.connect(dash_db) as conn:
        by_district, _ = queries.fetch_alert_stats(conn)
    assert by_district.get(510113, (0, []))[0] == district_before - 1
    overview = refresh_over_http(base, "overview")
    assert alert_id not in _alert_ids(overview["overview-alerts"]["children"])
    console = console_over_http(base)
    assert alert_id not in _alert_ids(console["alerts-table"]["children"])
    shelf = console["alerts-shelved"]["children"]
    assert _alert_ids(shelf) >= {alert_id}
    shelf_text = json.dumps(shelf, ensure_ascii=False)
    assert until_local in shelf_text and "expires in 3 h" in shelf_text
    assert "zhang.wei" in shelf_text and "燃气公司正在更换探头 <b>＄x＄</b>" in shelf_text

    # in the browser: the labelled section, with expiry and reason; unshelving brings it back
    browser_login(browser, base, "zhang.wei", users["zhang.wei"])
    try:
        open_page(browser, base + "/alerts")
        row = wait_for(
            lambda: browser.find_element(
                By.CSS_SELECTOR, f"#alerts-shelved tr[data-alert-id='{alert_id}']"
            ),
            what="the shelved alert in the shelved section",
        )
        heading = browser.find_element(By.CSS_SELECTOR, "#alerts-shelved-panel h2").text
        assert "已搁置告警" in heading and "不计入待处理" in heading
        assert until_local in row.text and "后到期" in row.text
        assert "燃气公司正在更换探头 <b>＄x＄</b>" in row.text  # shown as text
        assert not browser.find_elements(
            By.CSS_SELECTOR, f"#alerts-table tr[data-alert-id='{alert_id}']"
        )
        browser.execute_script(
            "document.getElementById('alerts-shelved-panel').scrollIntoView({block: 'end'})"
        )
        browser.save_screenshot(str(screenshots / "alerts-shelved.png"))
        row = browser.find_element(
            By.CSS_SELECTOR, f"#alerts-shelved tr[data-alert-id='{alert_id}']"
        )
        row.find_element(By.CSS_SELECTOR, "button.pick").click()
        wait_for(lambda: f"已选告警：{alert_id}" in page_text(browser), what="selection")
        browser.find_element(By.ID, "alerts-unshelve").click()
        wait_for(lambda: "已执行：取消搁置" in page_text(browser), what="unshelved message")
        wait_for(
            lambda: (
                browser.find_elements(
                    By.CSS_SELECTOR, f"#alerts-table tr[data-alert-id='{alert_id}']"
                )
                and not browser.find_elements(
                    By.CSS_SELECTOR, f"#alerts-shelved tr[data-alert-id='{alert_id}']"
                )
            ),
            what="the alert back among the open alerts",
        )
        wait_for(lambda: "zhang.wei · 取消搁置" in page_text(browser), what="timeline")
        assert severe_console_messages(browser) == []
    finally:
        browser_logout(browser, base)
    with psycopg.connect(dash_db) as conn:
        until, actions = conn.execute(
            "SELECT a.shelved_until, array_agg(u.action ORDER BY u.audit_id) FROM alerts a"
            " JOIN alert_audit u USING (alert_id) WHERE a.alert_id = %s GROUP BY 1",
            (alert_id,),
        ).fetchone()
    assert until is None and actions == ["shelve", "unshelve"]
    assert alert_id in wall_over_http(base)["wall-critical-ids"]["data"]
