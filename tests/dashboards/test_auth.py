"""Users, roles, sessions and the server-side role check of the alert actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from selenium.webdriver.common.by import By

from access import accounts
from access.auth import User, can, hash_password, verify_password
from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import (
    bind_client,
    browser_logout,
    callback_status,
    http_login,
    insert_alert,
    new_client,
    open_page,
    page_text,
    post_form,
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
    for who in ("li.na", "wang.fang"):  # planner, operator: refused before the callback runs
        opener = http_login(dash_server.url, who, users[who])
        assert ack_status(opener, dash_server.url, alert_id) == 403
    assert ack_status(new_client(), dash_server.url, alert_id) == 401  # nobody signed in
    assert alert_state(dash_db, "wp-510104-1") == (alert_id, "open", audits)
    with psycopg.connect(dash_db) as conn:
        refused = conn.execute(
            "SELECT username, detail ->> 'callback' FROM dashboard_audit"
            " WHERE action = 'refused:alert.act'"
        ).fetchall()
    assert {r[0] for r in refused} >= {"li.na", "wang.fang"}
    assert all("alerts-result" in r[1] for r in refused if r[0] in ("li.na", "wang.fang"))


def ack_status(opener, base: str, alert_id: int) -> int:
    return callback_status(
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


def test_login_limit_and_session_expiry(dash_server, dash_db, users):
    client = bind_client("127.0.0.21")  # an address of its own: other tests' failures apart
    base = dash_server.url

    def post(password: str, **kw) -> int:
        return post_form(
            client, base, "/login", {"username": "zhang.wei", "password": password}, **kw
        )

    with psycopg.connect(dash_db) as conn:  # other tests may have signed zhang.wei in before
        first = conn.execute("SELECT coalesce(max(id), 0) FROM dashboard_audit").fetchone()[0]
    # a form posted from elsewhere (no anti-forgery token) is refused before anything else
    assert post(users["zhang.wei"], token=False) == 403

    # five failures of his own back off this name from this address
    assert [post("wrong-password") for _ in range(5)] == [401] * 5
    assert post(users["zhang.wei"]) == 429  # even the right password, while backing off
    with psycopg.connect(dash_db) as conn:
        blocked = conn.execute(
            "SELECT failures, blocked_until - last_at FROM dashboard_login_guard"
            " WHERE username = 'zhang.wei' AND client = '127.0.0.21'"
        ).fetchone()
        assert blocked == (5, timedelta(seconds=60))  # the first back-off: a minute
        # time passes: the back-off ends
        conn.execute(
            "UPDATE dashboard_login_guard SET blocked_until = now() - interval '1 second'"
            " WHERE username = 'zhang.wei' AND client = '127.0.0.21'"
        )
        conn.commit()
    assert post(users["zhang.wei"]) == 200  # logged in (redirected to /alerts): streak over
    assert any(c.name == "cityops_session" for c in client.jar)
    with psycopg.connect(dash_db) as conn:
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
                " AND client = '127.0.0.21' ORDER BY id",
                (first,),
            )
        ]
    assert actions == ["login_failed"] * 5 + ["login_limited", "login"]


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
    browser_logout(browser, dash_server.url)


def test_the_login_page_switches_language_before_anyone_logs_in(dash_server, browser):
    open_page(browser, dash_server.url + "/login")
    assert "用户名" in page_text(browser)
    link = browser.find_element(By.ID, "lang-switch")
    assert link.text == "English"
    link.click()
    wait_for(lambda: "User name" in page_text(browser), what="the English login page")
    text = page_text(browser)
    assert "用户名" not in text and browser.find_element(By.ID, "lang-switch").text == "中文"
    # the form posts in the language chosen
    form = browser.find_element(By.TAG_NAME, "form")
    assert form.get_attribute("action").endswith("/login?lang=en")


def test_a_page_refreshing_itself_does_not_keep_its_session_alive(dash_server, dash_db, users):
    """The 1 h idle limit holds for a page left open: a timer's callback (the header's session
    check, a page's refresh) reads the session without sliding its expiry; a call its user
    makes (opening a page) slides it."""
    import json

    from access.auth import token_digest
    from tests.dashboards.helpers import dependency_body, post_json

    base = dash_server.url
    opener = http_login(base, "wang.fang", users["wang.fang"])
    token = next(c.value for c in opener.jar if c.name == "cityops_session")

    def idle_for(minutes: int) -> datetime:
        """The session as if its user last did something ``minutes`` ago: its expiry."""
        with psycopg.connect(dash_db) as conn:
            return conn.execute(
                "UPDATE dashboard_sessions SET last_seen_at = now() - make_interval(mins => %s),"
                " expires_at = now() + make_interval(mins => 60 - %s) WHERE token_hash = %s"
                " RETURNING expires_at",
                (minutes, minutes, token_digest(token)),
            ).fetchone()[0]

    def expiry() -> datetime:
        with psycopg.connect(dash_db) as conn:
            return conn.execute(
                "SELECT expires_at FROM dashboard_sessions WHERE token_hash = %s",
                (token_digest(token),),
            ).fetchone()[0]

    with opener.open(base + "/_dash-dependencies", timeout=10) as resp:
        deps = json.loads(resp.read())

    def call(output_part: str, values: dict, changed: str) -> dict:
        dep = next(d for d in deps if output_part in d["output"])
        body = dependency_body(dep, values, changed)
        with post_json(opener, base, "/_dash-update-component", body) as r:
            sent = r.read()
        return json.loads(sent) if sent else {}  # 204: every output left as it was

    state = {"url.pathname": "/alerts", "url.search": "", "lang.data": "zh"}
    before = idle_for(30)
    # the header's timer: the session is still the user's (nothing redrawn), not slid
    timer = {**state, "header-tick.n_intervals": 7, "header-user.data": "wang.fang"}
    answer = call("header-account.children", timer, "header-tick.n_intervals")
    assert "wang.fang" not in json.dumps(answer)  # no_update: the header stays as it is
    assert expiry() == before
    # the user opens the console: now the idle hour starts again
    answer = call("page.children", state, "url.pathname")
    assert "wang.fang" in json.dumps(answer, ensure_ascii=False)
    slid = expiry()
    assert slid > before + timedelta(minutes=29)
