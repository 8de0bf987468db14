"""Silence: no reading for ``factor`` x the key's usual interval, judged on the stream's clock.

The clock raises it (``on_clock``); the key's next reading clears it. The clear runs wherever
the detector is configured or not, so that a silent alert whose row was switched off still
clears when the sensor speaks again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from alerts.detectors.base import US, Detector, KeyClock, Observation, Setting, Signal
from alerts.messages import quantity_names

DEFAULT_FACTOR = 3.0  # missed reports before "silent"


@dataclass(frozen=True, slots=True)
class Silent(Detector[None]):
    name: ClassVar[str] = "silent"
    severity: str = "warning"
    factor: float | None = None  # None: no row, only clears what an earlier row raised

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> Silent:
        if setting is None:
            return cls()
        return cls(setting.severity, float(setting.params.get("factor", DEFAULT_FACTOR)))

    def step(self, state: None, obs: Observation) -> tuple[None, list[Signal]]:
        if "silent" not in obs.active:
            return None, []
        q_zh, q_en = quantity_names(obs.quantity)
        sid = obs.sensor_id
        msgs = f"{sid} {q_zh}恢复上报", f"{sid}: {q_en} readings resumed"
        return None, [Signal("cleared", "silent", self.severity, obs.value, None, msgs)]

    def on_clock(self, clock: KeyClock) -> Signal | None:
        """Silent when the gap since the key's last reading is over ``factor`` x the larger of
        its type's interval and its own usual one (a gateway's schedule, a simulator's step);
        a key's rhythm is known from its second reading on."""
        if self.factor is None or "silent" in clock.active:
            return None
        if clock.last_ts_us is None or clock.interval_us is None:
            return None
        usual_s = max(clock.expected_interval_s, clock.interval_us / US)
        allowed_s = self.factor * usual_s
        gap_s = (clock.now_us - clock.last_ts_us) / US
        if gap_s <= allowed_s:
            return None
        q_zh, q_en = quantity_names(clock.quantity)
        sid, gap, every = clock.sensor_id, f"{gap_s:.0f}", f"{usual_s:.0f}"
        msgs = (
            f"{sid} {q_zh}已 {gap} 秒无数据（应每 {every} 秒上报）",
            f"{sid}: no {q_en} reading for {gap} s (expected every {every} s)",
        )
        return Signal("raised", "silent", self.severity, gap_s, allowed_s, msgs)
