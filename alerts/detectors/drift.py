"""Calibration drift: a steady trend in the sensor's day-on-day difference at the same time of
day (a sensor-health alert, ``drift``; docs/alerts.md "Detectors").

Readings are averaged per time-of-day bin (``bin_s``, an hour by default). For each finished
bin the detector compares the sensor with itself a day and two days before, relative to the
older value: ``r1 = (m[b] - m[b-1d]) / |m[b-1d]|`` and ``r2 = (m[b] - m[b-2d]) / |m[b-2d]|``.
The demand pattern cancels out (same time of day). What is left tells the cause apart:

- a calibration drift of ``k`` per day gives ``r1 ~ k`` and ``r2 ~ 2k`` in every bin: the
  offset keeps growing;
- a network event that stays (a valve left shut, a reconfiguration) is a step: ``r2 ~ r1``
  for a day, then ``r1 ~ 0``;
- a burst or a leak that is repaired lasts hours: a few bins, not a whole run.

Raised when the last ``run_bins`` bins all show ``|r1| >= min_rate`` with one sign and
``r2 / r1`` between ``growth_low`` and ``growth_high`` (the "keeps growing" test); cleared
when the median ``|r1|`` of that run falls under half ``min_rate`` or its sign changes (the
sensor was recalibrated). It needs two days of the sensor before it can say anything: a drift
of a few per cent a day is invisible within one day against the demand pattern. State is
bounded: two days and a bin of bin means, and the run of the last ``run_bins`` ratios.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import msgspec

from alerts.detectors.base import US, Detector, Event, Observation, Setting, Signal
from alerts.messages import quantity_names

DAY_S = 86_400.0
# (min_rate [1/day], run_bins) per quantity. Pressure: the simulated day-on-day difference of
# an hourly mean stays within about 1 % on a quiet network; 2 %/day over 12 h is well clear.
DEFAULTS: dict[str, tuple[float, int]] = {
    "pressure": (0.02, 12),
}


class DriftState(msgspec.Struct, frozen=True):
    """Bin means of the last two days and a bin, the current bin, the run of ratios."""

    bin: int  # the current bin's index (ts // bin)
    total: float  # sum of its readings [canonical unit]
    count: int
    means: tuple[tuple[int, float], ...]  # finished bins (index, mean), oldest first
    run: tuple[tuple[float, float], ...]  # (r1, r2) of the last finished bins, oldest first


@dataclass(frozen=True, slots=True)
class Drift(Detector[DriftState]):
    name: ClassVar[str] = "drift"
    severity: str
    min_rate: float  # |day-on-day change| / value, per day [1]
    run_bins: int  # this many bins in a row [1]
    bin_s: float = 3600.0  # [s]
    min_count: int = 3  # readings a bin needs to count
    growth_low: float = 1.5  # r2 / r1 of a drift is 2; of a step 1
    growth_high: float = 2.5

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> Drift | None:
        if setting is None:
            return None
        min_rate, run_bins = DEFAULTS.get(quantity, (0.02, 12))
        p = setting.params
        det = cls(
            setting.severity,
            float(p.get("min_rate", min_rate)),
            int(p.get("run_bins", run_bins)),
            float(p.get("bin_s", 3600.0)),
            int(p.get("min_count", 3)),
            float(p.get("growth_low", 1.5)),
            float(p.get("growth_high", 2.5)),
        )
        if det.min_rate <= 0 or det.run_bins < 1 or det.bin_s <= 0 or det.bin_s > DAY_S:
            raise ValueError(f"drift: bad parameters {dict(p)}")
        return det

    @property
    def day_bins(self) -> int:
        return max(1, round(DAY_S / self.bin_s))

    @property
    def history_s(self) -> float:
        # two days and the run, so that a restart does not start the wait again
        return 2 * DAY_S + (self.run_bins + 1) * self.bin_s

    def step(
        self, state: DriftState | None, obs: Observation
    ) -> tuple[DriftState | None, list[Signal]]:
        was = self.name in obs.active
        state = self._add(state, obs.ts_us, obs.value)
        if state.count > 1:  # only a bin's first reading can finish the one before
            return state, []
        now = self._drifting(state.run, was)
        if now == was:
            return state, []
        event: Event = "raised" if now else "cleared"
        rate = statistics.median(r1 for r1, _ in state.run) if state.run else 0.0
        msgs = self._messages(event, obs, rate)
        return state, [Signal(event, self.name, self.severity, rate, self.min_rate, msgs)]

    def warm(self, history: Sequence[tuple[int, float]]) -> DriftState | None:
        state: DriftState | None = None
        for ts_us, value in history:
            state = self._add(state, ts_us, value)
        return state

    # -- the bins -------------------------------------------------------------------------------
    def _add(self, state: DriftState | None, ts_us: int, value: float) -> DriftState:
        b = int(ts_us // int(self.bin_s * US))
        if state is None:
            return DriftState(b, value, 1, (), ())
        if b == state.bin:
            return DriftState(b, state.total + value, state.count + 1, state.means, state.run)
        if b < state.bin:  # the engine drops older readings; a clock step back starts afresh
            return DriftState(b, value, 1, (), ())
        means, run = state.means, state.run
        if state.count >= self.min_count:
            mean = state.total / state.count
            keep_from = state.bin - 2 * self.day_bins
            means = (*(m for m in means if m[0] >= keep_from), (state.bin, mean))
            ratios = self._ratios(dict(means), state.bin, mean)
            if ratios is not None:
                run = (*run, ratios)[-self.run_bins :]
        return DriftState(b, value, 1, means, run)

    def _ratios(self, means: dict[int, float], b: int, mean: float) -> tuple[float, float] | None:
        day1, day2 = means.get(b - self.day_bins), means.get(b - 2 * self.day_bins)
        if day1 is None or day2 is None or day1 == 0 or day2 == 0:
            return None
        return (mean - day1) / abs(day1), (mean - day2) / abs(day2)

    def _drifting(self, run: tuple[tuple[float, float], ...], was: bool) -> bool:
        if len(run) < self.run_bins:
            return was  # not enough yet (after a restart: as it was)
        r1s = [r1 for r1, _ in run]
        if was:
            med = statistics.median(r1s)
            same_sign = all(r > 0 for r in r1s) or all(r < 0 for r in r1s)
            return same_sign and abs(med) >= self.min_rate / 2
        sign = 1.0 if r1s[0] > 0 else -1.0
        for r1, r2 in run:
            if sign * r1 < self.min_rate:
                return False
            if not (self.growth_low <= r2 / r1 <= self.growth_high):
                return False
        return True

    def _messages(self, event: Event, obs: Observation, rate: float) -> tuple[str, str]:
        q_zh, q_en = quantity_names(obs.quantity)
        sid = obs.sensor_id
        if event == "cleared":
            return f"{sid} {q_zh}读数不再漂移", f"{sid}: {q_en} reading no longer drifting"
        pct = f"{rate * 100:+.1f}"
        return (
            f"{sid} {q_zh}读数逐日漂移（同一时段日差 {pct}%/天，且持续增长），疑似传感器校准漂移",
            f"{sid}: {q_en} reading drifts day on day ({pct} %/day at the same time of day,"
            " growing), calibration drift?",
        )
