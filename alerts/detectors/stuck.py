"""Stuck / flat-lined sensor (QARTOD flat-line test), kept as the current flat run.

The window rule (``step_stuck``): at least ``min_points`` readings spanning >= 90 % of
``window_s`` all within ``tolerance``. The stream keeps, instead of the window's readings, the
band of values since the current flat run began (``step_flat``: constant time and memory); a
reading outside the band starts a new run and clears. A real process is never perfectly still:
the tolerance sits below the sensor's noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from alerts.detectors.base import US, Detector, Event, Observation, Setting, Signal
from alerts.detectors.threshold import THRESHOLD_LOW
from alerts.messages import format_value, quantity_names

DEFAULT_MIN_POINTS = 5
# (window [s], tolerance [canonical unit]) per quantity: tolerances below each quantity's noise
DEFAULTS: dict[str, tuple[float, float]] = {
    "pressure": (3600.0, 0.01),
    "flow": (3600.0, 0.001),
    "level": (7200.0, 0.001),
    "voltage": (1800.0, 0.1),
    "current": (1800.0, 0.01),
    "frequency": (1800.0, 0.0005),
    "active_power": (1800.0, 0.01),
    "loading": (3600.0, 0.01),
    "gas_flow": (3600.0, 0.001),
    "gas_concentration": (86_400.0, 0.0),
    "temperature": (7200.0, 0.01),
}


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
    """The window rule, the reference ``step_flat`` is checked against: (stuck after this
    reading, spread [unit]) over ``recent`` (ts_us, value) and this reading; an active alert
    clears when a reading leaves the stuck value by more than ``tolerance``."""
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


class FlatRun(msgspec.Struct, frozen=True):
    """The current flat run of a key: its band of values, since when, how many readings."""

    low: float  # [canonical unit]
    high: float
    since_us: int  # [us]
    count: int


def step_flat(
    flat: FlatRun | None,
    ts_us: int,
    value: float,
    *,
    window_s: float,
    tolerance: float,
    min_points: int,
    active: bool,
) -> tuple[bool, FlatRun, float]:
    """``step_stuck`` for the stream: stuck once the run spans >= 90 % of ``window_s`` [s] with
    ``min_points`` readings within ``tolerance`` [unit]; a reading outside the band starts a
    new run (and clears). Returns (stuck, the new run, its spread [unit])."""
    if flat is not None:
        low, high = min(flat.low, value), max(flat.high, value)
        if high - low <= tolerance:
            count = flat.count + 1
            long_enough = ts_us - flat.since_us >= 0.9 * window_s * 1e6 and count >= min_points
            return active or long_enough, FlatRun(low, high, flat.since_us, count), high - low
    return False, FlatRun(value, value, ts_us, 1), 0.0


@dataclass(frozen=True, slots=True)
class Stuck(Detector[FlatRun]):
    name: ClassVar[str] = "stuck"
    severity: str
    window_s: float  # flat for this long [s] ...
    tolerance: float  # ... within this band [canonical unit]
    min_points: int = DEFAULT_MIN_POINTS

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> Stuck | None:
        if setting is None:
            return None
        window_s, tolerance = DEFAULTS.get(quantity, (3600.0, 0.0))
        p = setting.params
        return cls(
            setting.severity,
            float(p.get("window_s", window_s)),
            float(p.get("tolerance", tolerance)),
            int(p.get("min_points", DEFAULT_MIN_POINTS)),
        )

    def step(self, state: FlatRun | None, obs: Observation) -> tuple[FlatRun | None, list[Signal]]:
        was = self.name in obs.active
        flat = state
        if was and flat is None:
            # restored after a restart: still stuck while it reads the same value
            since = obs.ts_us - int(self.window_s * US)
            flat = FlatRun(obs.value, obs.value, since, self.min_points)
        now, flat, _spread = step_flat(
            flat,
            obs.ts_us,
            obs.value,
            window_s=self.window_s,
            tolerance=self.tolerance,
            min_points=self.min_points,
            active=was,
        )
        if now == was:
            return flat, []
        if now and THRESHOLD_LOW in obs.active:
            # a flat reading under an active low alarm is an empty or shut main at its gauge's
            # floor (0 kPa), which the low alarm already says; not a stuck sensor as well
            # (consequential-alarm suppression, as engine.NO_SIGNAL_BELOW; the unseen-network
            # rehearsal raised 24 "stuck" sensor faults on two loggers of an emptied main)
            return flat, []
        event: Event = "raised" if now else "cleared"
        msgs = self._messages(event, obs)
        return flat, [Signal(event, self.name, self.severity, obs.value, self.tolerance, msgs)]

    def _messages(self, event: Event, obs: Observation) -> tuple[str, str]:
        q_zh, q_en = quantity_names(obs.quantity)
        sid = obs.sensor_id
        if event == "cleared":
            return f"{sid} {q_zh}读数恢复变化", f"{sid}: {q_en} reading moving again"
        w, v = f"{self.window_s:.0f}", format_value(obs.value, obs.quantity)
        return (
            f"{sid} {q_zh}读数 {w} 秒无变化（{v}），疑似传感器卡滞",
            f"{sid}: {q_en} reading unchanged for {w} s ({v}), sensor stuck?",
        )
