"""PostgreSQL adapter of the alerts part: the only module here that runs SQL.

Tables owned: ``alerts`` (0001, extended by 0020+), ``alert_detector_state``, ``alert_events``
(outbox). Reads ``sensors`` and ``sensor_type_quantities`` (the limits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from alerts.detectors import THRESHOLD_HIGH, THRESHOLD_LOW, ThresholdState
from alerts.engine import AlertChange, Evaluation, Key, SensorInfo
from alerts.events import build_alert_event, encode_alert_event
from sensors.catalogue import QuantityLimits
from sensors.quantities import QUANTITIES
from sensors.topics import alert_topic


def ts_from_us(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1e6, UTC)


def us_from_ts(ts: datetime) -> int:
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    event_id: int
    alert_id: int
    topic: str
    payload: bytes


def read_sensors(conn: psycopg.Connection) -> dict[str, SensorInfo]:
    """Active sensors with their type's limits per quantity (``sensor_type_quantities``)."""
    rows = conn.execute(
        """
        SELECT s.sensor_id, s.utility, s.sensor_type,
               q.quantity, q.alarm_low, q.alarm_high, q.deadband
        FROM sensors s
        LEFT JOIN sensor_type_quantities q ON q.type_id = s.sensor_type
        WHERE s.status = 'active'
        ORDER BY s.sensor_id
        """
    ).fetchall()
    limits: dict[str, dict[str, QuantityLimits]] = {}
    meta: dict[str, tuple[str, str]] = {}
    for sid, utility, stype, quantity, low, high, band in rows:
        meta[sid] = (utility, stype)
        per = limits.setdefault(sid, {})
        if quantity is not None:
            per[quantity] = QuantityLimits(quantity, low, high, float(band or 0.0))
    return {sid: SensorInfo(sid, u, t, limits[sid]) for sid, (u, t) in meta.items()}


def read_states(conn: psycopg.Connection) -> dict[Key, ThresholdState]:
    """Detector state as committed: last evaluated reading and the active threshold alerts."""
    last: dict[Key, int] = {
        (sid, q): us_from_ts(ts)
        for sid, q, ts in conn.execute(
            "SELECT sensor_id, quantity, last_ts FROM alert_detector_state"
        )
    }
    active: dict[Key, str] = {
        (sid, q): kind
        for sid, q, kind in conn.execute(
            "SELECT sensor_id, quantity, kind FROM alerts"
            " WHERE cleared_at IS NULL AND kind = ANY(%s)",
            ([THRESHOLD_LOW, THRESHOLD_HIGH],),
        )
    }
    out: dict[Key, ThresholdState] = {}
    for key in last.keys() | active.keys():
        kind = active.get(key)
        out[key] = ThresholdState(
            last.get(key),
            THRESHOLD_LOW if kind == THRESHOLD_LOW else THRESHOLD_HIGH if kind else None,
        )
    return out


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def write_evaluation(conn: psycopg.Connection, evaluation: Evaluation) -> list[OutboxEvent]:
    """Store one evaluated batch in one transaction; returns the events to publish.

    A raise that finds the condition already active (unique index ``alerts_one_active_idx``)
    and a clear that finds nothing active change nothing and publish nothing: replays are
    harmless.
    """
    events: list[OutboxEvent] = []
    with conn.transaction():
        for ch in evaluation.changes:
            alert_id = _apply_change(conn, ch)
            if alert_id is None:
                continue
            ev = build_alert_event(alert_id, ch, _unit(ch.quantity))
            payload = encode_alert_event(ev)
            topic = alert_topic(ch.utility, ch.sensor_id)
            row = conn.execute(
                "INSERT INTO alert_events (alert_id, event, topic, payload)"
                " VALUES (%s, %s, %s, %s) RETURNING event_id",
                (alert_id, ch.event, topic, Jsonb(payload.decode(), dumps=lambda s: s)),
            ).fetchone()
            assert row is not None
            events.append(OutboxEvent(row[0], alert_id, topic, payload))
        if evaluation.states:
            keys = [k for k, s in evaluation.states.items() if s.last_ts_us is not None]
            conn.execute(
                """
                INSERT INTO alert_detector_state (sensor_id, quantity, last_ts)
                SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[])
                ON CONFLICT (sensor_id, quantity) DO UPDATE
                SET last_ts = GREATEST(alert_detector_state.last_ts, EXCLUDED.last_ts),
                    updated_at = now()
                """,
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [ts_from_us(evaluation.states[k].last_ts_us or 0) for k in keys],
                ),
            )
    return events


def _unit(quantity: str) -> str:
    q = QUANTITIES.get(quantity)
    return q.unit if q else ""


def _apply_change(conn: psycopg.Connection, ch: AlertChange) -> int | None:
    ts = ts_from_us(ch.ts_us)
    if ch.event == "raised":
        row = conn.execute(
            """
            INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state, raised_at,
                                value, limit_value, last_value, message_zh, message_en)
            VALUES (%s, %s, %s, %s, %s, 'open', %s, %s, %s, %s, %s, %s)
            ON CONFLICT (sensor_id, quantity, kind) WHERE cleared_at IS NULL DO NOTHING
            RETURNING alert_id
            """,
            (
                ch.sensor_id,
                ch.utility,
                ch.quantity,
                ch.kind,
                ch.severity,
                ts,
                ch.value,
                _finite(ch.limit),
                ch.value,
                ch.message_zh,
                ch.message_en,
            ),
        ).fetchone()
        return row[0] if row else None
    # cleared: the condition is over; an alert nobody is working on is resolved by the system
    row = conn.execute(
        """
        UPDATE alerts SET cleared_at = %s, last_value = %s, updated_at = now(),
               state = CASE WHEN state IN ('open', 'acknowledged') THEN 'resolved' ELSE state END
        WHERE sensor_id = %s AND quantity = %s AND kind = %s AND cleared_at IS NULL
        RETURNING alert_id
        """,
        (ts, ch.value, ch.sensor_id, ch.quantity, ch.kind),
    ).fetchone()
    return row[0] if row else None


def read_unpublished_events(conn: psycopg.Connection, limit: int = 1000) -> list[OutboxEvent]:
    rows = conn.execute(
        "SELECT event_id, alert_id, topic, payload::text FROM alert_events"
        " WHERE published_at IS NULL ORDER BY event_id LIMIT %s",
        (limit,),
    ).fetchall()
    conn.commit()
    return [OutboxEvent(r[0], r[1], r[2], r[3].encode()) for r in rows]


def mark_published(conn: psycopg.Connection, event_ids: Sequence[int]) -> None:
    if not event_ids:
        return
    with conn.transaction():
        conn.execute(
            "UPDATE alert_events SET published_at = now()"
            " WHERE event_id = ANY(%s) AND published_at IS NULL",
            (list(event_ids),),
        )
