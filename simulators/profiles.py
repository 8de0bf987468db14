"""Statistical demo profiles: plausible readings per sensor type, seeded and pure.

No broker, database or clock here: ``DemoGenerator.messages(step)`` is a function of the
catalogue, the seed, the start time and the step number only, so the same seed always gives
byte-identical messages and any step can be recomputed on its own (tests, replays).

Profiles (canonical units, sensors/quantities.py):

* water pressure [kPa]: 330-420 kPa per station, lower at the morning and evening demand peaks
  (the daily demand pattern below), noise about 2 kPa;
* water flow [L/s]: 40-200 L/s per meter times the demand multiplier;
* tank level [m]: 3-8 m, filling at night and drawn down by day;
* 10 kV bus: voltage about 10.0-10.3 kV, falling slightly with load; current 120-350 A times
  the load multiplier; frequency 50 Hz +/- a few hundredths;
* transformer: loading 30-80 % times the load multiplier; temperature following loading;
* gas pressure [kPa]: about 180 kPa downstream of the regulators, a few kPa lower at peaks;
* gas detectors [%LEL]: background 0-2 %LEL.

The daily patterns are in Chengdu local time (UTC+8, no daylight saving).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cityops.kernel.clock import CHENGDU_UTC_OFFSET_S
from sensors.catalogue import Sensor
from sensors.payload import encode_reading
from sensors.topics import telemetry_topic

DEMO_ANOMALY_SENSOR = "wp-510104-1"

# hourly multipliers of mean demand (residential-commercial mix, peaks at 7-9 h and 18-21 h)
WATER_DEMAND_PATTERN = (
    0.55, 0.50, 0.48, 0.48, 0.52, 0.65, 0.95, 1.30, 1.40, 1.25, 1.10, 1.05,
    1.10, 1.05, 1.00, 1.00, 1.05, 1.20, 1.40, 1.45, 1.35, 1.15, 0.90, 0.70,
)  # fmt: skip
POWER_LOAD_PATTERN = (
    0.60, 0.56, 0.54, 0.53, 0.54, 0.60, 0.72, 0.88, 1.00, 1.05, 1.08, 1.10,
    1.05, 1.02, 1.05, 1.08, 1.10, 1.15, 1.25, 1.30, 1.28, 1.15, 0.95, 0.75,
)  # fmt: skip


def pattern_at(pattern: Sequence[float], ts_ms: int) -> float:
    """Hourly ``pattern`` (24 values, Chengdu local time) linearly interpolated at ``ts_ms``."""
    local_h = ((ts_ms // 1000 + CHENGDU_UTC_OFFSET_S) % 86_400) / 3600.0
    i = int(local_h)
    frac = local_h - i
    return pattern[i] * (1.0 - frac) + pattern[(i + 1) % 24] * frac


@dataclass(frozen=True, slots=True)
class PressureDrop:
    """The scripted demo anomaly: a water main's pressure falls to ``low_kpa`` for a while.

    Steps ``start_step`` .. ``start_step + duration_steps - 1`` (0-based) are in the window; the
    step before and after move halfway, so the fall and recovery are not a single jump.
    """

    sensor_id: str = DEMO_ANOMALY_SENSOR
    start_step: int = 3
    duration_steps: int = 10
    low_kpa: float = 150.0  # [kPa] below the water_pressure alarm_low of 200 kPa
    # repeat the window every this many steps (None: once); a long-running demo keeps showing one
    period_steps: int | None = None

    def __post_init__(self) -> None:
        if self.start_step < 0 or self.duration_steps < 1:
            raise ValueError("PressureDrop needs start_step >= 0 and duration_steps >= 1")
        if self.period_steps is not None and self.period_steps < self.duration_steps + 3:
            raise ValueError("PressureDrop period_steps must leave room to recover")

    def _phase(self, step: int) -> int:
        if self.period_steps is None or step < self.start_step - 1:
            return step
        return self.start_step - 1 + (step - self.start_step + 1) % self.period_steps

    def in_window(self, step: int) -> bool:
        step = self._phase(step)
        return self.start_step <= step < self.start_step + self.duration_steps

    def weight(self, step: int) -> float:
        """0 (normal) .. 1 (fully dropped) at ``step``."""
        if self.in_window(step):
            return 1.0
        if self._phase(step) in (self.start_step - 1, self.start_step + self.duration_steps):
            return 0.5
        return 0.0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to publish."""

    sensor_id: str
    topic: str
    ts_ms: int  # the reading's timestamp, epoch milliseconds
    seq: int
    values: dict[str, float]  # canonical units
    payload: bytes


def sensor_key(seed: int, sensor_id: str) -> list[int]:
    """The seed material of one sensor's static parameters (stable when sensors are added)."""
    return [seed & 0xFFFF_FFFF, zlib.crc32(sensor_id.encode())]


