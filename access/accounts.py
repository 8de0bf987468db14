"""PostgreSQL adapter for dashboard users, sessions, login attempts and the login audit
(tables of migration 0040). The rules (hashing, expiry, rate limit) are in access.auth."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from access.auth import (
    LOGIN_MAX_FAILURES_PER_CLIENT,
    LOGIN_WINDOW_S,
    ROLES,
    SSO_PREFIX,
    User,
    hash_password,
    login_blocked,
    new_session_token,
    session_expiry,
    token_digest,
    verify_password,
)


def write_user(
    conn: psycopg.Connection, username: str, password: str, role: str, display_name: str = ""
) -> None:
    """Create a user or replace its password, role and name."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if username.startswith(SSO_PREFIX):
        raise ValueError(f"names starting with {SSO_PREFIX} belong to single sign-on accounts")
    with conn.transaction():
        conn.execute(
            "INSERT INTO dashboard_users (username, display_name, role, password_hash)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (username) DO UPDATE SET"
            " display_name = EXCLUDED.display_name, role = EXCLUDED.role,"
            " password_hash = EXCLUDED.password_hash, updated_at = now()",
            (username, display_name, role, hash_password(password)),
        )


def write_audit(
    conn: psycopg.Connection,
    now: datetime,
    username: str,
    action: str,
    client: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO dashboard_audit (at, username, action, client, detail)"
        " VALUES (%s, %s, %s, %s, %s)",
        (now, username[:64], action, client[:64], Jsonb(detail or {})),
    )


def login(
    conn: psycopg.Connection, username: str, password: str, client: str, now: datetime
) -> tuple[str | None, str]:
    """(session token or None, outcome): outcome is ok, failed or limited. Every attempt is
    recorded and audited; a limited attempt never checks the password."""
    username = username.strip().lower()[:64]
    since = now - timedelta(seconds=LOGIN_WINDOW_S)
    with conn.transaction():
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE username = %(u)s AND NOT ok),"
            " count(*) FILTER (WHERE client = %(c)s AND NOT ok)"
            " FROM dashboard_login_attempts WHERE at >= %(t)s AND (username = %(u)s OR client = %(c)s)",
            {"u": username, "c": client, "t": since},
        ).fetchone()
        if row and login_blocked(row[0], row[1]):
            write_audit(conn, now, username, "login_limited", client)
            return None, "limited"
        user = conn.execute(
            "SELECT password_hash FROM dashboard_users WHERE username = %s AND NOT disabled",
            (username,),
        ).fetchone()
        ok = verify_password(user[0] if user else None, password)
        conn.execute(
            "INSERT INTO dashboard_login_attempts (at, username, client, ok) VALUES (%s, %s, %s, %s)",
            (now, username, client, ok),
        )
        write_audit(conn, now, username, "login" if ok else "login_failed", client)
        if not ok:
            return None, "failed"
        token = _new_session(conn, username, now)
    return token, "ok"


def _new_session(conn: psycopg.Connection, username: str, now: datetime) -> str:
    token = new_session_token()
    conn.execute(
        "INSERT INTO dashboard_sessions (token_hash, username, created_at, last_seen_at,"
        " expires_at) VALUES (%s, %s, %s, %s, %s)",
        (token_digest(token), username, now, now, session_expiry(now, now)),
    )
    conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < %s", (now,))
    return token


# -- single sign-on (dashboards/oidc.py) ------------------------------------------------------
SSO_PASSWORD_HASH = "!sso"  # not an argon2 hash: no password ever matches it
SSO_ATTEMPT_NAME = "(sso)"  # failed single sign-ons are counted per client under this name


def sso_limited(conn: psycopg.Connection, client: str, now: datetime) -> bool:
    """Whether this client failed single sign-on (or password logins) too often lately."""
    row = conn.execute(
        "SELECT count(*) FROM dashboard_login_attempts WHERE client = %s AND NOT ok AND at >= %s",
        (client, now - timedelta(seconds=LOGIN_WINDOW_S)),
    ).fetchone()
    return bool(row and row[0] >= LOGIN_MAX_FAILURES_PER_CLIENT)


