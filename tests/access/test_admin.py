"""Account administration in access.accounts (what the admin page and `cityops users` call) on
the real database, and the password policy (access.auth.password_problem)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from access import accounts
from access.auth import password_problem


@pytest.mark.parametrize(
    ("password", "username", "problem"),
    [
        ("Short-1a", "li.na", "short"),  # 8 characters
        ("Abcdefgh-12", "li.na", "short"),  # 11
        ("Abcdefgh-123", "li.na", None),  # 12, four classes
        ("abcdefgh-123", "li.na", None),  # three classes: lower, digit, other
        ("abcdefgh1234", "li.na", "simple"),  # two classes, under 16
        ("abcdefghijklmnop", "li.na", None),  # one class but 16 characters: a passphrase
        ("correct horse battery", "li.na", None),
        ("Li.Na-2026-secure", "li.na", "username"),  # contains the name (any case)
        ("zhou.min", "zhou.min", "short"),
        ("zhou.min.zhou.min!", "zhou.min", "username"),
        ("x-chen.jing-2026!", "sso.chen.jing", "username"),  # the name without sso.
        ("Password1234", "li.na", "common"),
        ("qwerty123456", "li.na", "common"),
        ("Chengdu@2026", "li.na", "common"),
        ("aaaaaaaaaaaaaaaaaaaa", "li.na", "common"),  # one repeated character
        ("abababababababababab", "li.na", "common"),
        ("Ab1!Ab1!Ab1!", "", None),  # no name to compare with
        ("喜马拉雅山脉的雪线正在上移了啊啊", "li.na", None),  # 16 CJK characters
    ],
)
def test_password_policy(password: str, username: str, problem: str | None):
    assert password_problem(password, username) == problem


def test_admin_changes_and_their_audit(db_url: str):
    now = datetime.now(UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert accounts.create_user(conn, "qian.li", "Qian-pass-2026", "operator", "钱丽")
        assert not accounts.create_user(conn, "qian.li", "Other-pass-2026", "admin")  # taken
        with pytest.raises(ValueError):
            accounts.create_user(conn, "sso.qian", "Qian-pass-2026", "operator")
        with pytest.raises(ValueError):
            accounts.create_user(conn, "qian.wu", "Qian-pass-2026", "mayor")
        token, _ = accounts.login(conn, "qian.li", "Qian-pass-2026", "10.0.0.1", now)
        assert token
        [user] = [u for u in accounts.read_users(conn) if u["username"] == "qian.li"]
        assert user["role"] == "operator" and user["sessions"] == 1 and not user["sso"]
        assert user["last_login_at"] == now and user["recent_failures"] == 0
        [live] = accounts.read_sessions(conn, "qian.li")
        assert live["client"] == "10.0.0.1" and "token" not in str(live)
        assert accounts.end_sessions(conn, "qian.li", live["id"] + 1000) == 0  # not hers
        assert accounts.end_sessions(conn, "qian.li", live["id"]) == 1
        assert accounts.read_session_user(conn, token, now) is None
        accounts.record_dashboard_event(
            conn, "zhou.min", "admin.role_change", "qian.li", {"from": "operator"}, now=now
        )
        row = conn.execute(
            "SELECT username, action, detail, at FROM dashboard_audit"
            " WHERE action = 'admin.role_change'"
        ).fetchone()
        assert row == (
            "zhou.min",
            "admin.role_change",
            {"target": "qian.li", "from": "operator"},
            now,
        )
        # the audit is append-only
        with pytest.raises(psycopg.errors.RaiseException):
            conn.execute("DELETE FROM dashboard_audit")
        # a single sign-on account has no password to reset
        accounts.login_sso(conn, "sso.he.yu", "何雨", "operator", "https://idp", "s", "x", now)
        assert not accounts.write_user_password(conn, "sso.he.yu", "Reset-pass-2026")
        assert accounts.write_user_password(conn, "qian.li", "Reset-pass-2026")
        assert accounts.login(conn, "qian.li", "Reset-pass-2026", "10.0.0.1", now)[1] == "ok"
