"""API tokens for machine clients (QGIS, GDAL/OWSLib, other departments' systems) and the
security audit (tables of migration 0066; docs/decisions/0071-api-tokens-and-data-classes.md).

A token is ``cot_`` and 43 URL-safe characters (256 random bits), shown once when created;
the database keeps only its SHA-256. It belongs to an existing account, has a name, a role no
higher than its owner's (``access.classes.role_within``, checked again at every use), an
optional list of layers it is limited to, and an expiry (default 90 days, at most 365). A
revoked or expired token, or the token of a disabled account, opens nothing.

The rules are pure functions at the top; ``write_``/``read_``/``revoke_``/``record_``
functions below are the psycopg adapter.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from access.classes import role_within
from cityops.kernel.crypto import SECURITY_AUDIT_CHAIN, append_chained

TOKEN_PREFIX = "cot_"  # "cityops token": recognisable in a leaked file or a secret scanner
DEFAULT_DAYS = 90
MAX_DAYS = 365
LAST_USED_GRANULARITY_S = 60  # last_used_at is written at most once a minute per token
_TOKEN_RE = re.compile(r"^cot_[A-Za-z0-9_-]{43}$")
_LAYER_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class TokenError(ValueError):
    """A token that cannot be created as asked (unknown user, bad name, days or layers)."""


class TokenRejected(Exception):
    """A presented token opens nothing; ``reason`` says why (kept out of the HTTP answer's
    detail where it would help a guesser: unknown and malformed look the same to a client)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    username: str
    name: str
    role: str
    layers: tuple[str, ...]
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    def state(self, now: datetime) -> str:
        """active, expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "active"


# --- pure rules ---------------------------------------------------------------------------------


def new_api_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def api_token_digest(token: str) -> str:
    """What the database keeps of a token (SHA-256, hex): a copy of the table opens nothing."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(text: str) -> bool:
    return bool(_TOKEN_RE.match(text))


def parse_days(days: int | None) -> int:
    d = DEFAULT_DAYS if days is None else days
    if not 1 <= d <= MAX_DAYS:
        raise TokenError(f"a token lives 1 to {MAX_DAYS} days, not {d}")
    return d


