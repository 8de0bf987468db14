"""Notification routes and deliveries: ``notification_routes`` (who hears of what, over which
channel) and ``notification_deliveries`` (one per event and matching route: pending, delivered,
failed, or suppressed with its reason; leased to one worker while it sends)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from alerts.notify import Route, parse_route_row, route_problem

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


def write_route(conn: psycopg.Connection, route: Route) -> int:
    """Add a notification route (``route.route_id`` is ignored); returns its id. A route that
    could never be delivered to (``alerts.notify.route_problem``) raises ValueError."""
    problem = route_problem(route)
    if problem:
        raise ValueError(f"route {route.name!r}: {problem}")
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


def read_routes(conn: psycopg.Connection) -> list[Route]:
    """The enabled routes, in the order they were added."""
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
