"""Rate of change (QARTOD): the change against the oldest reading within a trailing window.

A gap is not a jump: a reading with nothing else inside the window has no change. An active
alert clears once the change is back under ``RATE_CLEAR_FRACTION`` of the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from alerts.detectors.base import US, Detector, Event, Observation, Setting, Signal
from alerts.messages import format_value, quantity_names

RATE_CLEAR_FRACTION = 0.8  # hysteresis: a rate alert clears below 80 % of its limit

# (max_change [canonical unit] or None: off unless a row gives one, window [s]) per quantity.
# A main's pressure moves a few kPa a minute in normal operation; a burst or a valve slam moves
# it tens of kPa.
DEFAULTS: dict[str, tuple[float | None, float]] = {
    "pressure": (50.0, 300.0),
    "flow": (50.0, 300.0),
    "level": (0.5, 600.0),
    "voltage": (800.0, 60.0),
    "current": (200.0, 60.0),
    "frequency": (0.3, 60.0),
    "active_power": (None, 60.0),
    "loading": (40.0, 300.0),
    "gas_flow": (None, 300.0),
    "gas_concentration": (10.0, 120.0),
    "temperature": (15.0, 600.0),
}


def step_rate_of_change(
    recent: Sequence[tuple[int, float]],
    ts_us: int,
    value: float,
    *,
    max_change: float,
    window_s: float,
    active: bool,
) -> tuple[bool, float]:
    """(active after this reading, change [unit] against the oldest of ``recent`` (ts_us,
    value) within ``window_s`` [s] before ``ts_us``); with hysteresis: an active alert clears
    once ``|change| <= RATE_CLEAR_FRACTION * max_change``."""
    start = ts_us - window_s * 1e6
    oldest = next((v for t, v in recent if start <= t < ts_us), None)
    change = 0.0 if oldest is None else value - oldest
    if active:
        return abs(change) > RATE_CLEAR_FRACTION * max_change, change
    return abs(change) > max_change, change


class Window(msgspec.Struct, frozen=True):
    recent: tuple[tuple[int, float], ...] = ()  # (ts_us, value) within the window, oldest first


@dataclass(frozen=True, slots=True)
class RateOfChange(Detector[Window]):
    name: ClassVar[str] = "rate_of_change"
    severity: str
    max_change: float  # [canonical unit] within window_s
    window_s: float  # [s]
    rise_only: bool = False  # only a rise counts (combustible gas: a fall is no leak)

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> RateOfChange | None:
        if setting is None:
            return None
        max_change, window_s = DEFAULTS.get(quantity, (None, 300.0))
        p = setting.params
        max_change = p.get("max_change", max_change)
        if max_change is None:
            return None
        return cls(
            setting.severity,
            float(max_change),
            float(p.get("window_s", window_s)),
            p.get("direction", "both") == "rise",
        )

    @property
    def history_s(self) -> float:
        return self.window_s

    def step(self, state: Window | None, obs: Observation) -> tuple[Window | None, list[Signal]]:
        recent = state.recent if state is not None else ()
        was = self.name in obs.active
        now, change = step_rate_of_change(
            recent,
            obs.ts_us,
            obs.value,
            max_change=self.max_change,
            window_s=self.window_s,
            active=was,
        )
        if self.rise_only and change < 0:
            now = False
        keep_from = obs.ts_us - int(self.window_s * US)
        window = Window((*(p for p in recent if p[0] >= keep_from), (obs.ts_us, obs.value)))
        if now == was:
            return window, []
        event: Event = "raised" if now else "cleared"
        msgs = self._messages(event, obs, change)
        value = change if now else obs.value
        return window, [Signal(event, self.name, self.severity, value, self.max_change, msgs)]

    def _messages(self, event: Event, obs: Observation, change: float) -> tuple[str, str]:
        q_zh, q_en = quantity_names(obs.quantity)
        sid = obs.sensor_id
        if event == "cleared":
            return f"{sid} {q_zh}变化速率已恢复正常", f"{sid}: {q_en} rate of change normal again"
        ch, lim = format_value(change, obs.quantity), format_value(self.max_change, obs.quantity)
        w = f"{self.window_s:.0f}"
        return (
            f"{sid} {q_zh}在 {w} 秒内变化 {ch}，超过 {lim}",
            f"{sid}: {q_en} changed by {ch} within {w} s (limit {lim})",
        )

    def warm(self, history: Sequence[tuple[int, float]]) -> Window:
        return Window(tuple(history))
