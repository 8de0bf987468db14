"""Users, roles, sessions and the server-side role check of the alert actions."""

from __future__ import annotations

import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from selenium.webdriver.common.by import By

from access import accounts
from access.auth import User, can, hash_password, verify_password
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import (
    call_callback,
    http_login,
    insert_alert,
    login_token,
    open_page,
    page_text,
    wait_for,
)

pytestmark = pytest.mark.browser


def test_password_hashing_and_roles():
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$") and "correct" not in h
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "wrong")
    assert not verify_password(None, "anything")
    with pytest.raises(ValueError):
        hash_password("short")
    assert can(User("a", "emergency"), "alert.act") and can(User("a", "admin"), "alert.act")
    assert not can(User("a", "planner"), "alert.act") and not can(None, "alert.act")


def ack_over_http(opener, base: str, alert_id: int) -> dict:
    """What the browser would send when 'acknowledge' is clicked on the console."""
    return call_callback(
        opener,
        base,
        "alerts-ack",
        {
            "alerts-ack.n_clicks": 1,
            "alerts-selected.data": alert_id,
            "alerts-comment.value": "via HTTP",
            "alerts-shelve-hours.value": 4,
            "alerts-changed.data": 0,
            "lang.data": "en",
        },
        "alerts-ack.n_clicks",
    )


def alert_state(db_url: str, sensor_id: str) -> tuple[int, str, int]:
    with psycopg.connect(db_url) as conn:
        alert_id, state = conn.execute(
            "SELECT alert_id, state FROM alerts WHERE sensor_id = %s", (sensor_id,)
        ).fetchone()
        n = conn.execute(
            "SELECT count(*) FROM alert_audit WHERE alert_id = %s", (alert_id,)
        ).fetchone()[0]
    return alert_id, state, n


def test_planner_calling_acknowledge_over_http_is_refused(dash_server, dash_db, users):
    alert_id, state, audits = alert_state(dash_db, "wp-510104-1")
    assert state == "open"
    for who in ("li.na", "wang.fang"):  # planner, operator
        opener = http_login(dash_server.url, who, users[who])
        answer = json.dumps(ack_over_http(opener, dash_server.url, alert_id), ensure_ascii=False)
        assert "Not allowed" in answer
    anonymous = urllib.request.build_opener()
    assert "Log in" in json.dumps(ack_over_http(anonymous, dash_server.url, alert_id))
    assert alert_state(dash_db, "wp-510104-1") == (alert_id, "open", audits)
    with psycopg.connect(dash_db) as conn:
        refused = conn.execute(
            "SELECT username FROM dashboard_audit WHERE action = 'refused:alert.act'"
        ).fetchall()
    assert {r[0] for r in refused} >= {"li.na", "wang.fang"}


def test_login_rate_limit_and_session_expiry(dash_server, dash_db, users):
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(password: str, *, token: bool = True) -> int:
        form = {"username": "zhang.wei", "password": password}
        if token:
            form["csrf"] = login_token(opener, dash_server.url)
        try:
            with opener.open(
                dash_server.url + "/login", data=urllib.parse.urlencode(form).encode(), timeout=10
            ) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code

    with psycopg.connect(dash_db) as conn:  # other tests may have signed zhang.wei in before
        first = conn.execute("SELECT coalesce(max(id), 0) FROM dashboard_audit").fetchone()[0]
    # a form posted from elsewhere (no anti-forgery token) is refused before anything else
    assert post(users["zhang.wei"], token=False) == 400

    # failures of another account name do not lock zhang.wei; five of his own do
    assert [post("wrong-password") for _ in range(5)] == [401] * 5
    assert post(users["zhang.wei"]) == 429  # even the right password, while limited
    with psycopg.connect(dash_db) as conn:
        # time passes: the failures leave the window
        conn.execute(
            "UPDATE dashboard_login_attempts SET at = at - interval '1 hour'"
            " WHERE username = 'zhang.wei'"
        )
        conn.commit()
        now = datetime.now(UTC)
        token, outcome = accounts.login(conn, "zhang.wei", users["zhang.wei"], "test", now)
        assert outcome == "ok" and token
        assert accounts.read_session_user(conn, token, now + timedelta(minutes=30)) is not None
        # idle for more than an hour: gone
        assert accounts.read_session_user(conn, token, now + timedelta(hours=2)) is None
        stored = conn.execute("SELECT token_hash FROM dashboard_sessions").fetchall()
        assert all(token not in r[0] for r in stored)
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM dashboard_audit WHERE username = 'zhang.wei' AND id > %s"
                " ORDER BY id",
                (first,),
            )
        ]
    assert actions[:7] == ["login_failed"] * 5 + ["login_limited", "login"]


def test_emergency_user_acknowledges_in_the_console(
    dash_server, dash_db, users, browser, screenshots
):
    # a burst: a fresh critical alert of its own for this test
    alert_id = insert_alert(
        dash_db,
        "gd-510108-1",
        "gas_concentration",
        "high",
        "critical",
        35,
        20,
        "可燃气体浓度过高：35 %LEL",
        "Gas concentration high: 35 %LEL",
    )
    open_page(browser, dash_server.url + "/login")
    browser.find_element(By.ID, "username").send_keys("zhang.wei")
    browser.find_element(By.ID, "password").send_keys(users["zhang.wei"])
    browser.find_element(By.ID, "login-submit").click()
    wait_for(lambda: "张伟" in page_text(browser) or "zhang.wei" in page_text(browser), what="user")
    pick = wait_for(
        lambda: browser.find_element(By.XPATH, f"//button[text()='#{alert_id}']"),
        what="the new alert in the console",
    )
    pick.click()
    wait_for(lambda: f"已选告警：{alert_id}" in page_text(browser), what="selection")
    browser.find_element(By.ID, "alerts-comment").send_keys("已派人现场核查")
    browser.find_element(By.ID, "alerts-ack").click()
    wait_for(lambda: "已执行：确认" in page_text(browser), what="acknowledged message")
    with psycopg.connect(dash_db) as conn:
        state, by = conn.execute(
            "SELECT state, acknowledged_by FROM alerts WHERE alert_id = %s", (alert_id,)
        ).fetchone()
        audit = conn.execute(
            "SELECT actor, action, comment, at FROM alert_audit WHERE alert_id = %s", (alert_id,)
        ).fetchall()
    assert (state, by) == ("acknowledged", "zhang.wei")
    assert [(a[0], a[1], a[2]) for a in audit] == [("zhang.wei", "acknowledge", "已派人现场核查")]
    assert abs((datetime.now(UTC) - audit[0][3]).total_seconds()) < 60
    # the timeline shows who did it
    wait_for(lambda: "zhang.wei · 确认 → 已确认" in page_text(browser), what="timeline")
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "alerts.png"))
    browser.get(dash_server.url + "/logout")
