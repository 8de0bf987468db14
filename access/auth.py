"""Roles, permissions, password policy and hashing, session and anti-forgery tokens, and the
login limit (pure).

Roles (docs/dashboards.md): operator watches; planner asks GIS questions; emergency staff act on
alerts; admin does everything. Every restricted callback calls ``can(user, permission)`` on the
server: hiding a button is not a check, Dash callbacks are an open HTTP API.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
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
LOGIN_WINDOW_S = 15 * 60  # [s] a streak of failures is forgotten this long after its last one
LOGIN_MAX_FAILURES_PER_USER = 5  # per user name and client address
LOGIN_MAX_FAILURES_PER_CLIENT = 30  # per client address, whatever the names
LOGIN_BACKOFF_S = 60  # [s] first back-off once a limit is reached; doubles with each failure
LOGIN_BACKOFF_MAX_S = 3600  # [s]
ANY_USER = "*"  # the login guard's row for a client address (no account name can be "*")
PASSWORD_MIN_LENGTH = 12
PASSWORD_LONG_LENGTH = 16  # a passphrase this long needs no mix of character classes
# the most used passwords and the city's own words: refused whatever their length
COMMON_PASSWORDS = frozenset(
    {
        "123456789012",
        "1234567890123",
        "12345678901234",
        "123456789abc",
        "1q2w3e4r5t6y",
        "1qaz2wsx3edc",
        "1qaz@wsx3edc",
        "a1b2c3d4e5f6",
        "aa123456789a",
        "abc123456789",
        "abcd12345678",
        "abcdefghijkl",
        "admin1234567",
        "admin@123456",
        "administrator",
        "changeme1234",
        "chengdu12345",
        "chengdu@2024",
        "chengdu@2025",
        "chengdu@2026",
        "iloveyou1234",
        "letmein12345",
        "password1234",
        "password@123",
        "passw0rd1234",
        "p@ssw0rd1234",
        "p@ssword1234",
        "qwerty123456",
        "qwertyuiop12",
        "qwer1234qwer",
        "welcome12345",
        "welcome@1234",
        "zaq12wsxcde3",
        "cityops12345",
        "cityops@2026",
        "woaini123456",
        "woaini1314520",
    }
)

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


def password_problem(password: str, username: str = "") -> str | None:
    """Why ``password`` is not good enough for ``username``, or None: ``short`` (fewer than 12
    characters), ``username`` (it is or contains the name), ``common`` (a well-known password)
    or ``simple`` (fewer than 3 of lower case, upper case, digits, other characters, unless it
    has at least 16 characters). The catalogue key ``password.<reason>`` says it to a person."""
    if len(password) < PASSWORD_MIN_LENGTH:
        return "short"
    lowered = password.lower()
    name = username.strip().lower()
    bare = name.removeprefix(SSO_PREFIX)
    if name and (lowered == name or (len(bare) >= 3 and bare in lowered)):
        return "username"
    if lowered in COMMON_PASSWORDS or len(set(lowered)) <= 2:
        return "common"
    classes = (
        any(c.islower() for c in password)
        + any(c.isupper() for c in password)
        + any(c.isdigit() for c in password)
        + any(not c.isalnum() for c in password)
    )
    if classes < 3 and len(password) < PASSWORD_LONG_LENGTH:
        return "simple"
    return None


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


def csrf_token(session_token: str) -> str:
    """The anti-forgery token of a session: an HMAC keyed with the session's secret token, so
    the server recomputes it on every request without storing it, and a page on another site
    (which can neither read the cookie nor the token) cannot send it."""
    mac = hmac.new(session_token.encode("utf-8"), b"cityops-csrf-v1", hashlib.sha256)
    return mac.hexdigest()


def session_expiry(now: datetime, created_at: datetime) -> datetime:
    """Sliding idle timeout, capped by the absolute lifetime."""
    return min(
        now + timedelta(seconds=SESSION_IDLE_S), created_at + timedelta(seconds=SESSION_MAX_S)
    )


@dataclass(frozen=True, slots=True)
class GuardRow:
    """One counter of the login guard: failures in the current streak (attempts being checked
    included), when the last attempt was, and the back-off."""

    failures: int
    last_at: datetime
    blocked_until: datetime | None


def login_backoff_s(over: int) -> float:
    """[s] of back-off after the limit was reached and ``over`` more failures followed."""
    return float(min(LOGIN_BACKOFF_S * 2 ** min(over, 20), LOGIN_BACKOFF_MAX_S))


def claim_login(row: GuardRow | None, now: datetime, limit: int) -> GuardRow | None:
    """The counter after this attempt claims a password check, or None when the attempt is
    refused unchecked (backing off). A claim counts as a failure until the check succeeds, and
    the claim that reaches ``limit`` sets the back-off at once: so parallel attempts, which
    claim one after the other under a row lock, check at most ``limit`` passwords, and after
    the back-off one attempt at a time is checked, each failure doubling the next back-off.
    A streak is forgotten ``LOGIN_WINDOW_S`` after its last attempt or back-off ended."""
    failures = 0
    if row is not None:
        if row.blocked_until is not None and row.blocked_until > now:
            return None
        quiet_since = max(row.last_at, row.blocked_until or row.last_at)
        if now - quiet_since < timedelta(seconds=LOGIN_WINDOW_S):
            failures = row.failures
    failures += 1
    blocked = (
        now + timedelta(seconds=login_backoff_s(failures - limit)) if failures >= limit else None
    )
    return GuardRow(failures, now, blocked)