def record_sso_failure(
    conn: psycopg.Connection,
    client: str,
    now: datetime,
    reason: str,
    username: str = SSO_ATTEMPT_NAME,
    detail: dict[str, Any] | None = None,
) -> None:
    with conn.transaction():
        conn.execute(
            "INSERT INTO dashboard_login_attempts (at, username, client, ok)"
            " VALUES (%s, %s, %s, false)",
            (now, SSO_ATTEMPT_NAME, client),
        )
        write_audit(
            conn, now, username, "login_sso_failed", client, {"reason": reason, **(detail or {})}
        )


def login_sso(
    conn: psycopg.Connection,
    username: str,
    display_name: str,
    role: str,
    issuer: str,
    subject: str,
    client: str,
    now: datetime,
) -> tuple[str | None, str]:
    """(session token or None, outcome) for a user the provider vouched for: ok, disabled
    (the account was disabled here), or taken (the name belongs to another subject: an
    ``sso.`` name is bound to the first issuer and subject that used it, kept in the audit).
    The account is created or updated with the role of this login."""
    if role not in ROLES or not username.startswith(SSO_PREFIX):
        raise ValueError(f"not a single sign-on account: {username!r} as {role!r}")
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (username,))
        user = conn.execute(
            "SELECT disabled FROM dashboard_users WHERE username = %s", (username,)
        ).fetchone()
        bound = conn.execute(
            "SELECT detail ->> 'iss', detail ->> 'sub' FROM dashboard_audit"
            " WHERE username = %s AND action = 'login_sso' ORDER BY id LIMIT 1",
            (username,),
        ).fetchone()
        outcome = (
            "disabled"
            if user and user[0]
            else "taken"
            if bound and tuple(bound) != (issuer, subject)
            else "ok"
        )
        conn.execute(
            "INSERT INTO dashboard_login_attempts (at, username, client, ok)"
            " VALUES (%s, %s, %s, %s)",
            (now, SSO_ATTEMPT_NAME if outcome != "ok" else username, client, outcome == "ok"),
        )
        detail = {"iss": issuer, "sub": subject, "role": role}
        if outcome != "ok":
            write_audit(
                conn, now, username, "login_sso_failed", client, {**detail, "reason": outcome}
            )
            return None, outcome
        conn.execute(
            "INSERT INTO dashboard_users (username, display_name, role, password_hash)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (username) DO UPDATE SET"
            " display_name = EXCLUDED.display_name, role = EXCLUDED.role, updated_at = now()",
            (username, display_name, role, SSO_PASSWORD_HASH),
        )
        write_audit(conn, now, username, "login_sso", client, detail)
        token = _new_session(conn, username, now)
    return token, "ok"


def read_session_user(conn: psycopg.Connection, token: str, now: datetime) -> User | None:
    """The user of a live session, sliding its idle expiry; None if expired or unknown."""
    with conn.transaction():
        row = conn.execute(
            "SELECT u.username, u.role, u.display_name, s.created_at FROM dashboard_sessions s"
            " JOIN dashboard_users u USING (username)"
            " WHERE s.token_hash = %s AND s.expires_at > %s AND NOT u.disabled",
            (token_digest(token), now),
        ).fetchone()
        if row is None:
            return None
        # slide the idle expiry at most once a minute: a refreshing page is not a write per second
        conn.execute(
            "UPDATE dashboard_sessions SET last_seen_at = %s, expires_at = %s"
            " WHERE token_hash = %s AND last_seen_at < %s",
            (now, session_expiry(now, row[3]), token_digest(token), now - timedelta(seconds=60)),
        )
    return User(row[0], row[1], row[2])


def logout(conn: psycopg.Connection, token: str, now: datetime, client: str = "") -> None:
    with conn.transaction():
        row = conn.execute(
            "DELETE FROM dashboard_sessions WHERE token_hash = %s RETURNING username",
            (token_digest(token),),
        ).fetchone()
        if row:
            write_audit(conn, now, row[0], "logout", client)


def read_users(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every account (never the hash), for `cityops users list`."""
    rows = conn.execute(
        "SELECT username, display_name, role, disabled, created_at FROM dashboard_users"
        " ORDER BY username"
    ).fetchall()
    keys = ("username", "display_name", "role", "disabled", "created_at")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def write_user_disabled(conn: psycopg.Connection, username: str, disabled: bool) -> bool:
    """Disable (or enable again) an account and end its sessions; False if there is none."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE dashboard_users SET disabled = %s, updated_at = now() WHERE username = %s",
            (disabled, username),
        )
        if disabled:
            conn.execute("DELETE FROM dashboard_sessions WHERE username = %s", (username,))
    return cur.rowcount == 1
