"""`cityops simulate` without a scenario: the demo sensors with one scripted pressure drop.

Wiring only: read the catalogue, build the pure generator (simulators/profiles.py), publish
(simulators/mqtt.py). Start time: ``start`` (ISO 8601; without an offset it is Chengdu time) or,
when absent, a backfill that ends now: the run starts ``steps`` intervals ago (30 when
``steps == 0``) and no step is published before its simulated time, so readings are never
stamped in the future (ingestion rejects those beyond its clock-skew window).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from cityops.kernel.clock import CHENGDU_TZ
from cityops.kernel.settings import Settings
from sensors.catalogue import Sensor, parse_geojson_sensors
from simulators.mqtt import RunStats, publish_steps, stop_on_signals
from simulators.profiles import DemoGenerator, PressureDrop
from simulators.spec import parse_time_ms

log = logging.getLogger(__name__)

BACKFILL_STEPS_UNBOUNDED = 30
DEFAULT_ANOMALY = PressureDrop()


def read_catalogue(path: Path) -> list[Sensor]:
    return parse_geojson_sensors(json.loads(Path(path).read_text(encoding="utf-8")))


def parse_start_ms(start: str) -> int:
    """ISO 8601 -> epoch ms; a time without an offset is taken as Chengdu time (UTC+8)."""
    try:
        return parse_time_ms(start)
    except ValueError:
        raise ValueError(f"start {start!r} is not an ISO 8601 time") from None


def default_start_ms(now_s: float, interval_s: float, steps: int) -> int:
    """A start that makes the run end about now (whole seconds)."""
    lead = steps if steps > 0 else BACKFILL_STEPS_UNBOUNDED
    return int(now_s - lead * interval_s) * 1000


# long: mostly its signature, docstring and the wiring of catalogue, clock and publisher
def run(
    settings: Settings,
    catalogue: Path,
    interval_s: float = 60.0,
    steps: int = 0,
    speedup: float = 60.0,
    seed: int = 1,
    start: str | None = None,
    *,
    anomaly: PressureDrop | None = DEFAULT_ANOMALY,
    stop: threading.Event | None = None,
) -> RunStats:
    """Publish demo readings for ``catalogue`` (see module docstring); returns the run's figures."""
    if interval_s <= 0:
        raise ValueError("interval_s must be > 0")
    if steps < 0 or speedup < 0:
        raise ValueError("steps and speedup must be >= 0")
    if steps == 0 and anomaly is not None and anomaly.period_steps is None:
        # a demo that runs until stopped shows the drop again every half hour of simulated time
        anomaly = replace(
            anomaly, period_steps=max(anomaly.duration_steps + 3, round(1800 / interval_s))
        )
    sensors = read_catalogue(catalogue)
    start_ms = parse_start_ms(start) if start else default_start_ms(time.time(), interval_s, steps)
    gen = DemoGenerator(
        sensors, seed=seed, start_ms=start_ms, interval_s=interval_s, anomaly=anomaly
    )
    if anomaly is not None and not gen.anomaly_active:
        log.warning("anomaly sensor %s is not in the catalogue: no anomaly", anomaly.sensor_id)
    elif anomaly is not None:
        log.info(
            "anomaly: %s pressure to %.0f kPa for steps %d-%d (%s)",
            anomaly.sensor_id,
            anomaly.low_kpa,
            anomaly.start_step,
            anomaly.start_step + anomaly.duration_steps - 1,
            datetime.fromtimestamp(gen.ts_ms(anomaly.start_step) / 1000, CHENGDU_TZ).isoformat(),
        )
    log.info(
        "simulating %d sensors from %s, every %g s, %s steps, speedup %s, seed %d",
        len(gen.sensors),
        datetime.fromtimestamp(start_ms / 1000, CHENGDU_TZ).isoformat(),
        interval_s,
        steps or "unbounded",
        speedup or "max",
        seed,
    )
    with stop_on_signals(stop or threading.Event()) as ev:
        stats = publish_steps(
            settings.mqtt_url_for("sim"),
            gen.messages,
            steps=steps,
            interval_s=interval_s,
            speedup=speedup,
            stop=ev,
            sim_time_ms=gen.ts_ms,
            hold_to_wall_clock=start is None,
            label="simulate",
        )
    log.info("done: %d steps, %d messages in %.1f s", stats.steps, stats.messages, stats.wall_s)
    return stats
