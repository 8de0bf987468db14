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
    pending: ThresholdKind | None = None  # beyond this limit, not yet for ``on_delay`` readings
    pending_count: int = 0  # consecutive readings beyond ``pending``


@dataclass(frozen=True, slots=True)
class ThresholdEvent:
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

    Method (ISA-18.2 / IEC 62682 "deadband"): raise ``threshold_high`` when the value goes above
    ``alarm_high`` (``threshold_low`` when below ``alarm_low``); a value exactly on a limit is
    inside. Clear only once the value is back inside by the deadband: at or below
    ``alarm_high - deadband`` (at or above ``alarm_low + deadband``). A value that jumps from one
    side straight past the other limit clears the first alert and raises the other.

    On-delay (ISA-18.2 "alarm on-delay"): raise only when ``on_delay`` consecutive readings are
    beyond the same limit, so that one spurious reading (a spike) raises no process alarm; the
    raise is at the reading that completes the count.

    Parameters from the sensor catalogue (``sensor_type_quantities``): ``alarm_low``,
    ``alarm_high`` (``None``: no such limit) and ``deadband`` [canonical unit]; ``on_delay``
    [readings] from alerts/params.py.
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


def step_spike(
    previous: Sequence[float], value: float, *, rel: float, floor: float
) -> float | None:
    """QARTOD spike test, one reading late: with the last two readings ``previous = (a, b)`` and
    the new one ``c``, ``b`` is a spike when it stands out from *both* neighbours by more than
    ``max(rel x |(a + c) / 2|, floor)`` while they agree with each other within that band (a
    step that stays, such as a burst or a pump trip, is not a spike). Returns how far ``b``
    stood out [canonical unit], or None."""
    if len(previous) < 2 or not math.isfinite(value):
        return None
    a, b = previous[-2], previous[-1]
    ref = (a + value) / 2.0
    band = max(rel * abs(ref), floor)
    if abs(a - value) > band:
        return None
    out = b - ref
    if abs(out) > band and abs(b - a) > band and abs(b - value) > band:
        return out
    return None


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


# -- streaming forms of the series detectors (alerts/series.py has the array forms) ---------------
#
# ``recent`` is the key's previous readings, oldest first, as (ts_us, value); the engine keeps
# them for the longest window configured. After a restart ``recent`` starts empty, so windowed
# detectors need one window of readings before they can raise again.

RATE_CLEAR_FRACTION = 0.8  # hysteresis: a rate alert clears below 80 % of its limit


def step_rate_of_change(
    recent: Sequence[tuple[int, float]],
    ts_us: int,
    value: float,
    *,
    max_change: float,
    window_s: float,
    active: bool,
) -> tuple[bool, float]:
    """(active after this reading, change [unit] against the oldest reading in the window).

    Same rule as ``alerts.series.detect_rate_of_change``, with hysteresis: an active alert
    clears once ``|change| <= RATE_CLEAR_FRACTION * max_change``.
    """
    start = ts_us - window_s * 1e6
    oldest = next((v for t, v in recent if start <= t < ts_us), None)
    change = 0.0 if oldest is None else value - oldest
    if active:
        return abs(change) > RATE_CLEAR_FRACTION * max_change, change
    return abs(change) > max_change, change


def step_stuck(
    recent: Sequence[tuple[int, float]],
    ts_us: int,
    value: float,
    *,
    window_s: float,
    tolerance: float,
    min_points: int,
    active: bool,
) -> tuple[bool, float]:
    """(stuck after this reading, spread [unit]); the rule of ``alerts.series.detect_stuck``:
    raise when the window (spanning at least 90 % of ``window_s``, ``min_points`` readings) stays
    within ``tolerance``; clear when a reading leaves the stuck value by more than that."""
    if active:
        ref = recent[-1][1] if recent else value
        moved = abs(value - ref)
        return moved <= tolerance, moved
    start = ts_us - window_s * 1e6
    vals = [v for t, v in recent if start <= t < ts_us]
    first_t = next((t for t, _ in recent if start <= t < ts_us), ts_us)
    vals.append(value)
    spread = max(vals) - min(vals)
    if len(vals) < min_points or ts_us - first_t < 0.9 * window_s * 1e6:
        return False, spread
    return spread <= tolerance, spread


Flat = tuple[float, float, int, int]  # (low, high, since_us, count) of the current flat run


def step_flat(
    flat: Flat | None,
    ts_us: int,
    value: float,
    *,
    window_s: float,
    tolerance: float,
    min_points: int,
    active: bool,
) -> tuple[bool, Flat, float]:
    """``step_stuck`` in constant time and memory, for the stream: instead of the window's
    readings it keeps the current *flat run* (the band of values since the run began, while it
    stays within ``tolerance``). Stuck once the run spans >= 90 % of ``window_s`` with
    ``min_points`` readings; a reading outside the band starts a new run (and clears).
    Returns (stuck, the new run, its spread [unit])."""
    if flat is not None:
        low, high, since, count = flat
        low, high = min(low, value), max(high, value)
        if high - low <= tolerance:
            run: Flat = (low, high, since, count + 1)
            spread = high - low
            long_enough = ts_us - since >= 0.9 * window_s * 1e6 and count + 1 >= min_points
            return active or long_enough, run, spread
    return False, (value, value, ts_us, 1), 0.0


# graded combustible-gas levels [%LEL] (see alerts.series.GAS_LEL_LEVELS for the sources)
GAS_LEVELS: tuple[tuple[float, str, str], ...] = (
    (10.0, "gas_lel_prealarm", "warning"),
    (20.0, "gas_lel_alarm1", "major"),
    (50.0, "gas_lel_alarm2", "critical"),
)


def step_gas_levels(
    active: frozenset[str],
    value: float,
    *,
    levels: Sequence[tuple[float, str, str]] = GAS_LEVELS,
    deadband: float = 2.0,
) -> list[tuple[str, str, str, float]]:
    """Events ``(event, kind, severity, level)`` for one reading [%LEL]: each level raises above
    its value and clears at or below ``level - deadband`` (raises listed from the lowest level,
    clears from the highest)."""
    raised, cleared = [], []
    for level, kind, severity in levels:
        if kind not in active and value > level:
            raised.append(("raised", kind, severity, level))
        elif kind in active and value <= level - deadband:
            cleared.append(("cleared", kind, severity, level))
    return raised + cleared[::-1]  # upward in order of level, downward from the top