def parse_layers(text: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``a,b`` (or a list) -> sorted unique layer names; empty means every layer the role reads."""
    items = text.split(",") if isinstance(text, str) else list(text or ())
    names = sorted({n.strip() for n in items if n.strip()})
    bad = [n for n in names if not _LAYER_RE.match(n)]
    if bad:
        raise TokenError(f"not a layer name: {', '.join(bad)}")
    return tuple(names)


def parse_token_name(name: str) -> str:
    n = name.strip()
    if not 1 <= len(n) <= 100 or any(ord(c) < 32 for c in n):
        raise TokenError("a token name is 1-100 printable characters")
    return n


def token_refusal(
    token: ApiToken | None, owner_role: str | None, owner_disabled: bool, now: datetime
) -> str | None:
    """Why a presented token opens nothing, or None when it is good now."""
    if token is None or owner_role is None:
        return "unknown token"
    if owner_disabled:
        return "the token's account is disabled"
    if token.revoked_at is not None:
        return "token revoked"
    if token.expires_at <= now:
        return "token expired"
    if not role_within(token.role, owner_role):
        return "the token's role is above its account's role now; create a new token"
    return None


# --- PostgreSQL adapter -------------------------------------------------------------------------

# constant SQL only (no name comes from outside); the first ten columns are an ApiToken's fields
_SELECT_TOKENS = (
    "SELECT t.id, t.username, t.name, t.role, t.layers, t.created_at, t.created_by,"
    " t.expires_at, t.revoked_at, t.last_used_at, u.role, u.disabled"
    " FROM api_tokens t JOIN dashboard_users u USING (username)"
)


def _token(row: tuple[Any, ...]) -> ApiToken:
    return ApiToken(
        id=row[0],
        username=row[1],
        name=row[2],
        role=row[3],
        layers=tuple(row[4] or ()),
        created_at=row[5],
        created_by=row[6],
        expires_at=row[7],
        revoked_at=row[8],
        last_used_at=row[9],
    )


def record_security_event(
    conn: psycopg.Connection,
    actor: str,
    action: str,
    target: str = "",
    detail: dict[str, Any] | None = None,
    *,
    at: datetime | None = None,
) -> int:
    """Append a row to ``security_audit`` (append-only): who did what to which object. Token
    creation and revocation, exports of internal or restricted data, refused API requests.
    Returns the row's id. The one place that writes the table: each row is chained to the one
    before by SM3 (``cityops audit verify`` finds an edited, removed or reordered row)."""
    row = (at or datetime.now(UTC), actor[:128], action[:64], target[:256], Jsonb(detail or {}))
    return append_chained(conn, SECURITY_AUDIT_CHAIN, [row])[0]


def read_known_layers(conn: psycopg.Connection) -> set[str]:
    """Names a token may be limited to: the layers in ``gis_layers`` and any relation in the
    public schema with a ``geom`` column (e.g. the ``alert_locations`` view)."""
    rows = conn.execute(
        "SELECT name FROM gis_layers UNION SELECT table_name::text FROM information_schema.columns"
        " WHERE table_schema = 'public' AND column_name = 'geom'"
    ).fetchall()
    return {r[0] for r in rows}


def write_token(
    conn: psycopg.Connection,
    username: str,
    name: str,
    *,
    actor: str,
    now: datetime,
    days: int | None = None,
    layers: str | list[str] | tuple[str, ...] | None = None,
    role: str | None = None,
) -> tuple[str, ApiToken]:
    """Create a token for ``username`` (the secret, returned once, and its record); audited as
    ``token.create`` by ``actor``. ``role`` defaults to the owner's."""
    token_name = parse_token_name(name)
    lifetime = parse_days(days)
    scope = parse_layers(layers)
    with conn.transaction():
        owner = conn.execute(
            "SELECT role, disabled FROM dashboard_users WHERE username = %s", (username,)
        ).fetchone()
        if owner is None:
            raise TokenError(f"no account {username!r} (cityops users add)")
        if owner[1]:
            raise TokenError(f"account {username!r} is disabled")
        token_role = role or owner[0]
        if not role_within(token_role, owner[0]):
            raise TokenError(
                f"a token of {username} can have role {owner[0]} or less, not {token_role}"
            )
        unknown = sorted(set(scope) - read_known_layers(conn))
        if unknown:
            raise TokenError(f"unknown layers: {', '.join(unknown)}")
        secret = new_api_token()
        row = conn.execute(
            "INSERT INTO api_tokens (token_hash, username, name, role, layers, created_at,"
            " created_by, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id, username, name, role, layers, created_at, created_by, expires_at,"
            " revoked_at, last_used_at",
            (
                api_token_digest(secret),
                username,
                token_name,
                token_role,
                list(scope),
                now,
                actor,
                now + timedelta(days=lifetime),
            ),
        ).fetchone()
        assert row is not None
        token = _token(row)
        record_security_event(
            conn,
            actor,
            "token.create",
            f"api_token:{token.id}",
            {
                "owner": username,
                "name": token_name,
                "role": token_role,
                "layers": list(scope),
                "expires_at": token.expires_at.isoformat(),
            },
            at=now,
        )
    return secret, token


def read_tokens(conn: psycopg.Connection, username: str | None = None) -> list[ApiToken]:
    """Every token (of ``username``), newest first; never the secret, which is not stored."""
    rows = conn.execute(
        _SELECT_TOKENS + " WHERE %(u)s::text IS NULL OR t.username = %(u)s ORDER BY t.id DESC",
        {"u": username},
    ).fetchall()
    return [_token(r[:10]) for r in rows]


def revoke_token(conn: psycopg.Connection, token_id: int, *, actor: str, now: datetime) -> bool:
    """Revoke a token at once; False when there is no such token or it was revoked already.
    Audited as ``token.revoke``."""
    with conn.transaction():
        row = conn.execute(
            "UPDATE api_tokens SET revoked_at = %s, revoked_by = %s"
            " WHERE id = %s AND revoked_at IS NULL RETURNING username, name",
            (now, actor, token_id),
        ).fetchone()
        if row is None:
            return False
        record_security_event(
            conn,
            actor,
            "token.revoke",
            f"api_token:{token_id}",
            {"owner": row[0], "name": row[1]},
            at=now,
        )
    return True


def read_token_owner(conn: psycopg.Connection, secret: str, now: datetime) -> ApiToken:
    """The token ``secret`` opens, checked against its account's current state and role; notes
    its use (at most once a minute). ``TokenRejected`` when it opens nothing."""
    if not looks_like_token(secret):
        raise TokenRejected("malformed token")
    row = conn.execute(
        _SELECT_TOKENS + " WHERE t.token_hash = %s",
        (api_token_digest(secret),),
    ).fetchone()
    token = _token(row[:10]) if row else None
    reason = token_refusal(token, row[10] if row else None, bool(row and row[11]), now)
    if reason is not None or token is None:
        raise TokenRejected(reason or "unknown token")
    if token.last_used_at is None or token.last_used_at < now - timedelta(
        seconds=LAST_USED_GRANULARITY_S
    ):
        conn.execute("UPDATE api_tokens SET last_used_at = %s WHERE id = %s", (now, token.id))
    return token
