"""Spike test (QARTOD), one reading late: a sensor-health alert, cleared after a quiet hour."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from alerts.detectors.base import US, Detector, Event, Observation, Setting, Signal
from alerts.messages import format_value, quantity_names

SPIKE_CLEAR_S = 3600.0  # a spiky sensor is healthy again after an hour without a spike

# (relative band, absolute floor [canonical unit]) per quantity: far outside its normal
# step-to-step change (a burst moves a main's pressure by tens of kPa, but then it stays).
# Quantities not listed have no default band: a row must give ``rel``.
DEFAULT_BANDS: dict[str, tuple[float, float]] = {
    "pressure": (0.25, 30.0),
    "flow": (0.5, 20.0),
    "level": (0.25, 0.5),
    "current": (0.4, 50.0),
    "loading": (0.4, 10.0),
    "temperature": (0.2, 5.0),
}


def step_spike(
    previous: Sequence[float], value: float, *, rel: float, floor: float
) -> float | None:
    """With the last two readings ``previous = (a, b)`` and the new one ``c``, ``b`` is a spike
    when it stands out from *both* neighbours by more than ``max(rel x |(a + c) / 2|, floor)``
    while they agree with each other within that band (a step that stays, such as a burst or a
    pump trip, is not a spike). Returns how far ``b`` stood out [canonical unit], or None."""
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


class SpikeState(msgspec.Struct, frozen=True):
    last_values: tuple[float, ...] = ()  # the key's last two readings [canonical unit]
    spike_us: int | None = None  # when the last spike was seen [us]


@dataclass(frozen=True, slots=True)
class Spike(Detector[SpikeState]):
    name: ClassVar[str] = "spike"
    severity: str
    rel: float  # band relative to the neighbours' mean
    floor: float  # ... and at least this wide [canonical unit]

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> Spike | None:
        if setting is None:
            return None
        rel, floor = DEFAULT_BANDS.get(quantity, (None, 0.0))
        rel = setting.params.get("rel", rel)
        if rel is None:
            return None
        return cls(setting.severity, float(rel), float(setting.params.get("floor", floor)))

    def step(
        self, state: SpikeState | None, obs: Observation
    ) -> tuple[SpikeState | None, list[Signal]]:
        before = state or SpikeState()
        spike_us = before.spike_us
        if spike_us is None and "spike" in obs.active:
            spike_us = obs.ts_us  # restored after a restart: the quiet hour starts now
        signals: list[Signal] = []
        out_by = step_spike(before.last_values, obs.value, rel=self.rel, floor=self.floor)
        if out_by is not None:
            spike_us = obs.ts_us
            if "spike" not in obs.active:
                signals.append(self._signal("raised", obs, before.last_values[-1], abs(out_by)))
        elif (
            "spike" in obs.active
            and spike_us is not None
            and obs.ts_us - spike_us > SPIKE_CLEAR_S * US
        ):
            signals.append(self._signal("cleared", obs, obs.value, None))
        return SpikeState((*before.last_values[-1:], obs.value), spike_us), signals

    def _signal(self, event: Event, obs: Observation, value: float, limit: float | None) -> Signal:
        q_zh, q_en = quantity_names(obs.quantity)
        sid = obs.sensor_id
        if event == "cleared":
            msgs = f"{sid} {q_zh}读数一小时无跳变", f"{sid}: no {q_en} spike for an hour"
        else:
            v = format_value(value, obs.quantity)
            by = format_value(limit if limit is not None else math.nan, obs.quantity)
            msgs = (
                f"{sid} {q_zh}读数瞬时跳变至 {v}（偏离前后读数 {by}），疑似传感器故障",
                f"{sid}: {q_en} reading jumped to {v} and back ({by} off its neighbours),"
                " faulty sensor?",
            )
        return Signal(event, "spike", self.severity, value, limit, msgs)
