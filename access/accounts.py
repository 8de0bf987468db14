"""PostgreSQL adapter for dashboard users, sessions, login attempts, the login guard and the
audit (tables of migrations 0040 and 0068). The rules (hashing, expiry, the login limit, the
password policy) are in access.auth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from access.auth import (
    ANY_USER,
    LOGIN_MAX_FAILURES_PER_CLIENT,
    LOGIN_MAX_FAILURES_PER_USER,
    LOGIN_WINDOW_S,
    ROLES,
    SSO_PREFIX,
    GuardRow,
    User,
    claim_login,
    hash_password,
    new_session_token,
    session_expiry,
    token_digest,
    verify_password,
)
from cityops.kernel.crypto import ChainedTable, append_chained


def write_user(
    conn: psycopg.Connection, username: str, password: str, role: str, display_name: str = ""
) -> None:
    """Create a user or replace its password, role and name (its sessions end: a session
    lives only as long as the password and role it was opened with)."""
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
        conn.execute("DELETE FROM dashboard_sessions WHERE username = %s", (username,))


def create_user(
    conn: psycopg.Connection, username: str, password: str, role: str, display_name: str = ""
) -> bool:
    """Create a new account; False when the name is taken (nothing changes then)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if username.startswith(SSO_PREFIX):
        raise ValueError(f"names starting with {SSO_PREFIX} belong to single sign-on accounts")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO dashboard_users (username, display_name, role, password_hash)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (username) DO NOTHING RETURNING username",
            (username, display_name, role, hash_password(password)),
        ).fetchone()
    return row is not None


def write_user_role(conn: psycopg.Connection, username: str, role: str) -> bool:
    """Give an account another role; its sessions end (False: no such account)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    with conn.transaction():
        cur = conn.execute(
            "UPDATE dashboard_users SET role = %s, updated_at = now() WHERE username = %s",
            (role, username),
        )
        conn.execute("DELETE FROM dashboard_sessions WHERE username = %s", (username,))
    return cur.rowcount == 1


def write_user_password(conn: psycopg.Connection, username: str, password: str) -> bool:
    """Set a new password (a reset); the account's sessions end (False: no such account,
    or a single sign-on account, which has no password here)."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE dashboard_users SET password_hash = %s, updated_at = now()"
            " WHERE username = %s AND password_hash <> %s",
            (hash_password(password), username, SSO_PASSWORD_HASH),
        )
        conn.execute("DELETE FROM dashboard_sessions WHERE username = %s", (username,))
    return cur.rowcount == 1


# the dashboard's audit (logins, refusals, the admin page's changes) is an SM3 chain like
# security_audit and alert_audit (migration 0069; `cityops audit verify`)
DASHBOARD_AUDIT_CHAIN = ChainedTable(
    table="dashboard_audit",
    id_column="id",
    columns=("at", "username", "action", "client", "detail"),
    lock_key=0x0C17_DA5B,
)


def record_dashboard_event(
    conn: psycopg.Connection,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    *,
    now: datetime | None = None,
    client: str = "",
) -> None:
    """Who (``actor``) did what (``action``, e.g. ``admin.user_disable``) to which object
    (``target``), when: a row of the append-only ``dashboard_audit``, with the target in its
    detail. Every change made on the admin page and every refused forgery goes through here."""
    when = now or datetime.now(UTC)
    write_audit(conn, when, actor, action, client, {"target": target[:256], **(detail or {})})


