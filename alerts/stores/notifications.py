"""Notification routes and deliveries: ``notification_routes`` (who hears of what, over which
channel) and ``notification_deliveries`` (one per event and matching route: pending, delivered,
failed, or suppressed with its reason; leased to one worker while it sends).

A route's target (URL, or SMTP server with its credentials), recipient (e-mail addresses, phone
number) and secret (HMAC key) are stored as SM4-GCM envelopes (``cityops.kernel.crypto``,
decision 0072). Routes are read as stored; ``open_route`` decrypts one for the attempt that
sends it, so planning never needs the keys and one undecryptable route fails alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from alerts.notify import Route, parse_route_row, route_problem
from cityops.kernel.crypto import (
    Keyring,
    decrypt_optional,
    decrypt_secret,
    encrypt_optional,
    encrypt_secret,
    envelope_key_id,
    is_encrypted,
)

_ROUTE_COLUMNS = sql.SQL(
    "r.route_id, r.name, r.channel, r.target, r.recipient, r.secret, r.min_severity,"
    " r.utilities, r.districts, r.events"
)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to this worker, with its route."""

    delivery_id: int
    event_id: int
    attempts: int  # failed attempts so far
    route: Route


def seal_route(route: Route, keyring: Keyring) -> Route:
    """The route with its target, recipient and secret encrypted under the active SM4 key."""
    return dataclasses.replace(
        route,
        target=encrypt_secret(route.target, keyring),
        recipient=encrypt_optional(route.recipient, keyring),
        secret=encrypt_optional(route.secret, keyring),
    )


def open_route(route: Route, keyring: Keyring) -> Route:
    """The route as it was written: its envelopes decrypted (plain values, from before
    encryption, pass as they are). CryptoError when a key is not in ``keyring``."""
    return dataclasses.replace(
        route,
        target=decrypt_secret(route.target, keyring),
        recipient=decrypt_optional(route.recipient, keyring),
        secret=decrypt_optional(route.secret, keyring),
    )


