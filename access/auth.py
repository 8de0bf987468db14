"""Roles, permissions, password hashing, session tokens and the login rate limit (pure).

Roles (docs/dashboards.md): operator watches; planner asks GIS questions; emergency staff act on
alerts; admin does everything. Every restricted callback calls ``can(user, permission)`` on the
server: hiding a button is not a check, Dash callbacks are an open HTTP API.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

ROLES = ("operator", "planner", "emergency", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "alert.act": frozenset({"emergency", "admin"}),  # acknowledge, assign, shelve, resolve
    "planner.query": frozenset({"planner", "admin"}),
    "users.manage": frozenset({"admin"}),
}

SESSION_COOKIE = "cityops_session"
SSO_PREFIX = "sso."  # accounts the city's identity provider vouches for (dashboards/oidc.py)
SESSION_MAX_S = 12 * 3600  # absolute lifetime [s]: one shift
SESSION_IDLE_S = 3600  # [s] without a request ends the session
LOGIN_WINDOW_S = 15 * 60  # [s] over which failures are counted
LOGIN_MAX_FAILURES_PER_USER = 5
LOGIN_MAX_FAILURES_PER_CLIENT = 30

# argon2id with argon2-cffi's RFC 9106 "low memory" profile (64 MiB, 3 passes)
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so timing does not reveal valid names."""
    return _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    display_name: str = ""


def can(user: User | None, permission: str) -> bool:
    return user is not None and user.role in PERMISSIONS[permission]


def hash_password(password: str) -> str:
    if len(password) < 10:
        raise ValueError("passwords need at least 10 characters")
    return _HASHER.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True if ``password`` matches; a missing user still costs one verification."""
    try:
        return _HASHER.verify(password_hash or _dummy_hash(), password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database keeps of a session token (SHA-256, hex)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def session_expiry(now: datetime, created_at: datetime) -> datetime:
    """Sliding idle timeout, capped by the absolute lifetime."""
    return min(
        now + timedelta(seconds=SESSION_IDLE_S), created_at + timedelta(seconds=SESSION_MAX_S)
    )


def login_blocked(failures_for_user: int, failures_for_client: int) -> bool:
    """Whether to refuse a login attempt without even checking the password."""
    return (
        failures_for_user >= LOGIN_MAX_FAILURES_PER_USER
        or failures_for_client >= LOGIN_MAX_FAILURES_PER_CLIENT
    )