def write_audit(
    conn: psycopg.Connection,
    now: datetime,
    username: str,
    action: str,
    client: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    row = (now, username[:64], action, client[:64], Jsonb(detail or {}))
    append_chained(conn, DASHBOARD_AUDIT_CHAIN, [row])


def login(
    conn: psycopg.Connection, username: str, password: str, client: str, now: datetime
) -> tuple[str | None, str]:
    """(session token or None, outcome): outcome is ok, failed or limited. Every attempt is
    audited; a limited attempt never checks the password.

    Before the (slow) password check the attempt claims a check from the login guard of its
    user name and client address and from that of its client address, under row locks, in one
    short transaction (``claim_login``): parallel attempts wait for each other there, so no
    more than the limit are ever checked, and the locks are not held while argon2 works.
    Failures back off one name from one address (and one address after many names), never
    an account everywhere: the right password from elsewhere still logs in."""
    username = username.strip().lower()[:64]
    client = client[:64]
    with conn.transaction():
        if not _claim(conn, username, client, now):
            write_audit(conn, now, username, "login_limited", client)
            return None, "limited"
    user = conn.execute(
        "SELECT password_hash, role FROM dashboard_users WHERE username = %s AND NOT disabled",
        (username,),
    ).fetchone()
    ok = verify_password(user[0] if user else None, password)
    with conn.transaction():
        conn.execute(
            "INSERT INTO dashboard_login_attempts (at, username, client, ok) VALUES (%s, %s, %s, %s)",
            (now, username, client, ok),
        )
        write_audit(conn, now, username, "login" if ok else "login_failed", client)
        if not ok or user is None:
            return None, "failed"
        _give_back(conn, username, client)
        token = _new_session(conn, username, user[1], client, now)
    return token, "ok"


def _guard_row(conn: psycopg.Connection, username: str, client: str) -> GuardRow | None:
    row = conn.execute(
        "SELECT failures, last_at, blocked_until FROM dashboard_login_guard"
        " WHERE username = %s AND client = %s FOR UPDATE",
        (username, client),
    ).fetchone()
    return GuardRow(row[0], row[1], row[2]) if row else None


def _claim(conn: psycopg.Connection, username: str, client: str, now: datetime) -> bool:
    """Claim one password check for ``username`` from ``client`` (inside a transaction)."""
    # both rows exist before they are locked, always in the same order (client row first):
    # parallel attempts queue on the locks instead of racing or deadlocking
    conn.execute(
        "INSERT INTO dashboard_login_guard (username, client, last_at) VALUES (%s, %s, %s),"
        " (%s, %s, %s) ON CONFLICT DO NOTHING",
        (ANY_USER, client, now, username, client, now),
    )
    claims = []
    for name, limit in (
        (ANY_USER, LOGIN_MAX_FAILURES_PER_CLIENT),
        (username, LOGIN_MAX_FAILURES_PER_USER),
    ):
        claimed = claim_login(_guard_row(conn, name, client), now, limit)
        if claimed is None:
            return False
        claims.append((name, claimed))
    for name, claimed in claims:
        conn.execute(
            "UPDATE dashboard_login_guard SET failures = %s, last_at = %s, blocked_until = %s"
            " WHERE username = %s AND client = %s",
            (claimed.failures, claimed.last_at, claimed.blocked_until, name, client),
        )
    return True


def _give_back(conn: psycopg.Connection, username: str, client: str) -> None:
    """A login succeeded: this name's streak from this address is over, and the address's
    counter gets its claim back (other names' failures from it still count)."""
    conn.execute(
        "DELETE FROM dashboard_login_guard WHERE username = %s AND client = %s",
        (username, client),
    )
    conn.execute(
        "UPDATE dashboard_login_guard SET failures = greatest(failures - 1, 0),"
        " blocked_until = CASE WHEN failures - 1 < %s THEN NULL ELSE blocked_until END"
        " WHERE username = %s AND client = %s",
        (LOGIN_MAX_FAILURES_PER_CLIENT, ANY_USER, client),
    )
    # forget quiet counters (a day without an attempt), a few at a time
    conn.execute(
        "DELETE FROM dashboard_login_guard WHERE ctid IN (SELECT ctid FROM dashboard_login_guard"
        " WHERE last_at < now() - interval '1 day'"
        " AND (blocked_until IS NULL OR blocked_until < now()) LIMIT 100)"
    )


def _new_session(
    conn: psycopg.Connection, username: str, role: str, client: str, now: datetime
) -> str:
    token = new_session_token()
    conn.execute(
        "INSERT INTO dashboard_sessions (token_hash, username, role, client, created_at,"
        " last_seen_at, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (token_digest(token), username, role, client[:64], now, now, session_expiry(now, now)),
    )
    conn.execute(
        "UPDATE dashboard_users SET last_login_at = %s WHERE username = %s", (now, username)
    )
    conn.execute("DELETE FROM dashboard_sessions WHERE expires_at < %s", (now,))
    return token


# -- single sign-on (dashboards/oidc.py) ------------------------------------------------------
SSO_PASSWORD_HASH = "!sso"  # not an argon2 hash: no password ever matches it
SSO_ATTEMPT_NAME = "(sso)"  # failed single sign-ons are counted per client under this name


def sso_limited(conn: psycopg.Connection, client: str, now: datetime) -> bool:
    """Whether this client address is backing off after too many failed logins (single sign-on
    and password failures count together per address)."""
    row = conn.execute(
        "SELECT blocked_until FROM dashboard_login_guard WHERE username = %s AND client = %s",
        (ANY_USER, client[:64]),
    ).fetchone()
    return bool(row and row[0] is not None and row[0] > now)


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
        _count_client_failure(conn, client, now)
        write_audit(
            conn, now, username, "login_sso_failed", client, {"reason": reason, **(detail or {})}
        )


def _count_client_failure(conn: psycopg.Connection, client: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO dashboard_login_guard (username, client, last_at) VALUES (%s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (ANY_USER, client[:64], now),
    )
    claimed = claim_login(
        _guard_row(conn, ANY_USER, client[:64]), now, LOGIN_MAX_FAILURES_PER_CLIENT
    )
    if claimed is not None:
        conn.execute(
            "UPDATE dashboard_login_guard SET failures = %s, last_at = %s, blocked_until = %s"
            " WHERE username = %s AND client = %s",
            (claimed.failures, claimed.last_at, claimed.blocked_until, ANY_USER, client[:64]),
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
            "SELECT disabled, role FROM dashboard_users WHERE username = %s", (username,)
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
        if outcome != "ok":
            _count_client_failure(conn, client, now)
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
        if user and user[1] != role:  # the provider changed the role: older sessions end
            conn.execute("DELETE FROM dashboard_sessions WHERE username = %s", (username,))
        write_audit(conn, now, username, "login_sso", client, detail)
        token = _new_session(conn, username, role, client, now)
    return token, "ok"


def read_session_user(
    conn: psycopg.Connection, token: str, now: datetime, *, slide: bool = True
) -> User | None:
    """The user of a live session, sliding its idle expiry unless ``slide`` is false (a page
    refreshing itself is not its user at work); None if expired, unknown, its user disabled,
    or its user's role is no longer the one it was opened with."""
    with conn.transaction():
        row = conn.execute(
            "SELECT u.username, u.role, u.display_name, s.created_at FROM dashboard_sessions s"
            " JOIN dashboard_users u USING (username)"
            " WHERE s.token_hash = %s AND s.expires_at > %s AND NOT u.disabled"
            " AND s.role IS NOT DISTINCT FROM u.role",
            (token_digest(token), now),
        ).fetchone()
        if row is None:
            return None
        if not slide:
            return User(row[0], row[1], row[2])
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
    """Every account (never the hash), for `cityops users list` and the admin page: its
    last login, live sessions and failed logins in the last window."""
    rows = conn.execute(
        "SELECT u.username, u.display_name, u.role, u.disabled, u.created_at, u.last_login_at,"
        " u.password_hash = %s,"
        " (SELECT count(*) FROM dashboard_sessions s WHERE s.username = u.username"
        "  AND s.expires_at > now()),"
        " (SELECT count(*) FROM dashboard_login_attempts a WHERE a.username = u.username"
        "  AND NOT a.ok AND a.at > now() - make_interval(secs => %s))"
        " FROM dashboard_users u ORDER BY u.username",
        (SSO_PASSWORD_HASH, LOGIN_WINDOW_S),
    ).fetchall()
    keys = (
        "username",
        "display_name",
        "role",
        "disabled",
        "created_at",
        "last_login_at",
        "sso",
        "sessions",
        "recent_failures",
    )
    return [dict(zip(keys, r, strict=True)) for r in rows]


def read_user(conn: psycopg.Connection, username: str) -> dict[str, Any] | None:
    return next((u for u in read_users(conn) if u["username"] == username), None)


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


def read_sessions(conn: psycopg.Connection, username: str) -> list[dict[str, Any]]:
    """A user's live sessions (never their tokens or hashes), newest first."""
    rows = conn.execute(
        "SELECT id, created_at, last_seen_at, expires_at, client FROM dashboard_sessions"
        " WHERE username = %s AND expires_at > now() ORDER BY created_at DESC",
        (username,),
    ).fetchall()
    keys = ("id", "created_at", "last_seen_at", "expires_at", "client")
    return [dict(zip(keys, r, strict=True)) for r in rows]


def end_sessions(conn: psycopg.Connection, username: str, session_id: int | None = None) -> int:
    """End one session of ``username`` (by its id) or all of them; how many ended."""
    with conn.transaction():
        cur = conn.execute(
            "DELETE FROM dashboard_sessions WHERE username = %s"
            " AND (%s::bigint IS NULL OR id = %s::bigint)",
            (username, session_id, session_id),
        )
    return cur.rowcount