class DemoGenerator:
    """Readings for every active sensor of a catalogue, one message per sensor and step."""

    def __init__(
        self,
        sensors: Sequence[Sensor],
        *,
        seed: int,
        start_ms: int,
        interval_s: float,
        anomaly: PressureDrop | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        self.sensors = [s for s in sensors if s.status == "active"]
        self.seed = seed
        self.start_ms = start_ms
        self.interval_s = interval_s
        self.anomaly = anomaly
        self.topics = [telemetry_topic(s.utility, s.sensor_id) for s in self.sensors]
        # static per-sensor parameters: base level and scale, from the sensor's own stream
        params = np.empty((len(self.sensors), 2))
        for i, s in enumerate(self.sensors):
            params[i] = np.random.default_rng(sensor_key(seed, s.sensor_id)).random(2)
        self._u: list[list[float]] = params.tolist()

    @property
    def anomaly_active(self) -> bool:
        return self.anomaly is not None and any(
            s.sensor_id == self.anomaly.sensor_id for s in self.sensors
        )

    def ts_ms(self, step: int) -> int:
        return self.start_ms + round(step * self.interval_s * 1000)

    def values(self, step: int) -> list[dict[str, float]]:
        """The readings of every sensor at ``step`` (0-based), canonical units, rounded."""
        ts = self.ts_ms(step)
        demand = pattern_at(WATER_DEMAND_PATTERN, ts)
        load = pattern_at(POWER_LOAD_PATTERN, ts)
        # one stream per step: any step can be recomputed alone
        noise = (
            np.random.default_rng([self.seed & 0xFFFF_FFFF, 0x5EED, step])
            .standard_normal((len(self.sensors), 3))
            .tolist()
        )
        hour_angle = 2 * math.pi * (((ts // 1000 + CHENGDU_UTC_OFFSET_S) % 86_400) / 86_400)
        out: list[dict[str, float]] = []
        for i, s in enumerate(self.sensors):
            u0, u1 = self._u[i]
            n0, n1, n2 = noise[i]
            t = s.sensor_type
            if t in ("water_pressure", "water_flow"):
                base = 330.0 + 90.0 * u0  # [kPa]
                p = base * (1.0 - 0.10 * (demand - 1.0)) + 2.0 * n0
                if self.anomaly is not None and s.sensor_id == self.anomaly.sensor_id:
                    w = self.anomaly.weight(step)
                    p = (1.0 - w) * p + w * (self.anomaly.low_kpa + 3.0 * n1)
                if t == "water_flow":
                    flow = (40.0 + 160.0 * u1) * demand * (1.0 + 0.02 * n1)  # [L/s]
                    out.append({"flow": round(flow, 2), "pressure": round(p, 2)})
                else:
                    out.append({"pressure": round(p, 2)})
            elif t == "water_tank":
                level = 5.5 + 2.0 * u0 - 1.5 * math.sin(hour_angle - 1.0) + 0.02 * n0  # [m]
                out.append({"level": round(level, 3)})
            elif t == "power_bus":
                current = (120.0 + 230.0 * u1) * load * (1.0 + 0.01 * n1)  # [A]
                voltage = 10_250.0 - 200.0 * (load - 0.5) + 100.0 * (u0 - 0.5) + 8.0 * n0  # [V]
                freq = 50.0 + 0.015 * max(-3.0, min(3.0, n2))  # [Hz]
                out.append(
                    {
                        "voltage": round(voltage, 1),
                        "current": round(current, 1),
                        "frequency": round(freq, 3),
                    }
                )
            elif t == "power_transformer":
                loading = (30.0 + 50.0 * u0) * load * (1.0 + 0.01 * n0)  # [%]
                temp = 25.0 + 0.45 * loading + 0.3 * n1  # [degC]
                out.append({"loading": round(loading, 1), "temperature": round(temp, 1)})
            elif t == "gas_pressure":
                gp = 176.0 + 8.0 * u0 - 4.0 * (demand - 1.0) + 0.5 * n0  # [kPa]
                out.append({"pressure": round(gp, 2)})
            elif t == "gas_detector":
                c = 0.2 + 0.8 * u0 + 0.05 * n0  # [%LEL] (a clean background: no rise alarms)
                out.append({"gas_concentration": round(min(2.0, max(0.0, c)), 2)})
            else:  # pragma: no cover - SENSOR_TYPES and this table move together
                raise ValueError(f"no demo profile for sensor type {t!r}")
        return out

    def messages(self, step: int) -> list[Outgoing]:
        """One compact v1 message per sensor at ``step``; sequence numbers start at 1."""
        ts = self.ts_ms(step)
        seq = step + 1
        return [
            Outgoing(s.sensor_id, topic, ts, seq, v, encode_reading(ts, seq, v))
            for s, topic, v in zip(self.sensors, self.topics, self.values(step), strict=True)
        ]
