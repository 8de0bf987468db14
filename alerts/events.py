"""The alert event published on ``city/alerts/<utility>/<sensor_id>`` (pure; docs/alerts.md).

Delivery is at least once (QoS 1 from a transactional outbox): a subscriber deduplicates on
``(alert_id, event)``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, datetime

import msgspec

from alerts.engine import AlertChange
from alerts.messages import escalation_messages
from sensors.quantities import QUANTITIES
from sensors.topics import alert_topic

EVENT_VERSION = 1


class Messages(msgspec.Struct, frozen=True):
    zh: str
    en: str


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True):
    v: int = EVENT_VERSION
    alert_id: int
    event: str  # raised | cleared | escalated
    sensor_id: str
    utility: str
    quantity: str
    kind: str
    severity: str
    value: float  # [canonical unit of quantity]
    limit: float | None  # [canonical unit of quantity]
    unit: str
    ts: str  # RFC 3339, UTC: the reading that caused the event
    messages: Messages
    level: int | None = None  # escalation level of an ``escalated`` event


def rfc3339_from_us(ts_us: int) -> str:
    return (
        datetime.fromtimestamp(ts_us / 1e6, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def build_alert_event(alert_id: int, change: AlertChange, unit: str) -> AlertEvent:
    limit = change.limit if change.limit is not None and math.isfinite(change.limit) else None
    return AlertEvent(
        alert_id=alert_id,
        event=change.event,
        sensor_id=change.sensor_id,
        utility=change.utility,
        quantity=change.quantity,
        kind=change.kind,
        severity=change.severity,
        value=change.value,
        limit=limit,
        unit=unit,
        ts=rfc3339_from_us(change.ts_us),
        messages=Messages(change.message_zh, change.message_en),
    )


OutboxRow = tuple[int, str, str, bytes]  # (alert_id, event, topic, payload): an outbox row


def unit_of(quantity: str) -> str:
    q = QUANTITIES.get(quantity)
    return q.unit if q else ""


def change_row(alert_id: int, change: AlertChange) -> OutboxRow:
    """The outbox row announcing a raise or a clear."""
    event = build_alert_event(alert_id, change, unit_of(change.quantity))
    topic = alert_topic(change.utility, change.sensor_id)
    return alert_id, change.event, topic, encode_alert_event(event)


def escalation_row(alert_id: int, raised: AlertChange, now_us: int, level: int) -> OutboxRow:
    """The outbox row saying that nobody acknowledged an alert in time: its last value, the
    minutes since its reading (``raised.ts_us``) at ``now_us`` [us], the level reached."""
    minutes = (now_us - raised.ts_us) // (60 * 1_000_000)
    zh, en = escalation_messages(raised.sensor_id, raised.quantity, raised.kind, minutes, level)
    told = replace(raised, ts_us=now_us, message_zh=zh, message_en=en)
    event = build_alert_event(alert_id, told, unit_of(raised.quantity))
    event = msgspec.structs.replace(event, event="escalated", level=level)
    topic = alert_topic(raised.utility, raised.sensor_id)
    return alert_id, "escalated", topic, encode_alert_event(event)


_decoder = msgspec.json.Decoder(AlertEvent)


def encode_alert_event(event: AlertEvent) -> bytes:
    return msgspec.json.encode(event)


def decode_alert_event(payload: bytes) -> AlertEvent:
    return _decoder.decode(payload)
