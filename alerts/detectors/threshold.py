"""Threshold with hysteresis and on-delay: always on where the catalogue has limits.

Method (ISA-18.2 / IEC 62682 "deadband"): raise ``threshold_high`` when the value goes above
``alarm_high`` (``threshold_low`` when below ``alarm_low``); a value exactly on a limit is
inside. Clear only once the value is back inside by the deadband. Limits come from the sensor
catalogue (``sensor_type_quantities``) or the sensor's own ``sensor_limit_overrides``; a
``threshold`` row of ``alert_detector_settings`` only tunes the on-delay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import msgspec

from alerts.detectors.base import Detector, Observation, Setting, Signal
from alerts.messages import threshold_messages, threshold_severity
from sensors.catalogue import QuantityLimits

ThresholdKind = Literal["threshold_low", "threshold_high"]
THRESHOLD_LOW: ThresholdKind = "threshold_low"
THRESHOLD_HIGH: ThresholdKind = "threshold_high"

# On-delay (consecutive readings beyond a limit before the threshold raises) is 1 by default:
# a process alarm pages at once. A single spurious reading is caught by the spike test, and
# its process alarm is then put down to the sensor (alerts/incidents.py: an incident of one
# sensor that shows a fault is a sensor_health incident). Sites with noisy sensors can ask for
# 2 or more with a 'threshold' row ({"on_delay": 2}), at the cost of one reporting interval.
DEFAULT_ON_DELAY = 1


class ThresholdState(msgspec.Struct, frozen=True):
    """What the threshold detector remembers per sensor and quantity (array form)."""

    last_ts_us: int | None = None  # newest reading evaluated [us]
    active: ThresholdKind | None = None  # the limit currently violated, if any
    pending: ThresholdKind | None = None  # beyond this limit, not yet for ``on_delay`` readings
    pending_count: int = 0  # consecutive readings beyond ``pending``


class ThresholdEvent(msgspec.Struct, frozen=True):
    event: Literal["raised", "cleared"]
    kind: ThresholdKind
    ts_us: int  # time of the reading that caused the event [us]
    value: float  # that reading [canonical unit]
    limit: float  # the violated limit [canonical unit]


def step_threshold(
    state: ThresholdState,
    limits: QuantityLimits,
    ts_us: int,
    value: float,
    *,
    on_delay: int = 1,
) -> tuple[ThresholdState, tuple[ThresholdEvent, ...]]:
    """Threshold with hysteresis (deadband), one reading at a time.

    Raise above ``alarm_high`` / below ``alarm_low``; clear at or below ``alarm_high -
    deadband`` (at or above ``alarm_low + deadband``). A value that jumps from one side straight
    past the other limit clears the first alert and raises the other. On-delay (ISA-18.2 "alarm
    on-delay"): raise only when ``on_delay`` consecutive readings are beyond the same limit, at
    the reading that completes the count. A non-finite value, or a reading not newer than the
    last, changes nothing. Limits and deadband [canonical unit]; ``None``: no such limit.
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
    pending: ThresholdKind | None = None
    count = 0
    if active is None:
        side: tuple[ThresholdKind, float] | None = None
        if high is not None and value > high:
            side = (THRESHOLD_HIGH, high)
        elif low is not None and value < low:
            side = (THRESHOLD_LOW, low)
        if side is not None:
            count = state.pending_count + 1 if state.pending == side[0] else 1
            if count >= on_delay:
                events.append(ThresholdEvent("raised", side[0], ts_us, value, side[1]))
                active, count = side[0], 0
            else:
                pending = side[0]
    return ThresholdState(ts_us, active, pending, count), tuple(events)


def detect_threshold(
    ts_us: Sequence[int],
    values: Sequence[float],
    limits: QuantityLimits,
    state: ThresholdState | None = None,
) -> tuple[ThresholdState, list[ThresholdEvent]]:
    """``step_threshold`` over a series in arrival order, from ``state`` (default: nothing
    seen); returns the final state and events."""
    state = state if state is not None else ThresholdState()
    if len(ts_us) != len(values):
        raise ValueError("ts_us and values differ in length")
    events: list[ThresholdEvent] = []
    for t, v in zip(ts_us, values, strict=True):
        state, evs = step_threshold(state, limits, int(t), float(v))
        events.extend(evs)
    return state, events


class OnDelay(msgspec.Struct, frozen=True):
    """Per key: the limit a run of readings is beyond, and how many so far."""

    pending: ThresholdKind | None = None
    count: int = 0


@dataclass(frozen=True, slots=True)
class Threshold(Detector[OnDelay]):
    """The catalogue's limits; severity by utility, quantity and side (alerts/messages.py)."""

    name: ClassVar[str] = "threshold"
    on_delay: int = DEFAULT_ON_DELAY  # consecutive readings beyond a limit before it raises

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> Threshold:
        params = setting.params if setting is not None else {}
        return cls(max(1, int(params.get("on_delay", DEFAULT_ON_DELAY))))

    def step(self, state: OnDelay | None, obs: Observation) -> tuple[OnDelay | None, list[Signal]]:
        if obs.limits is None:
            return state, []
        active = (
            THRESHOLD_HIGH
            if THRESHOLD_HIGH in obs.active
            else THRESHOLD_LOW
            if THRESHOLD_LOW in obs.active
            else None
        )
        before = state or OnDelay()
        after, events = step_threshold(
            ThresholdState(None, active, before.pending, before.count),
            obs.limits,
            obs.ts_us,
            obs.value,
            on_delay=self.on_delay,
        )
        signals = [
            Signal(
                ev.event,
                ev.kind,
                threshold_severity(obs.utility, obs.quantity, ev.kind),
                ev.value,
                ev.limit,
                threshold_messages(
                    ev.event, ev.kind, obs.sensor_id, obs.quantity, ev.value, ev.limit
                ),
            )
            for ev in events
        ]
        return OnDelay(after.pending, after.pending_count), signals
