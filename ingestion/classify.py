"""Classify telemetry messages: decode at the boundary, then check against the catalogue.

Pure: no broker, database, clock or environment. A message is stored whole or quarantined whole
with one machine-readable reason (docs/ingestion.md lists them).

Two stages, so that the catalogue check can run again with a fresher catalogue at write time:

* ``decode_item`` (topic + payload -> ``Decoded`` or ``Rejection``), done as soon as the worker
  takes the message off the queue;
* ``check_catalogue`` (``Decoded`` + ``Catalogue`` -> rows or ``Rejection``), done just before the
  batch is written.

Quality flag (``readings.quality``, a bit set): ``QUALITY_SUSPECT`` (1) marks a value that is
physically possible but outside the plausible band of its sensor type: the alarm range widened by
``PLAUSIBLE_SPAN_FACTOR`` times its span on each side (see ``compute_plausible_band``). Such values
are stored and flagged, never dropped: a real emergency can look implausible. Values outside the
quantity's physical limits, sentinel values and non-finite numbers are quarantined by the decoder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from sensors.payload import PayloadError, Reading, TimeWindow, decode_message
from sensors.quantities import QUANTITIES
from sensors.topics import TelemetryTopic, TopicError, parse_telemetry_topic

QUALITY_GOOD = 0
QUALITY_SUSPECT = 1
PLAUSIBLE_SPAN_FACTOR = 5.0

# one row for the staging table: sensor_id, quantity, ts [us], value [canonical unit], seq, quality
Row = tuple[str, str, int, float, int | None, int]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message is quarantined: ``reason`` is a stable code, ``detail`` free text."""

    reason: str
    detail: str = ""
    sensor_id: str | None = None


@dataclass(frozen=True, slots=True)
class Decoded:
    sensor_id: str
    utility: str
    readings: list[Reading]


@dataclass(frozen=True, slots=True)
class SensorEntry:
    utility: str
    sensor_type: str
    active: bool


@dataclass(frozen=True, slots=True)
class Catalogue:
    """What the ingestor needs of the catalogue: sensors, and per sensor type its quantities with
    the plausible band [canonical unit] of each."""

    sensors: Mapping[str, SensorEntry]
    type_quantities: Mapping[str, Mapping[str, tuple[float, float]]]

    @classmethod
    def empty(cls) -> Catalogue:
        return cls({}, {})


def compute_plausible_band(
    quantity: str, alarm_low: float | None, alarm_high: float | None
) -> tuple[float, float]:
    """The band [canonical unit] outside which a value is flagged suspect.

    The alarm range widened by ``PLAUSIBLE_SPAN_FACTOR`` spans on each side, where the span is
    ``alarm_high - alarm_low`` (or the one limit's magnitude when only one exists); a missing
    limit leaves that side at the physical limit. Always within the physical limits.
    """
    q = QUANTITIES.get(quantity)
    phys_lo = q.physical_min if q else -math.inf
    phys_hi = q.physical_max if q else math.inf
    if alarm_low is not None and alarm_high is not None:
        span = abs(alarm_high - alarm_low)
    else:
        span = abs(alarm_high if alarm_high is not None else (alarm_low or 0.0))
    lo = phys_lo if alarm_low is None else max(phys_lo, alarm_low - PLAUSIBLE_SPAN_FACTOR * span)
    hi = phys_hi if alarm_high is None else min(phys_hi, alarm_high + PLAUSIBLE_SPAN_FACTOR * span)
    return lo, hi


@lru_cache(maxsize=65_536)
def _parse_topic(topic: str) -> TelemetryTopic | str:
    """The topic's sensor and utility, or the reason it is refused (memoised: topics repeat)."""
    try:
        return parse_telemetry_topic(topic)
    except TopicError as exc:
        return exc.reason


def decode_item(
    topic: str, payload: bytes, retain: bool, now_us: int, window: TimeWindow
) -> Decoded | Rejection:
    """Decode one message; identity comes from the topic only."""
    t = _parse_topic(topic)
    if isinstance(t, str):
        return Rejection(t, "")
    if retain:
        # a retained message is a replay of something already delivered (or a stale one)
        return Rejection("retained_message", "", t.sensor_id)
    try:
        readings = decode_message(payload, t.sensor_id, now_us, window)
    except PayloadError as exc:
        return Rejection(exc.reason, exc.detail, t.sensor_id)
    return Decoded(t.sensor_id, t.utility.value, readings)


def check_catalogue(item: Decoded, catalogue: Catalogue) -> list[Row] | Rejection:
    """Rows to store for a decoded message, or why it is rejected."""
    sensor = catalogue.sensors.get(item.sensor_id)
    if sensor is None:
        return Rejection("unknown_sensor", "", item.sensor_id)
    if not sensor.active:
        return Rejection("sensor_retired", "", item.sensor_id)
    if sensor.utility != item.utility:
        return Rejection(
            "utility_mismatch",
            f"topic says {item.utility}, catalogue says {sensor.utility}",
            item.sensor_id,
        )
    bands = catalogue.type_quantities.get(sensor.sensor_type, {})
    rows: list[Row] = []
    for r in item.readings:
        band = bands.get(r.quantity)
        if band is None:
            return Rejection(
                "quantity_not_for_type", f"{r.quantity} for {sensor.sensor_type}", item.sensor_id
            )
        quality = QUALITY_GOOD if band[0] <= r.value <= band[1] else QUALITY_SUSPECT
        rows.append((r.sensor_id, r.quantity, r.ts_us, r.value, r.seq, quality))
    return rows


def sanitize_text(text: str, limit: int = 1000) -> str:
    """Text PostgreSQL accepts: no NUL, no lone surrogates, bounded length."""
    text = text[:limit]
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
