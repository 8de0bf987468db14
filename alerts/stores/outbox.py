"""The transactional outbox and the dead letters: ``alert_events`` (every alert event, written
in the transaction that changed the alert, then published on MQTT and routed to notifications)
and ``alert_dead_letters`` (telemetry messages the database refused for good)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

OUTBOX_GRACE_S = 10.0
DEAD_LETTER_MAX_BYTES = 65536


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    event_id: int
    alert_id: int | None  # None: a source loss's event (alerts/source_loss.py LossNotice)
    topic: str
    payload: bytes  # the alert event JSON (alerts/events.py), or the loss notice JSON


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_letter_id: int
    received_at: datetime
    topic: str
    payload: bytes  # the first DEAD_LETTER_MAX_BYTES
    payload_bytes: int
    error: str


def _json(payload: bytes) -> Jsonb:
    """The encoded event as jsonb, as it is (no decoding and encoding again)."""
    return Jsonb(payload.decode(), dumps=lambda s: s)


def queue_events(
    conn: psycopg.Connection, events: Sequence[tuple[int, str, str, bytes]]
) -> list[OutboxEvent]:
    """Outbox rows for ``(alert_id, event, topic, payload)``, in order, in one INSERT."""
    if not events:
        return []
    rows = conn.execute(
        """
        INSERT INTO alert_events (alert_id, event, topic, payload)
        SELECT u.alert_id, u.event, u.topic, u.payload
        FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::jsonb[])
             WITH ORDINALITY AS u(alert_id, event, topic, payload, n)
        ORDER BY u.n
        RETURNING event_id
        """,
        (
            [e[0] for e in events],
            [e[1] for e in events],
            [e[2] for e in events],
            [_json(e[3]) for e in events],
        ),
    ).fetchall()
    ids = sorted(r[0] for r in rows)  # sequence values follow the ORDER BY: the rows in order
    return [
        OutboxEvent(event_id, alert_id, topic, payload)
        for event_id, (alert_id, _event, topic, payload) in zip(ids, events, strict=True)
    ]


def queue_loss_events(
    conn: psycopg.Connection, events: Sequence[tuple[int, str, str, bytes]]
) -> list[OutboxEvent]:
    """Outbox rows for ``(source_loss_id, event, topic, payload)``: each loss's event at most
    once (migration 0079's unique index), so a step written again after a restart adds none.
    Returns the rows added."""
    added = []
    for loss_id, event, topic, payload in events:
        row = conn.execute(
            "INSERT INTO alert_events (source_loss_id, event, topic, payload)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING event_id",
            (loss_id, event, topic, _json(payload)),
        ).fetchone()
        if row is not None:
            added.append(OutboxEvent(int(row[0]), None, topic, payload))
    return added


def read_unpublished_events(
    conn: psycopg.Connection, *, min_age_s: float = OUTBOX_GRACE_S, limit: int = 1000
) -> list[OutboxEvent]:
    """Events left unpublished for at least ``min_age_s`` [s]: the worker that wrote an event
    publishes it itself within milliseconds, so the sweep only picks up what a stopped (or
    another, crashed) worker left behind, instead of publishing a busy worker's events twice."""
    rows = conn.execute(
        "SELECT event_id, alert_id, topic, payload::text FROM alert_events"
        " WHERE published_at IS NULL AND created_at <= now() - make_interval(secs => %s)"
        " ORDER BY event_id LIMIT %s",
        (min_age_s, limit),
    ).fetchall()
    if not conn.autocommit:
        conn.commit()
    return [OutboxEvent(r[0], r[1], r[2], r[3].encode()) for r in rows]


def mark_published(conn: psycopg.Connection, event_ids: Sequence[int]) -> None:
    if not event_ids:
        return
    with conn.transaction():
        # a lost mark only means publishing again (at least once)
        conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute(
            "UPDATE alert_events SET published_at = now()"
            " WHERE event_id = ANY(%s) AND published_at IS NULL",
            (list(event_ids),),
        )


def lock_unrouted(conn: psycopg.Connection, limit: int) -> list[tuple[int, int | None, bytes]]:
    """``(event_id, alert_id, payload)`` of events not yet routed to notifications, oldest
    first, locked for this transaction (other workers skip them); alert_id None for a source
    loss's event."""
    rows = conn.execute(
        "SELECT event_id, alert_id, payload::text FROM alert_events WHERE routed_at IS NULL"
        " ORDER BY event_id LIMIT %s FOR UPDATE SKIP LOCKED",
        (limit,),
    ).fetchall()
    return [(r[0], r[1], r[2].encode()) for r in rows]


def mark_routed(conn: psycopg.Connection, event_ids: Sequence[int]) -> None:
    if event_ids:
        conn.execute(
            "UPDATE alert_events SET routed_at = now() WHERE event_id = ANY(%s)",
            (list(event_ids),),
        )


def read_payloads(conn: psycopg.Connection, event_ids: Sequence[int]) -> dict[int, bytes]:
    """event id -> its alert event JSON."""
    return {
        r[0]: r[1].encode()
        for r in conn.execute(
            "SELECT event_id, payload::text FROM alert_events WHERE event_id = ANY(%s)",
            (list(event_ids),),
        )
    }


def write_dead_letter(
    conn: psycopg.Connection, topic: str, payload: bytes, error: str, *, received_at: datetime
) -> int:
    """Keep a telemetry message the engine could not store (bounded: the first 64 KiB of the
    payload, its full size alongside); returns its id."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO alert_dead_letters (received_at, topic, payload, payload_bytes, error)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING dead_letter_id",
            (
                received_at,
                topic[:1024],
                bytes(payload[:DEAD_LETTER_MAX_BYTES]),
                len(payload),
                error[:2000],
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def read_dead_letters(conn: psycopg.Connection, *, limit: int = 20) -> list[DeadLetter]:
    """The newest dead letters first (``cityops dead-letters``, the dashboard)."""
    return [
        DeadLetter(r[0], r[1], r[2], bytes(r[3]), r[4], r[5])
        for r in conn.execute(
            "SELECT dead_letter_id, received_at, topic, payload, payload_bytes, error"
            " FROM alert_dead_letters ORDER BY dead_letter_id DESC LIMIT %s",
            (limit,),
        )
    ]
