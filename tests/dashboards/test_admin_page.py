"""The admin page in headless Chromium against the real dashboard: an admin creates a user
(the password policy first), changes the role, disables and enables, resets the password and
ends a session, every change audited; nobody else gets the page."""

from __future__ import annotations

import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.dashboards.browser import severe_console_messages
from tests.dashboards.helpers import (
    browser_login,
    browser_logout,
    http_login,
    new_client,
    open_page,
    page_text,
    post_form,
    wait_for,
)

pytestmark = pytest.mark.browser


def _text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _radio(browser, group: str, label: str) -> None:
    browser.find_element(By.XPATH, f"//*[@id='{group}']//label[contains(., '{label}')]").click()


def _db(db: str, sql: str, *args):
    with psycopg.connect(db) as conn:
        return conn.execute(sql, args).fetchall()


def test_an_admin_manages_a_user_in_the_browser(dash_server, dash_db, users, browser, screenshots):
    base = dash_server.url
    browser_login(browser, base, "zhou.min", users["zhou.min"])
    wait_for(lambda: browser.find_element(By.LINK_TEXT, "用户管理"), what="the admin link")
    open_page(browser, base + "/admin")
    wait_for(lambda: "zhang.wei" in _text(browser, "admin-users"), what="the users")

    # create: a weak password is refused with the reason, a good one creates the account
    browser.find_element(By.ID, "admin-new-username").send_keys("sun.yang")
    browser.find_element(By.ID, "admin-new-name").send_keys("孙阳")
    password = browser.find_element(By.ID, "admin-new-password")
    password.send_keys("sunyang2026")
    browser.find_element(By.ID, "admin-create").click()
    wait_for(
        lambda: "密码至少需要 12 个字符" in _text(browser, "admin-create-result"), what="policy"
    )
    password.send_keys(Keys.CONTROL, "a")
    password.send_keys("Sun-yang-2026!")
    _radio(browser, "admin-new-role", "规划人员")
    browser.find_element(By.ID, "admin-create").click()
    wait_for(
        lambda: "已创建用户 sun.yang（规划人员）" in _text(browser, "admin-create-result"),
        what="created",
    )
    wait_for(lambda: "sun.yang" in _text(browser, "admin-users"), what="in the table")
    assert _db(
        dash_db, "SELECT role, display_name FROM dashboard_users WHERE username = 'sun.yang'"
    ) == [("planner", "孙阳")]
    http_login(base, "sun.yang", "Sun-yang-2026!")  # a session of theirs

    # choose the account: its role and live session are shown
    browser.find_element(By.XPATH, "//button[text()='sun.yang']").click()
    wait_for(
        lambda: "所选用户：sun.yang（规划人员）" in _text(browser, "admin-selected-label"),
        what="chosen",
    )
    wait_for(lambda: "127.0.0.1" in _text(browser, "admin-sessions"), what="their session")

    # a new role ends their sessions
    _radio(browser, "admin-role", "应急人员")
    browser.find_element(By.ID, "admin-set-role").click()
    wait_for(lambda: "的角色已改为 应急人员" in _text(browser, "admin-result"), what="role")
    assert _db(dash_db, "SELECT role FROM dashboard_users WHERE username = 'sun.yang'") == [
        ("emergency",)
    ]
    assert _db(dash_db, "SELECT count(*) FROM dashboard_sessions WHERE username = 'sun.yang'") == [
        (0,)
    ]

    # disabled: no login; enabled again
    browser.find_element(By.ID, "admin-disable").click()
    wait_for(lambda: "已停用 sun.yang" in _text(browser, "admin-result"), what="disabled")
    assert _db(dash_db, "SELECT disabled FROM dashboard_users WHERE username = 'sun.yang'") == [
        (True,)
    ]
    form = {"username": "sun.yang", "password": "Sun-yang-2026!"}
    assert post_form(new_client(), base, "/login", form) == 401
    browser.find_element(By.ID, "admin-enable").click()
    wait_for(lambda: "已启用 sun.yang" in _text(browser, "admin-result"), what="enabled")

    # a reset shows a temporary password once; it works, the old one does not
    browser.find_element(By.ID, "admin-reset").click()
    temporary = wait_for(
        lambda: browser.find_element(By.ID, "admin-temporary-password").text, what="temp"
    )
    assert len(temporary) >= 16
    assert post_form(new_client(), base, "/login", form) == 401
    http_login(base, "sun.yang", temporary)
    http_login(base, "sun.yang", temporary)  # a second browser

    # end all their sessions, then one session from its row
    browser.find_element(By.ID, "admin-end-all").click()
    wait_for(lambda: "已结束 sun.yang 的 2 个会话" in _text(browser, "admin-result"), what="all")
    http_login(base, "sun.yang", temporary)
    browser.find_element(By.XPATH, "//button[text()='sun.yang']").click()
    end = wait_for(
        lambda: browser.find_element(
            By.XPATH, "//*[@id='admin-sessions']//button[text()='结束此会话']"
        ),
        what="the session's button",
    )
    end.click()
    wait_for(lambda: "已结束 sun.yang 的 1 个会话" in _text(browser, "admin-result"), what="ended")
    assert _db(dash_db, "SELECT count(*) FROM dashboard_sessions WHERE username = 'sun.yang'") == [
        (0,)
    ]

    # an admin cannot lock themselves out
    browser.find_element(By.XPATH, "//button[text()='zhou.min']").click()
    wait_for(lambda: "zhou.min" in _text(browser, "admin-selected-label"), what="self")
    browser.find_element(By.ID, "admin-disable").click()
    wait_for(lambda: "不能停用自己的账号" in _text(browser, "admin-result"), what="not yourself")

    # every change audited: who, what, to whom, when, from where
    audit = _db(
        dash_db,
        "SELECT username, action, client, detail, at FROM dashboard_audit"
        " WHERE action LIKE 'admin.%%' AND detail ->> 'target' = 'sun.yang' ORDER BY id",
    )
    assert [(a[0], a[1]) for a in audit] == [
        ("zhou.min", "admin.user_create"),
        ("zhou.min", "admin.role_change"),
        ("zhou.min", "admin.user_disable"),
        ("zhou.min", "admin.user_enable"),
        ("zhou.min", "admin.password_reset"),
        ("zhou.min", "admin.sessions_end"),
        ("zhou.min", "admin.sessions_end"),
    ]
    assert audit[0][3] == {"target": "sun.yang", "role": "planner"}
    assert audit[1][3] == {"target": "sun.yang", "from": "planner", "to": "emergency"}
    assert all(a[2] == "127.0.0.1" and a[4] is not None for a in audit)
    assert temporary not in str(audit)  # the temporary password is nowhere in the audit
    assert severe_console_messages(browser) == []
    browser.save_screenshot(str(screenshots / "admin.png"))
    browser_logout(browser, base)


def test_nobody_else_gets_the_admin_page(dash_server, users, browser):
    base = dash_server.url
    open_page(browser, base + "/admin")
    wait_for(lambda: "此页面需要登录" in page_text(browser), what="anonymous refused")
    browser_login(browser, base, "wang.fang", users["wang.fang"])
    open_page(browser, base + "/admin")
    wait_for(lambda: "无权访问：需要管理员角色" in page_text(browser), what="operator refused")
    assert not browser.find_elements(By.ID, "admin-users")
    assert not browser.find_elements(By.LINK_TEXT, "用户管理")
    assert severe_console_messages(browser) == []
    browser_logout(browser, base)
