"""The living demo: the city in real time with physics, and a random incident every few minutes.

What ``cityops up`` starts (docs/simulators.md, "Living demo"; decision 0035). It composes the
scenario machinery without changing it: the run is a chain of *segments*, each one a scenario
built here in code (``segment_scenario``) of ``every_s`` seconds on the same networks and
sensors (the demo city's GIS water network, ``mv_oberrhein`` power, ``schutterwald`` gas),
with at most one incident or sensor fault drawn at random from the library's types
(``plan_event``) that ends before the segment does, so the city recovers. Each segment with an
event is a run in ``sim_runs`` with its ground truth in ``sim_ground_truth``. The next segment's
world is built on a thread while the current one publishes (building takes seconds); readings
are stamped with the wall clock and never ahead of it; sequence numbers carry on across
segments, as a device's would. The catalogue's demo sensors keep their statistical readings
(simulators/demo.py, without the scripted drop) on a thread beside it, so that the wall's
districts stay alive. SIGTERM or SIGINT stop it at the end of the current step.

Pure: ``parse_every``, ``plan_event``, ``segment_scenario``; the rest is wiring.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cityops.kernel.settings import Settings
from simulators.mqtt import publish_steps, stop_on_signals
from simulators.run import ScenarioRun, iso
from simulators.spec import Scenario, parse_duration_s, parse_scenario

log = logging.getLogger(__name__)

DEFAULT_EVERY_S = 240.0  # one incident every 4 minutes
OFF_WORDS = ("0", "off", "false", "no", "")
ON_WORDS = ("1", "on", "true", "yes")
ID_PREFIX = "city"

# The event kinds drawn from, with the library's types (docs/simulators.md)
KINDS = (
    "water_burst",
    "water_leak",
    "gas_leak",
    "gas_regulator_fault",
    "power_line_outage",
    "power_overload",
    "sensor_stuck",
    "sensor_spikes",
    "sensor_dropout",
    "sensor_drift",
)
# mv_oberrhein lines whose outage leaves 10-60 buses unsupplied (power.downstream_buses, worked
# out once): a random line of the 181 often feeds nothing a sensor watches, and shows nothing
POWER_LINES = (193, 127, 38, 62, 53, 52, 54, 36, 37, 151, 162, 39, 28, 136, 27)
# schutterwald junctions with a ring of gas detectors around them: a leak elsewhere rises
# on no detector (the plume is local)
GAS_RINGS = ("K1220", "K1044", "K1211")
NET3_PIPES = ("101", "105", "109", "111", "113", "115", "117", "119", "121", "123")
FAULT_UTILITY = {"sensor_stuck": "water", "sensor_spikes": "gas", "sensor_dropout": "power"}


def parse_every(value: str | float | None) -> float | None:
    """CITYOPS_DEMO_INCIDENTS: ``0``/``off`` -> None (no incidents), ``1``/``on`` -> the
    default interval, a duration (``3m``, ``90s``, ``300``) -> that interval [s]."""
    if value is None:
        return DEFAULT_EVERY_S
    text = str(value).strip().lower()
    if text in OFF_WORDS:
        return None
    if text in ON_WORDS:
        return DEFAULT_EVERY_S
    try:
        s = parse_duration_s(text)
    except ValueError:
        raise ValueError(
            f"CITYOPS_DEMO_INCIDENTS: expected 0/off, 1/on or an interval such as 4m, got {value!r}"
        ) from None
    if s < 30:
        raise ValueError(f"CITYOPS_DEMO_INCIDENTS: an interval of at least 30 s, got {value!r}")
    return s


@dataclass(frozen=True)
class LivingConfig:
    """``every_s``: a segment, and one event per segment (None: no events, physics only);
    ``first_at_s``/``at_s``: when in its segment the event starts (the first segment / later
    ones); ``event_s``: how long it lasts (clipped so that it ends ``recover_s`` before the
    segment does)."""

    every_s: float | None = DEFAULT_EVERY_S
    step_s: float = 10.0
    first_at_s: float = 60.0
    at_s: float = 30.0
    event_s: float = 120.0
    recover_s: float = 30.0
    seed: int | None = None  # None: from the clock (a different city day each start)
    kinds: tuple[str, ...] = KINDS
    water_model: str = "gis"  # the demo city's own network; Net3 where no GIS layers
    water_sensors: int = 20
    power_buses: int = 25
    background: Path | None = None  # catalogue kept alive by the statistical demo

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise ValueError(f"unknown event kinds {unknown} (one of {', '.join(KINDS)})")
        if self.step_s < 1 or self.step_s != int(self.step_s):
            raise ValueError("step_s must be a whole number of seconds >= 1")
        segment = self.every_s or 3600.0
        if self.every_s is not None and (
            self.first_at_s + self.step_s + self.recover_s >= segment
            or self.at_s + self.step_s + self.recover_s >= segment
        ):
            raise ValueError(
                f"every_s {self.every_s:g} leaves no room for an event after "
                f"{max(self.first_at_s, self.at_s):g} s and {self.recover_s:g} s of recovery"
            )

    @property
    def segment_s(self) -> float:
        # without events a segment is an hour (a new world each hour costs nothing to see)
        return self.every_s if self.every_s is not None else 3600.0


def plan_event(
    rng: np.random.Generator, cfg: LivingConfig, index: int, water_pipes: Sequence[str]
) -> dict[str, Any] | None:
    """The event of segment ``index`` as a scenario file writes it (an ``incidents`` or
    ``faults`` item, under the key ``"incident"`` or ``"fault"``); None without events."""
    if cfg.every_s is None:
        return None
    kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
    at = cfg.first_at_s if index == 0 else cfg.at_s
    duration = min(cfg.event_s, cfg.segment_s - at - cfg.recover_s)
    when = {"at": at, "duration": duration}
    pipes = list(water_pipes) or list(NET3_PIPES)
    if kind == "water_burst":
        pipe = pipes[int(rng.integers(len(pipes)))]
        area = round(float(rng.uniform(120, 250)))
        return {"incident": {"network": "water", "type": "burst", "element": pipe, **when,
                             "area_cm2": area}}  # fmt: skip
    if kind == "water_leak":
        pipe = pipes[int(rng.integers(len(pipes)))]
        area = round(float(rng.uniform(40, 80)))
        return {"incident": {"network": "water", "type": "leak", "element": pipe, **when,
                             "area_cm2": area, "ramp": min(30.0, duration / 2)}}  # fmt: skip
    if kind == "gas_leak":
        junction = GAS_RINGS[int(rng.integers(len(GAS_RINGS)))]
        hole = round(float(rng.uniform(1.5, 4.0)), 1)
        return {"incident": {"network": "gas", "type": "leak", "element": junction, **when,
                             "area_cm2": hole, "ramp": min(20.0, duration / 2)}}  # fmt: skip
    if kind == "gas_regulator_fault":
        return {"incident": {"network": "gas", "type": "regulator_fault", **when,
                             "p_bar": 1.0}}  # fmt: skip
    if kind in ("power_line_outage", "power_overload"):
        line = str(POWER_LINES[int(rng.integers(len(POWER_LINES)))])
        if kind == "power_overload":
            return {"incident": {"network": "power", "type": "overload", "element": line,
                                 **when, "factor": 2.5}}  # fmt: skip
        return {"incident": {"network": "power", "type": "line_outage", "element": line, **when}}
    fault = kind.removeprefix("sensor_")
    utility = FAULT_UTILITY.get(kind, ("water", "power", "gas")[int(rng.integers(3))])
    params: dict[str, Any] = {}
    if fault == "drift":
        params["pct_per_day"] = 2000.0  # visible within minutes: a demo, not a calibration
    if fault == "spikes":
        params["probability"] = 0.3
    return {"fault": {"type": fault, "count": 2, "utility": utility, **when, **params}}


def segment_scenario(
    cfg: LivingConfig, index: int, seed: int, event: dict[str, Any] | None
) -> Scenario:
    """Segment ``index`` as a scenario: the same networks and sensors every time (their ids
    and places do not depend on the seed), its own seed (noise) and at most one event."""
    water: dict[str, Any] = (
        {"model": "gis"}
        if cfg.water_model == "gis"
        else {"model": cfg.water_model, "anchor": [104.085, 30.64], "scale_m": 225}
    )
    doc: dict[str, Any] = {
        "name": f"living-{index}",
        "description": "living demo segment (simulators/living.py)",
        "duration": cfg.segment_s,
        "step": cfg.step_s,
        "speedup": 1,
        "seed": seed,
        "id_prefix": ID_PREFIX,
        "networks": {
            "water": water,
            "power": {"model": "mv_oberrhein", "anchor": [104.13, 30.68]},
            "gas": {
                "model": "schutterwald",
                "anchor": [104.04, 30.62],
                "wind": {"speed_m_s": 2.0, "from_deg": 225},
            },
        },
        "sensors": {
            "water": {"pressure": cfg.water_sensors},
            "power": {"buses": cfg.power_buses, "transformers": "all"},
            "gas": {
                "pressure": list(GAS_RINGS),
                "detectors": [{"near": j, "count": 4, "radius_m": 15} for j in GAS_RINGS],
                "background_detectors": 4,
            },
        },
        "incidents": [event["incident"]] if event and "incident" in event else [],
        "faults": [event["fault"]] if event and "fault" in event else [],
    }
    # JSON is YAML: the segment goes through the same checks as a scenario file
    return parse_scenario(json.dumps(doc), f"<living segment {index}>")


@dataclass
class LivingStats:
    segments: int = 0
    events: int = 0
    messages: int = 0
    run_ids: list[str] = field(default_factory=list)


# long: the loop of segments with its prefetch, truth and stop; each piece is a helper
def run_living(
    settings: Settings,
    cfg: LivingConfig = LivingConfig(),
    *,
    stop: threading.Event | None = None,
    on_segment: Callable[[str | None], None] | None = None,
) -> LivingStats:
    """Run the living city until ``stop`` (or SIGTERM/SIGINT); returns its figures."""
    seed = cfg.seed if cfg.seed is not None else int(time.time()) % 1_000_000
    rng = np.random.default_rng([seed, 0x11F])
    water_model, pipes = _water_model(settings, cfg)
    if water_model != cfg.water_model:
        cfg = LivingConfig(**{**cfg.__dict__, "water_model": water_model})
    start_ms = int(time.time()) * 1000
    stats = LivingStats()
    seqs: dict[str, int] = {}
    log.info(
        "living demo: %s, seed %d, water model %s",
        f"an event every {cfg.every_s:g} s" if cfg.every_s else "no events",
        seed,
        cfg.water_model,
    )
    with stop_on_signals(stop or threading.Event()) as ev:
        background = _background(settings, cfg, ev)
        pool = ThreadPoolExecutor(1, thread_name_prefix="living-build")

        def build(index: int) -> tuple[ScenarioRun, dict[str, Any] | None]:
            event = plan_event(rng, cfg, index, pipes)
            scn = segment_scenario(cfg, index, seed + index, event)
            return _prepare(settings, scn, start_ms + round(index * cfg.segment_s * 1000)), event

        nxt: Future = pool.submit(build, 0)
        index = 0
        try:
            while not ev.is_set():
                run, event = nxt.result()
                if index == 0:
                    _register(settings, run)
                nxt = pool.submit(build, index + 1)
                run_id = _play(settings, run, event, index, seqs, ev, stats)
                if on_segment is not None:
                    on_segment(run_id)
                index += 1
        finally:
            ev.set()
            pool.shutdown(wait=True, cancel_futures=True)
            if nxt.done() and nxt.exception() is None:
                nxt.result()[0].close()
            if background is not None:
                background.join(10)
    log.info("living demo stopped: %d segments, %d events", stats.segments, stats.events)
    return stats


def _water_model(settings: Settings, cfg: LivingConfig) -> tuple[str, list[str]]:
    """The water model to run and the pipes an incident may pick: the GIS layers' mains when
    the database has them, else Net3 (a database without the demo city)."""
    if cfg.water_model != "gis":
        return cfg.water_model, list(NET3_PIPES) if cfg.water_model == "Net3" else []
    from cityops.kernel.db import connect
    from simulators.store import read_water_layers

    with connect(settings.database_url) as conn:
        _nodes, pipes = read_water_layers(conn)
    mains = sorted(
        p["pipe_id"]
        for p in pipes
        if (p["diameter_mm"] or 0) >= 200 and (p["status"] or "open").lower() == "open"
    )
    if not mains:
        log.warning("no GIS water mains in the database: the living demo runs Net3")
        return "Net3", list(NET3_PIPES)
    return "gis", mains


def _prepare(settings: Settings, scn: Scenario, start_ms: int) -> ScenarioRun:
    from simulators.scenario import prepare_run

    return prepare_run(scn, start=iso(start_ms), database_url=settings.database_url)


def _register(settings: Settings, run: ScenarioRun) -> None:
    """The living city's sensors, their asset limits and metered areas in the catalogue (the
    same for every segment), as ``cityops simulate --register-sensors`` does."""
    from cityops.kernel.db import connect
    from gis.postgis import write_sensors
    from simulators.store import write_asset_limits, write_metered_areas

    with connect(settings.database_url) as conn:
        write_sensors(conn, run.sensors)
        write_asset_limits(conn, run.world.asset_limits)
        water = [s.sensor_id for s in run.sensors if s.utility.value == "water"]
        write_metered_areas(conn, run.world.metered_areas, water)


def _play(
    settings: Settings,
    run: ScenarioRun,
    event: dict[str, Any] | None,
    index: int,
    seqs: dict[str, int],
    stop: threading.Event,
    stats: LivingStats,
) -> str | None:
    """Publish one segment; its ground truth before (planned) and after (what happened)."""
    from cityops.kernel.db import connect
    from simulators.store import write_run_end, write_run_start

    run.continue_sequences(seqs)  # a device's sequence numbers carry on across segments
    run_id = None
    try:
        if event is not None:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            run_id = f"living-{stamp}-{uuid.uuid4().hex[:6]}"
            with connect(settings.database_url) as conn:
                write_run_start(conn, run.ground_truth(run_id=run_id))
            log.info("segment %d: %s (run %s)", index, _describe(event), run_id)
        st = publish_steps(
            settings.mqtt_url_for("sim"),
            run.messages,
            steps=run.steps,
            interval_s=run.scenario.step_s,
            speedup=1.0,
            stop=stop,
            sim_time_ms=run.ts_ms,
            hold_to_wall_clock=True,  # never a reading stamped ahead of the wall clock
            label=f"living segment {index}",
            final=run.final_messages,
        )
        seqs.update(run.last_sequences())
        stats.segments += 1
        stats.messages += st.messages
        if run_id is not None:
            truth = run.ground_truth(run_id=run_id, messages=st.messages)
            if st.steps < run.steps:
                truth["stopped_at_step"] = st.steps
            with connect(settings.database_url) as conn:
                write_run_end(conn, truth)
            stats.events += 1
            stats.run_ids.append(run_id)
        return run_id
    finally:
        run.close()


def _describe(event: dict[str, Any]) -> str:
    item = event.get("incident") or event["fault"]
    where = item.get("element") or item.get("utility") or ""
    return f"{item.get('network', 'sensor')} {item['type']} {where} at +{item['at']:g} s".strip()


def _background(settings: Settings, cfg: LivingConfig, stop: threading.Event) -> Any:
    """The catalogue's demo sensors in real time without the scripted drop, on a thread."""
    if cfg.background is None:
        return None
    from simulators.demo import run as run_demo

    catalogue = cfg.background

    def go() -> None:
        try:
            # start now: a backfill paced at speedup 1 would stay half an hour behind for ever
            start = iso(int(time.time()) * 1000)
            run_demo(settings, catalogue, 60.0, 0, 1.0, 1, start, anomaly=None, stop=stop)
        except Exception:  # the physics goes on without the background sensors
            log.exception("the demo sensors' simulator stopped")

    t = threading.Thread(target=go, name="living-background", daemon=True)
    t.start()
    return t


def main() -> int:
    """``python -m simulators.living``: what ``cityops up`` starts (settings from the
    environment; CITYOPS_DEMO_INCIDENTS=0 keeps the physics and plays no incidents)."""
    logging.basicConfig(
        level=logging.INFO,
        format='{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}',
    )
    # from the CITYOPS_* environment, which cityops up sets for its services
    settings = Settings()  # type: ignore[call-arg]
    every = parse_every(settings.demo_incidents)
    root = Path(__file__).resolve().parent.parent
    catalogue = root / "data" / "demo_sensors.geojson"
    cfg = LivingConfig(every_s=every, background=catalogue if catalogue.exists() else None)
    run_living(settings, cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["KINDS", "LivingConfig", "parse_every", "plan_event", "run_living", "segment_scenario"]
