"""Load mode: tens of thousands of statistical sensors for benchmarks of the pipeline.

The sensors are spread over central Chengdu with the demo's mix of types and published with
the demo profiles (simulators/profiles.py), one compact message per sensor and step, through
one service identity. Physics is not the point here: message rate is.
"""

from __future__ import annotations

import threading

import numpy as np

from cityops.kernel.settings import Settings
from sensors.catalogue import SENSOR_TYPES, Sensor
from simulators.mqtt import RunStats, publish_steps
from simulators.profiles import DemoGenerator

# the demo's mix: per 6 sensors two pressure stations and one of each other kind
MIX = (
    ("water_pressure", "wp"),
    ("water_pressure", "wp"),
    ("water_flow", "wf"),
    ("power_bus", "pb"),
    ("gas_pressure", "gp"),
    ("gas_detector", "gd"),
)
CENTRAL_CHENGDU = (103.95, 30.55, 104.20, 30.75)  # lon/lat box of the central districts


def build_load_catalogue(n: int, *, seed: int = 1, prefix: str = "load") -> list[Sensor]:
    """``n`` sensors with ids ``<prefix>-<kind>-<number>`` in central Chengdu (pure)."""
    rng = np.random.default_rng([seed, 0x10AD])
    lon = rng.uniform(CENTRAL_CHENGDU[0], CENTRAL_CHENGDU[2], n)
    lat = rng.uniform(CENTRAL_CHENGDU[1], CENTRAL_CHENGDU[3], n)
    out = []
    for i in range(n):
        stype, short = MIX[i % len(MIX)]
        out.append(
            Sensor(
                sensor_id=f"{prefix}-{short}-{i + 1}",
                utility=SENSOR_TYPES[stype].utility,
                sensor_type=stype,
                name=f"load {stype} {i + 1}",
                lon=round(float(lon[i]), 6),
                lat=round(float(lat[i]), 6),
            )
        )
    return out


def run_load(
    settings: Settings,
    n_sensors: int,
    *,
    steps: int = 1,
    interval_s: float = 60.0,
    speedup: float = 0.0,
    seed: int = 1,
    start_ms: int,
    max_inflight: int = 1000,
    stop: threading.Event | None = None,
) -> RunStats:
    """Publish ``steps`` rounds of one message per sensor; returns the figures."""
    gen = DemoGenerator(
        build_load_catalogue(n_sensors, seed=seed),
        seed=seed,
        start_ms=start_ms,
        interval_s=interval_s,
    )
    return publish_steps(
        settings.mqtt_url_for("sim"),
        gen.messages,
        steps=steps,
        interval_s=interval_s,
        speedup=speedup,
        stop=stop,
        max_inflight=max_inflight,
        label=f"load {n_sensors}",
    )
