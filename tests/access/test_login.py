"""The login limit on the real database (access.accounts.login, access.auth.claim_login):
race-free under parallel attempts, per name and address, exponential back-off, and sessions
that end with their user's role or account."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from access import accounts
from access.auth import (
    LOGIN_BACKOFF_MAX_S,
    LOGIN_MAX_FAILURES_PER_CLIENT,
    LOGIN_MAX_FAILURES_PER_USER,
    GuardRow,
    claim_login,
    login_backoff_s,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


# -- pure rules ----------------------------------------------------------------------------------
def test_a_streak_claims_up_to_the_limit_then_backs_off_exponentially():
    row, now = None, NOW
    for n in range(1, LOGIN_MAX_FAILURES_PER_USER + 1):
        row = claim_login(row, now, LOGIN_MAX_FAILURES_PER_USER)
        assert row is not None and row.failures == n
    # the claim that reached the limit set a minute's back-off at once (parallel attempts
    # queued behind it are refused without a check)
    assert row.blocked_until == now + timedelta(seconds=60)
    assert claim_login(row, now + timedelta(seconds=59), 5) is None
    waits = []
    for _ in range(8):  # after each back-off one more check, and a back-off twice as long
        now = row.blocked_until
        row = claim_login(row, now, LOGIN_MAX_FAILURES_PER_USER)
        waits.append((row.blocked_until - now).total_seconds())
    assert waits == [120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert login_backoff_s(100) == LOGIN_BACKOFF_MAX_S
    # quiet for a whole window after the back-off: forgotten
    later = row.blocked_until + timedelta(minutes=15)
    assert claim_login(row, later, 5) == GuardRow(1, later, None)
    # a streak below the limit is forgotten 15 minutes after its last attempt
    two = claim_login(claim_login(None, NOW, 5), NOW, 5)
    assert claim_login(two, NOW + timedelta(minutes=14), 5).failures == 3
    assert claim_login(two, NOW + timedelta(minutes=15), 5).failures == 1


# -- on the database -----------------------------------------------------------------------------
@pytest.fixture
def admin_db(db_url: str) -> str:
    with psycopg.connect(db_url) as conn:
        accounts.write_user(conn, "zhou.min", "Admin-pass-2026", "admin", "周敏")
        accounts.write_user(conn, "li.na", "Planner-pass-2026", "planner", "李娜")
    return db_url


def _audit(db: str, action: str, client: str | None = None) -> int:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT count(*) FROM dashboard_audit WHERE action = %s"
            " AND (%s::text IS NULL OR client = %s)",
            (action, client, client),
        ).fetchone()[0]


def test_sixteen_parallel_wrong_passwords_check_at_most_five(admin_db: str):
    """16 threads on 16 connections at once, one name, one address: the row lock makes them
    claim one after the other, so argon2 runs for 5 of them (the old count-then-check ran 12)."""
    conns = [psycopg.connect(admin_db, autocommit=True) for _ in range(16)]
    start = threading.Barrier(16)

    def attempt(i: int) -> tuple[str, float]:
        start.wait()
        t0 = time.perf_counter()
        _token, outcome = accounts.login(
            conns[i], "zhou.min", f"wrong-{i}", "10.1.1.1", datetime.now(UTC)
        )
        return outcome, time.perf_counter() - t0

    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(attempt, range(16)))
    finally:
        for c in conns:
            c.close()
    outcomes = sorted(o for o, _ in results)
    assert outcomes == ["failed"] * LOGIN_MAX_FAILURES_PER_USER + ["limited"] * 11
    assert _audit(admin_db, "login_failed") == LOGIN_MAX_FAILURES_PER_USER  # checks run
    assert _audit(admin_db, "login_limited") == 11
    slowest = max(t for _o, t in results)
    print(f"16 parallel attempts on the database: 5 checked; slowest {1000 * slowest:.0f} ms")


def test_failures_from_one_address_do_not_lock_the_admin_out_from_another(admin_db: str):
    now = datetime.now(UTC)
    with psycopg.connect(admin_db, autocommit=True) as conn:
        attacker = [
            accounts.login(conn, "zhou.min", "guess-123456", "192.0.2.66", now)[1]
            for _ in range(30)
        ]
        assert attacker == ["failed"] * 5 + ["limited"] * 25
        # even the right password from the attacker's address waits
        assert accounts.login(conn, "zhou.min", "Admin-pass-2026", "192.0.2.66", now)[1] == (
            "limited"
        )
        # the admin, from the operations room: in, with the right password
        token, outcome = accounts.login(conn, "zhou.min", "Admin-pass-2026", "10.20.0.5", now)
        assert outcome == "ok" and token
        assert accounts.read_session_user(conn, token, now).username == "zhou.min"
        # and a wrong password there starts a streak of its own, not the attacker's
        assert accounts.login(conn, "zhou.min", "typo-typo-12", "10.20.0.5", now)[1] == "failed"


def test_one_address_guessing_many_names_backs_off(admin_db: str):
    now = datetime.now(UTC)
    with psycopg.connect(admin_db, autocommit=True) as conn:
        outcomes = [
            accounts.login(conn, f"user{i}", "guess-123456", "192.0.2.77", now)[1]
            for i in range(LOGIN_MAX_FAILURES_PER_CLIENT + 3)
        ]
        assert outcomes.count("failed") == LOGIN_MAX_FAILURES_PER_CLIENT
        assert outcomes[-3:] == ["limited"] * 3
        # that address cannot even try a real name now; others can
        assert accounts.login(conn, "li.na", "Planner-pass-2026", "192.0.2.77", now)[1] == (
            "limited"
        )
        assert accounts.login(conn, "li.na", "Planner-pass-2026", "192.0.2.78", now)[1] == "ok"


def test_a_success_ends_the_streak(admin_db: str):
    now = datetime.now(UTC)
    with psycopg.connect(admin_db, autocommit=True) as conn:
        for _ in range(4):
            assert accounts.login(conn, "li.na", "nope-nope-12", "10.0.0.9", now)[1] == "failed"
        assert accounts.login(conn, "li.na", "Planner-pass-2026", "10.0.0.9", now)[1] == "ok"
        # five fresh failures allowed again
        outs = [accounts.login(conn, "li.na", "nope-nope-12", "10.0.0.9", now)[1] for _ in range(6)]
        assert outs == ["failed"] * 5 + ["limited"]
        last = conn.execute(
            "SELECT last_login_at FROM dashboard_users WHERE username = 'li.na'"
        ).fetchone()[0]
        assert last == now


def test_sessions_end_when_the_user_is_disabled_or_the_role_changes(admin_db: str):
    now = datetime.now(UTC)
    with psycopg.connect(admin_db, autocommit=True) as conn:

        def session() -> str:
            token, outcome = accounts.login(conn, "li.na", "Planner-pass-2026", "10.0.0.10", now)
            assert outcome == "ok"
            return token

        token = session()
        assert accounts.write_user_role(conn, "li.na", "emergency")
        assert accounts.read_session_user(conn, token, now) is None
        token = session()
        assert accounts.read_session_user(conn, token, now).role == "emergency"
        # a role changed behind our back (plain SQL) ends it too: the session knows its role
        conn.execute("UPDATE dashboard_users SET role = 'operator' WHERE username = 'li.na'")
        assert accounts.read_session_user(conn, token, now) is None
        token = session()
        assert accounts.write_user_disabled(conn, "li.na", True)
        assert accounts.read_session_user(conn, token, now) is None
        assert accounts.login(conn, "li.na", "Planner-pass-2026", "10.0.0.10", now)[1] == "failed"
        assert accounts.write_user_disabled(conn, "li.na", False)
        token = session()
        assert accounts.write_user_password(conn, "li.na", "Another-pass-2026")
        assert accounts.read_session_user(conn, token, now) is None


def test_single_sign_on_sessions_have_the_same_lifetime_and_end_on_a_new_role(admin_db: str):
    now = datetime.now(UTC)
    with psycopg.connect(admin_db, autocommit=True) as conn:
        args = ("陈静", "emergency", "https://idp", "u-1", "10.0.0.11", now)
        token, outcome = accounts.login_sso(conn, "sso.chen.jing", *args)
        assert outcome == "ok"
        created, expires = conn.execute(
            "SELECT created_at, expires_at FROM dashboard_sessions WHERE username = %s",
            ("sso.chen.jing",),
        ).fetchone()
        assert expires - created == timedelta(hours=1)  # idle timeout, as for passwords
        later = now + timedelta(minutes=50)
        assert accounts.read_session_user(conn, token, later) is not None
        # sliding (a request every half hour keeps it), but never past the absolute 12 hours
        for k in range(2, 24):
            assert accounts.read_session_user(conn, token, now + k * timedelta(minutes=30))
        assert accounts.read_session_user(conn, token, now + timedelta(hours=12)) is None
        # the provider gives another role at the next login: the older sessions end
        first, _ = accounts.login_sso(conn, "sso.chen.jing", *args)
        planner = ("陈静", "planner", "https://idp", "u-1", "10.0.0.11", now)
        second, _ = accounts.login_sso(conn, "sso.chen.jing", *planner)
        assert accounts.read_session_user(conn, first, now) is None
        assert accounts.read_session_user(conn, second, now).role == "planner"