def write_route(conn: psycopg.Connection, route: Route, keyring: Keyring) -> int:
    """Add a notification route (``route.route_id`` is ignored), its secrets encrypted with the
    key ring's active SM4 key; returns its id. A route that could never be delivered to
    (``alerts.notify.route_problem``) raises ValueError; no active key, CryptoError."""
    problem = route_problem(route)
    if problem:
        raise ValueError(f"route {route.name!r}: {problem}")
    route = seal_route(route, keyring)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO notification_routes (name, channel, target, recipient, secret,"
            " min_severity, utilities, districts, events) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING route_id",
            (
                route.name,
                route.channel,
                route.target,
                route.recipient,
                route.secret,
                route.min_severity,
                list(route.utilities) if route.utilities is not None else None,
                list(route.districts) if route.districts is not None else None,
                list(route.events),
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def reencrypt_routes(conn: psycopg.Connection, keyring: Keyring) -> tuple[int, int]:
    """Every route's target, recipient and secret under the active SM4 key: plain values
    (written before encryption) are encrypted, values under older keys re-encrypted. Returns
    (routes changed, routes in all). One transaction with the rows locked, so a concurrent
    writer waits; values already under the active key are left alone."""
    active_id, _key = keyring.active_sm4()
    changed = total = 0
    with conn.transaction():
        rows = conn.execute(
            "SELECT route_id, target, recipient, secret FROM notification_routes"
            " ORDER BY route_id FOR UPDATE"
        ).fetchall()
        for route_id, *values in rows:
            total += 1
            if all(v is None or envelope_key_id(v) == active_id for v in values):
                continue
            fresh = [
                None if v is None else encrypt_secret(decrypt_secret(v, keyring), keyring)
                for v in values
            ]
            conn.execute(
                "UPDATE notification_routes SET target = %s, recipient = %s, secret = %s"
                " WHERE route_id = %s",
                (*fresh, route_id),
            )
            changed += 1
    return changed, total


def count_route_keys(conn: psycopg.Connection) -> dict[str, int]:
    """SM4 key id (``plain`` for values not yet encrypted) -> stored route values under it:
    what ``cityops keys revoke`` checks before deleting a key."""
    counts: dict[str, int] = {}
    for row in conn.execute("SELECT target, recipient, secret FROM notification_routes"):
        for v in row:
            if v is not None:
                key = envelope_key_id(v) if is_encrypted(v) else "plain"
                counts[key or "plain"] = counts.get(key or "plain", 0) + 1
    return counts


def read_routes(conn: psycopg.Connection) -> list[Route]:
    """The enabled routes, in the order they were added, as stored (secrets encrypted:
    ``open_route`` decrypts one)."""
    return [
        parse_route_row(r)
        for r in conn.execute(
            sql.SQL("SELECT ")
            + _ROUTE_COLUMNS
            + sql.SQL(" FROM notification_routes r WHERE r.enabled ORDER BY r.route_id")
        )
    ]


def count_recent(conn: psycopg.Connection, since: datetime) -> dict[int, int]:
    """route id -> deliveries it was not spared (not suppressed) since ``since``."""
    return dict(
        conn.execute(
            "SELECT route_id, count(*) FROM notification_deliveries"
            " WHERE status <> 'suppressed' AND created_at > %s GROUP BY route_id",
            (since,),
        ).fetchall()
    )


def add_delivery(
    conn: psycopg.Connection, event_id: int, route_id: int, now: datetime, suppressed: str | None
) -> int:
    """One delivery of an event on a route, due at ``now``: pending, or suppressed for the
    reason given. Returns 1, or 0 when that event already has one on that route."""
    cur = conn.execute(
        "INSERT INTO notification_deliveries (event_id, route_id, next_attempt_at,"
        " status, suppressed_reason, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (event_id, route_id, now, "suppressed" if suppressed else "pending", suppressed, now),
    )
    return cur.rowcount


def claim_deliveries(
    conn: psycopg.Connection,
    *,
    now: datetime,
    worker: str = "",
    lease_s: float = 300.0,
    limit: int = 20,
) -> list[Claimed]:
    """Due deliveries, leased to ``worker`` for ``lease_s`` [s] (longer than ``limit`` sends at
    their 10 s timeouts) so that no other worker takes them meanwhile; a worker that dies
    mid-send delays them by the lease at most, or less when it restarts (``release_leases``)."""
    with conn.transaction():
        rows = conn.execute(
            sql.SQL("SELECT d.delivery_id, d.event_id, d.attempts, ")
            + _ROUTE_COLUMNS
            + sql.SQL(
                " FROM notification_deliveries d"
                " JOIN notification_routes r ON r.route_id = d.route_id"
                " WHERE d.status = 'pending' AND d.next_attempt_at <= %s"
                " ORDER BY d.next_attempt_at, d.delivery_id LIMIT %s"
                " FOR UPDATE OF d SKIP LOCKED"
            ),
            (now, limit),
        ).fetchall()
        if rows:
            conn.execute(
                "UPDATE notification_deliveries SET next_attempt_at = %s, leased_by = %s"
                " WHERE delivery_id = ANY(%s)",
                (now + timedelta(seconds=lease_s), worker, [r[0] for r in rows]),
            )
    return [Claimed(r[0], r[1], r[2], parse_route_row(r[3:])) for r in rows]


def release_leases(conn: psycopg.Connection, worker: str, *, now: datetime) -> int:
    """A restarted worker takes back what its previous incarnation had claimed: with one client
    id per worker, the earlier process holding that id is gone."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE notification_deliveries SET next_attempt_at = %s"
            " WHERE status = 'pending' AND leased_by = %s AND next_attempt_at > %s",
            (now, worker, now),
        )
    return cur.rowcount


def record_delivered(conn: psycopg.Connection, delivery_id: int, *, now: datetime) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE notification_deliveries SET status = 'delivered', delivered_at = %s,"
            " attempts = attempts + 1, last_error = NULL WHERE delivery_id = %s",
            (now, delivery_id),
        )


def record_failure(
    conn: psycopg.Connection, delivery_id: int, error: str, next_attempt_at: datetime | None
) -> None:
    """A failed attempt: retry at ``next_attempt_at``, or give up (``failed``) when None."""
    with conn.transaction():
        conn.execute(
            "UPDATE notification_deliveries SET attempts = attempts + 1, last_error = %s,"
            " status = CASE WHEN %s::timestamptz IS NULL THEN 'failed' ELSE status END,"
            " next_attempt_at = coalesce(%s::timestamptz, next_attempt_at)"
            " WHERE delivery_id = %s",
            (error[:500], next_attempt_at, next_attempt_at, delivery_id),
        )
