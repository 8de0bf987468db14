"""API tokens (access.tokens, migration 0066) on the real database, and `cityops tokens`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from typer.testing import CliRunner

from access.accounts import write_user, write_user_disabled
from access.tokens import (
    DEFAULT_DAYS,
    TOKEN_PREFIX,
    TokenError,
    TokenRejected,
    api_token_digest,
    looks_like_token,
    new_api_token,
    parse_days,
    parse_layers,
    read_token_owner,
    read_tokens,
    record_security_event,
    revoke_token,
    write_token,
)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"


@pytest.fixture
def conn(db_url: str):
    with psycopg.connect(db_url, autocommit=True) as c:
        write_user(c, "pat", PASSWORD, "planner")
        write_user(c, "eve", PASSWORD, "emergency")
        yield c


def test_token_shape_and_rules() -> None:
    t = new_api_token()
    assert t.startswith(TOKEN_PREFIX) and len(t) == 47 and looks_like_token(t)
    assert new_api_token() != t
    assert not looks_like_token("cot_" + "x" * 10) and not looks_like_token(
        t.replace("cot_", "ghp_")
    )
    assert api_token_digest(t) != t and len(api_token_digest(t)) == 64
    assert parse_days(None) == DEFAULT_DAYS == 90 and parse_days(365) == 365
    for bad in (0, -1, 366):
        with pytest.raises(TokenError):
            parse_days(bad)
    assert parse_layers("water_pipes, districts,water_pipes") == ("districts", "water_pipes")
    assert parse_layers("") == ()
    with pytest.raises(TokenError):
        parse_layers("water_pipes;drop table x")


def test_create_use_and_revoke(conn: psycopg.Connection) -> None:
    secret, tok = write_token(conn, "pat", "QGIS on pc-17", actor="admin", now=NOW)
    assert tok.role == "planner" and tok.layers == () and tok.expires_at == NOW + timedelta(90)
    # only the hash is stored: no column anywhere holds the secret
    row = conn.execute("SELECT * FROM api_tokens WHERE id = %s", (tok.id,)).fetchone()
    assert secret not in [str(v) for v in row] and api_token_digest(secret) in row

    used = read_token_owner(conn, secret, NOW + timedelta(hours=1))
    assert used.username == "pat" and used.id == tok.id
    last = conn.execute("SELECT last_used_at FROM api_tokens WHERE id = %s", (tok.id,)).fetchone()
    assert last[0] == NOW + timedelta(hours=1)
    read_token_owner(conn, secret, NOW + timedelta(hours=1, seconds=30))  # within the minute
    last = conn.execute("SELECT last_used_at FROM api_tokens WHERE id = %s", (tok.id,)).fetchone()
    assert last[0] == NOW + timedelta(hours=1)

    with pytest.raises(TokenRejected, match="expired"):
        read_token_owner(conn, secret, NOW + timedelta(days=90))
    with pytest.raises(TokenRejected, match="unknown"):
        read_token_owner(conn, new_api_token(), NOW)
    with pytest.raises(TokenRejected, match="malformed"):
        read_token_owner(conn, "Bearer " + secret, NOW)

    assert revoke_token(conn, tok.id, actor="admin", now=NOW + timedelta(days=1))
    assert not revoke_token(conn, tok.id, actor="admin", now=NOW + timedelta(days=1))
    with pytest.raises(TokenRejected, match="revoked"):
        read_token_owner(conn, secret, NOW + timedelta(days=2))
    assert read_tokens(conn, "pat")[0].state(NOW + timedelta(days=2)) == "revoked"

    audit = conn.execute(
        "SELECT actor, action, target, detail FROM security_audit ORDER BY id"
    ).fetchall()
    assert [(a, b, c) for a, b, c, _ in audit] == [
        ("admin", "token.create", f"api_token:{tok.id}"),
        ("admin", "token.revoke", f"api_token:{tok.id}"),
    ]
    assert audit[0][3]["owner"] == "pat" and audit[0][3]["name"] == "QGIS on pc-17"
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("UPDATE security_audit SET actor = 'someone else'")
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
        conn.execute("DELETE FROM security_audit")


def test_roles_layers_owners(conn: psycopg.Connection) -> None:
    with pytest.raises(TokenError, match="no account"):
        write_token(conn, "nobody", "x", actor="t", now=NOW)
    with pytest.raises(TokenError, match="role planner or less"):
        write_token(conn, "pat", "x", actor="t", now=NOW, role="admin")
    with pytest.raises(TokenError, match="unknown layers: pipes"):
        write_token(conn, "pat", "x", actor="t", now=NOW, layers="pipes")
    with pytest.raises(TokenError, match="1 to 365"):
        write_token(conn, "pat", "x", actor="t", now=NOW, days=400)
    with pytest.raises(TokenError, match="name"):
        write_token(conn, "pat", "  ", actor="t", now=NOW)
    _, t = write_token(
        conn, "eve", "feed", actor="t", now=NOW, role="operator", layers="alert_locations,sensors"
    )
    assert t.role == "operator" and t.layers == ("alert_locations", "sensors")

    # an account disabled: its tokens stop at once, and it gets no new ones
    secret, _ = write_token(conn, "eve", "console", actor="t", now=NOW)
    write_user_disabled(conn, "eve", True)
    with pytest.raises(TokenRejected, match="disabled"):
        read_token_owner(conn, secret, NOW)
    with pytest.raises(TokenError, match="disabled"):
        write_token(conn, "eve", "again", actor="t", now=NOW)
    write_user_disabled(conn, "eve", False)
    assert read_token_owner(conn, secret, NOW).role == "emergency"
    # the account's role lowered: a token above it opens nothing
    conn.execute("UPDATE dashboard_users SET role = 'operator' WHERE username = 'eve'")
    with pytest.raises(TokenRejected, match="above its account"):
        read_token_owner(conn, secret, NOW)


def test_security_events_are_rows(conn: psycopg.Connection) -> None:
    n = record_security_event(conn, "pat", "export", "water_pipes", {"features": 3})
    row = conn.execute(
        "SELECT actor, action, target, detail FROM security_audit WHERE id = %s", (n,)
    ).fetchone()
    assert row == ("pat", "export", "water_pipes", {"features": 3})


def test_cli_create_list_revoke(db_url: str, conn: psycopg.Connection, monkeypatch) -> None:
    from cityops.shell.cli import app

    monkeypatch.setenv("CITYOPS_DATABASE_URL", db_url)
    runner = CliRunner()
    r = runner.invoke(
        app,
        ["tokens", "create", "pat", "--name", "gdal", "--days", "30", "--layers", "water_pipes"],
    )
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip().splitlines()[-1]
    assert looks_like_token(secret)
    assert read_token_owner(conn, secret, datetime.now(UTC)).layers == ("water_pipes",)

    r = runner.invoke(app, ["tokens", "list", "--user", "pat"])
    assert r.exit_code == 0 and "gdal" in r.stdout and "water_pipes" in r.stdout
    assert secret not in r.output and secret[:12] not in r.output

    r = runner.invoke(app, ["tokens", "create", "pat", "--name", "x", "--days", "0"])
    assert r.exit_code == 2 and "1 to 365" in r.output
    r = runner.invoke(app, ["tokens", "create", "pat", "--name", "x", "--role", "admin"])
    assert r.exit_code == 2

    tid = read_tokens(conn, "pat")[0].id
    r = runner.invoke(app, ["tokens", "revoke", str(tid)])
    assert r.exit_code == 0 and "revoked" in r.output
    r = runner.invoke(app, ["tokens", "revoke", str(tid)])
    assert r.exit_code == 2
    with pytest.raises(TokenRejected, match="revoked"):
        read_token_owner(conn, secret, datetime.now(UTC))
    actors = conn.execute("SELECT DISTINCT actor FROM security_audit").fetchall()
    assert all(a[0].startswith("cli:") for a in actors)
