"""Pure detectors: readings in, events out. No broker, database, clock or environment here.

Each detector is written once as a *step* over one reading (what the streaming engine calls, with
its state kept per sensor and quantity) and, where useful, as an array function over a series
(what tests, back-fills and the evaluation call). Values are in the quantity's canonical unit
(sensors/quantities.py); times are epoch microseconds [us] unless a name says otherwise.

Common input rules, applied by every detector:

* a value that is NaN or infinite is ignored (the decoder never lets one through, but series
  read back from the database or built by hand may carry them as gaps);
* a reading not newer than the last one evaluated for the same sensor and quantity (a duplicate,
  a redelivery after a restart, or a late, out-of-order reading) is ignored: detector state only
  moves forward in time, so replaying a stream cannot raise anything twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sensors.catalogue import QuantityLimits

ThresholdKind = Literal["threshold_low", "threshold_high"]
THRESHOLD_LOW: ThresholdKind = "threshold_low"
THRESHOLD_HIGH: ThresholdKind = "threshold_high"


@dataclass(frozen=True, slots=True)
class ThresholdState:
    """What the threshold detector remembers per sensor and quantity."""

    last_ts_us: int | None = None  # newest reading evaluated [us]
    active: ThresholdKind | None = None  # the limit currently violated, if any


@dataclass(frozen=True, slots=True)
class ThresholdEvent:
    event: Literal["raised", "cleared"]
    kind: ThresholdKind
    ts_us: int  # time of the reading that caused the event [us]
    value: float  # that reading [canonical unit]
    limit: float  # the violated limit [canonical unit]


def step_threshold(
    state: ThresholdState, limits: QuantityLimits, ts_us: int, value: float
) -> tuple[ThresholdState, tuple[ThresholdEvent, ...]]:
    """Threshold with hysteresis (deadband), one reading at a time.

    Method (ISA-18.2 / IEC 62682 "deadband"): raise ``threshold_high`` when the value goes above
    ``alarm_high`` (``threshold_low`` when below ``alarm_low``); a value exactly on a limit is
    inside. Clear only once the value is back inside by the deadband: at or below
    ``alarm_high - deadband`` (at or above ``alarm_low + deadband``). A value that jumps from one
    side straight past the other limit clears the first alert and raises the other.

    Parameters from the sensor catalogue (``sensor_type_quantities``): ``alarm_low``,
    ``alarm_high`` (``None``: no such limit) and ``deadband`` [canonical unit].
    """
    if not math.isfinite(value):
        return state, ()
    if state.last_ts_us is not None and ts_us <= state.last_ts_us:
        return state, ()
    events: list[ThresholdEvent] = []
    active = state.active
    high, low, band = limits.alarm_high, limits.alarm_low, limits.deadband
    if active == THRESHOLD_HIGH and high is not None:
        if value <= high - band:
            events.append(ThresholdEvent("cleared", THRESHOLD_HIGH, ts_us, value, high))
            active = None
    elif active == THRESHOLD_LOW and low is not None:
        if value >= low + band:
            events.append(ThresholdEvent("cleared", THRESHOLD_LOW, ts_us, value, low))
            active = None
    elif active is not None:
        # the limit was removed from the catalogue while an alert was active: clear it
        events.append(ThresholdEvent("cleared", active, ts_us, value, math.nan))
        active = None
    if active is None:
        if high is not None and value > high:
            events.append(ThresholdEvent("raised", THRESHOLD_HIGH, ts_us, value, high))
            active = THRESHOLD_HIGH
        elif low is not None and value < low:
            events.append(ThresholdEvent("raised", THRESHOLD_LOW, ts_us, value, low))
            active = THRESHOLD_LOW
    return ThresholdState(ts_us, active), tuple(events)


def detect_threshold(
    ts_us: Sequence[int],
    values: Sequence[float],
    limits: QuantityLimits,
    state: ThresholdState = ThresholdState(),
) -> tuple[ThresholdState, list[ThresholdEvent]]:
    """``step_threshold`` over a series in arrival order; returns the final state and events."""
    if len(ts_us) != len(values):
        raise ValueError("ts_us and values differ in length")
    events: list[ThresholdEvent] = []
    for t, v in zip(ts_us, values, strict=True):
        state, evs = step_threshold(state, limits, int(t), float(v))
        events.extend(evs)
    return state, events
