"""The door of every HTTP data surface (the planners' API, OGC API - Features): who is asking,
and may they read this (docs/decisions/0071-api-tokens-and-data-classes.md).

``authenticate(conn, headers, cookies, now)`` returns the ``Principal`` of a request that
carries ``Authorization: Bearer cot_...`` (an API token, ``access.tokens``) or the dashboard's
session cookie (``access.auth.SESSION_COOKIE``), or raises ``AccessDenied`` (401 with
``WWW-Authenticate: Bearer``). ``require(principal, layers)`` raises 403 when a layer is above
the principal's class or outside its token's layers. ``security_headers`` are the headers every
answer of these surfaces carries. No web framework here: the callers turn ``AccessDenied`` into
their framework's response (``gis.http``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from access.accounts import read_session_user
from access.auth import SESSION_COOKIE
from access.classes import ROLE_CLASS, classes_for, may_read
from access.tokens import TokenRejected, read_token_owner

REALM = "cityops"


class AccessDenied(Exception):
    """401 (who are you?) or 403 (not for you), with a message safe to show the client."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def _unauthorized(message: str, error: str | None = None) -> AccessDenied:
    challenge = f'Bearer realm="{REALM}"'
    if error:  # RFC 6750 3.1: a token was presented and is not good
        challenge += f', error="{error}", error_description="{message}"'
    return AccessDenied(401, message, {"WWW-Authenticate": challenge})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: an account's name, the role in force (a token's, or the session's),
    the highest class it reads, the layers its token is limited to (empty: no limit) and how
    it came in (``token:<id>`` or ``session``)."""

    username: str
    role: str
    layers: tuple[str, ...] = ()
    via: str = "session"
    max_class: str = field(init=False)

    def __post_init__(self) -> None:
        # a role without a class (one added to access.auth and not here) reads nothing
        object.__setattr__(self, "max_class", ROLE_CLASS.get(self.role, "nothing"))

    @property
    def classes(self) -> tuple[str, ...]:
        return classes_for(self.role) if self.role in ROLE_CLASS else ()

    def may_read(self, layer: str, layer_class: str | None) -> bool:
        return may_read(self.role, self.layers, layer, layer_class)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None without the header)."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthorized(
            "malformed Authorization header: use 'Authorization: Bearer <token>'",
            "invalid_request",
        )
    return value.strip()


def authenticate(
    conn: psycopg.Connection,
    headers: Mapping[str, str],
    cookies: Mapping[str, str],
    now: datetime,
) -> Principal:
    """The principal of a request, from its bearer token or else its session cookie.
    ``AccessDenied(401)`` when it carries neither, or one that opens nothing."""
    token = bearer_token(headers.get("Authorization"))
    if token is not None:
        try:
            t = read_token_owner(conn, token, now)
        except TokenRejected as exc:
            shown = (
                exc.reason
                if exc.reason in ("token expired", "token revoked")
                or exc.reason.startswith("the token")
                else "invalid token"
            )
            raise _unauthorized(shown, "invalid_token") from None
        return Principal(t.username, t.role, t.layers, f"token:{t.id}")
    session = cookies.get(SESSION_COOKIE)
    if session:
        user = read_session_user(conn, session, now)
        if user is None:
            raise _unauthorized("session expired: sign in again")
        return Principal(user.username, user.role, (), "session")
    raise _unauthorized(
        "authentication required: send 'Authorization: Bearer <token>'"
        " (cityops tokens create) or sign in to the dashboard"
    )


def require(principal: Principal, layers: Iterable[tuple[str, str | None]]) -> None:
    """``AccessDenied(403)`` unless the principal may read every (layer, class) pair."""
    for name, cls in layers:
        if principal.may_read(name, cls):
            continue
        if principal.layers and name not in principal.layers:
            raise AccessDenied(
                403, f"this token is limited to {', '.join(principal.layers)}; not {name}"
            )
        raise AccessDenied(
            403,
            f"{name} is {cls or 'restricted'} data; role {principal.role} reads up to"
            f" {principal.max_class}",
        )


# every answer: nothing in it may run or be framed, no referrer leaks the query string, and
# data above public stays out of shared caches and browser history caches
_BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CSP_DATA = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# pygeoapi's HTML pages (f=html) link their own styles and scripts from the same origin
CSP_HTML = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def security_headers(content_type: str | None, *, cacheable: bool = False) -> dict[str, str]:
    """Headers for one answer: CSP (nothing runs in JSON or a file; HTML gets its own
    origin's styles), nosniff, no framing, no referrer, and ``no-store`` unless
    ``cacheable`` (a health check)."""
    html = (content_type or "").startswith("text/html")
    headers = dict(_BASE_HEADERS)
    headers["Content-Security-Policy"] = CSP_HTML if html else CSP_DATA
    headers["Cache-Control"] = "no-cache" if cacheable else "no-store"
    if not cacheable:
        headers["Pragma"] = "no-cache"
    return headers
