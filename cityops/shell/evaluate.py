"""``cityops evaluate``: replay labelled scenarios through the real pipeline and score detection.

For each scenario: start an alert engine of its own (its own client id and share group, so a
running `cityops up` is not disturbed), put the scenario's water network into the GIS water
layers (as a utility would with `cityops gis import-epanet`, placed as the simulator places it:
the same anchor and scale, so the layers' coordinates are the simulated sensors'), publish the
scenario through the broker, wait until the engine has evaluated everything (its detector
clocks stop moving) and its enricher has placed the run's incidents on that network, stop it,
and score the incidents it raised against the scenario's ground truth (alerts.evaluation).

Note: the water layers of the database are replaced by the scenario's network (the demo's water
layers and sensors go, as with `cityops gis import-epanet`); `cityops gis load-demo` restores
them. A scenario with a power network replaces the power layers the same way with its pandapower
grid (``install_power_network``: the simulator's bus rows and line indices as ids, so its sensors
and its ground truth's elements are on the layers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from alerts import api as alerts_api
from alerts.evaluation import RunScore, format_score, score_run
from cityops.kernel.clock import Deadline
from cityops.kernel.settings import Settings
from cityops.shell.paths import PROJECT_ROOT
from gis.postgis import retire_sensors
from simulators.scenario import load_scenario, run_scenario

REPLAY_ACCEPT_PAST_S = 10 * 365 * 86_400.0  # library scenarios have fixed dates in the past


def _engine_env(settings: Settings, tag: str) -> dict[str, str]:
    env = {**os.environ, **settings.as_environment()}
    env["CITYOPS_ALERTS_CLIENT_ID"] = f"cityops-evaluate-{tag}"
    env["CITYOPS_ALERTS_SHARE_GROUP"] = f"cityops-evaluate-{tag}"
    env["CITYOPS_ACCEPT_PAST_S"] = str(REPLAY_ACCEPT_PAST_S)
    return env


def _detector_clock(database_url: str) -> object:
    with psycopg.connect(database_url) as conn:
        return alerts_api.read_detector_clock(conn)


def last_reading_us(truth: dict) -> int:
    """The time of a run's last step [us] (its ground truth's start, steps and step)."""
    start = datetime.fromisoformat(truth["start"].replace("Z", "+00:00"))
    return int(start.timestamp() * 1e6) + int((truth["steps"] - 1) * truth["step_s"] * 1e6)


def wait_until_evaluated(
    database_url: str, sensor_ids: list[str], until_us: int, *, timeout_s: float = 600
) -> bool:
    """Wait until the engine has evaluated the run's last step (its detector clock for the
    run's sensors reached ``until_us``) and then stops moving (held-back messages flushed at
    the end); False on timeout. A busy engine's long batch is not mistaken for the end."""
    deadline = Deadline(timeout_s)
    # readings dated after now are refused as from the future (a scenario that runs on past
    # the present): the engine's clock stops at now
    until = min(
        datetime.fromtimestamp(until_us / 1e6, UTC), datetime.now(UTC) - timedelta(minutes=10)
    )
    while not deadline.passed():
        with psycopg.connect(database_url) as conn:
            evaluated = alerts_api.read_evaluated_until(conn, sensor_ids)
        if evaluated is not None and evaluated >= until:
            break
        time.sleep(1.0)
    else:
        return False
    last = _detector_clock(database_url)
    while not deadline.passed():
        time.sleep(2)
        now = _detector_clock(database_url)
        if now == last:
            return True
        last = now
    return False


def install_water_network(database_url: str, scenario: Path, work_dir: Path) -> str | None:
    """Replace the GIS water layers with the scenario's water model, placed as the simulator
    places it (simulators/world.py: the extent's centre on ``anchor``, ``scale_m`` per model
    unit, EPSG:4544; or as it is in ``crs``); returns the model's name, None when the scenario
    has no water network or runs on the GIS layers already."""
    from gis.epanet import import_epanet
    from simulators import water as watermod

    water = load_scenario(scenario).networks.water
    if water is None or water.model == "gis":
        return None
    model = water.model
    if model in watermod.LIBRARY_NETWORKS:
        inp = watermod.library_inp(model)
    elif model.startswith("grid-"):
        import re

        m = re.match(watermod.GRID_RE, model)
        if m is None:
            raise ValueError(f"not a grid model name: {model!r}")
        work_dir.mkdir(parents=True, exist_ok=True)
        inp = work_dir / f"{model}.inp"
        inp.write_text(watermod.grid_inp(int(m.group(1)), int(m.group(2))), encoding="utf-8")
    else:
        inp = Path(model)
    origin = None if water.crs else (float(water.anchor[0]), float(water.anchor[1]))
    with psycopg.connect(database_url, autocommit=True) as conn:
        import_epanet(
            conn,
            inp,
            crs=water.crs or "EPSG:4544",
            origin=origin,
            scale_m=None if water.crs else float(water.scale_m),
        )
    return model


def install_power_network(database_url: str, scenario: Path) -> str | None:
    """Replace the GIS power layers with the scenario's pandapower grid, placed as the simulator
    places it (simulators/world.py ``PowerNetwork``: the buses' coordinates centred on
    ``anchor``, ``scale_m`` per metre, or as they are in ``crs``), with the simulator's ids (bus
    rows for nodes, as its sensors' ``sim:power:<row>`` assets; line indices for lines, as its
    incidents' elements; gis/pandapower_layers.py); returns the model's name, None when the
    scenario has no power network."""
    import numpy as np

    from gis.pandapower_layers import import_pandapower
    from simulators import power as powermod
    from simulators.geo import place, project

    power = load_scenario(scenario).networks.power
    if power is None:
        return None
    net = powermod.load_network(power.model)
    xy = powermod.bus_xy(net)
    if power.crs:
        lon, lat, _ = project(xy, power.crs)
    else:
        lon, lat, _ = place(
            xy, scale_m=float(power.scale_m), anchor_lon=power.anchor[0], anchor_lat=power.anchor[1]
        )
    with psycopg.connect(database_url, autocommit=True) as conn:
        import_pandapower(
            conn,
            net,
            np.column_stack([lon, lat]),
            source=f"pandapower {power.model} (scenario {scenario.stem}, as simulated)",
            voltage_kv=powermod.REPORT_KV,
        )
    return power.model


def wait_until_enriched(
    database_url: str, sensor_ids: list[str], *, timeout_s: float = 120
) -> bool:
    """Wait until the enricher has computed the context of every incident of these sensors:
    those still open that are new or grew, and those that ended before they got one (the
    enricher's queue, alerts.stores.incidents.read_unenriched); False on timeout."""
    deadline = Deadline(timeout_s)
    while not deadline.passed():
        with psycopg.connect(database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM incidents i"
                " WHERE ((i.state = 'open' AND i.enriched_at < i.updated_at)"
                "        OR i.enriched_at IS NULL)"
                " AND EXISTS (SELECT 1 FROM alerts a WHERE a.incident_id = i.incident_id"
                "   AND a.sensor_id = ANY(%s))",
                (sensor_ids,),
            ).fetchone()
        if row is not None and row[0] == 0:
            return True
        time.sleep(1.0)
    return False


# Replays run at an hour of readings per second: fast, and still delivered in small batches as
# live, so each sensor's arrival rhythm (which the silence detector learns) is the real one. As
# fast as possible (0) the engine receives hours of readings per batch and a short dropout
# looks like the rhythm.
REPLAY_SPEEDUP = 3600.0


def evaluate_scenario(
    settings: Settings,
    scenario: Path,
    log_dir: Path,
    *,
    drain_timeout_s: float = 600,
    speedup: float = REPLAY_SPEEDUP,
) -> tuple[str, RunScore]:
    tag = uuid.uuid4().hex[:8]
    settings = settings.model_copy(update={"accept_past_s": REPLAY_ACCEPT_PAST_S})
    log_dir.mkdir(parents=True, exist_ok=True)
    install_water_network(settings.database_url, scenario, log_dir / scenario.stem)
    install_power_network(settings.database_url, scenario)
    with open(log_dir / f"alerts-{scenario.stem}.log", "wb") as out:
        engine = subprocess.Popen(
            [sys.executable, "-m", "cityops", "alerts", "--ephemeral"],
            env=_engine_env(settings, tag),
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        started = Deadline(60)
        while "alerts engine ready" not in (log_dir / f"alerts-{scenario.stem}.log").read_text(
            errors="replace"
        ):
            if engine.poll() is not None or started.passed():
                raise RuntimeError(f"the alert engine did not start; see {log_dir}")
            time.sleep(0.2)
        report = run_scenario(
            settings,
            scenario,
            speedup=speedup,
            register_sensors=True,
            output_dir=log_dir / scenario.stem,
            # sensor ids of this run's own: an earlier run of the scenario in this database
            # keeps its readings, detector and balance state under the file's ids
            id_prefix=f"{load_scenario(scenario).id_prefix[:11]}-{tag[:4]}",
        )
        ids = run_sensor_ids(report.output_dir)
        if not wait_until_evaluated(
            settings.database_url,
            ids,
            last_reading_us(report.ground_truth),
            timeout_s=drain_timeout_s,
        ):
            raise RuntimeError(f"the alert engine did not evaluate the whole run; see {log_dir}")
        if not wait_until_enriched(settings.database_url, ids):
            # scored all the same: an incident not placed is scored at its centre
            print(f"warning: incidents of {scenario.stem} not all enriched", file=sys.stderr)
    finally:
        engine.terminate()
        try:
            engine.wait(30)
        except subprocess.TimeoutExpired:
            engine.kill()
    with psycopg.connect(settings.database_url) as conn:
        # only this run's incidents: the library's scenarios share their dates
        info, truth, detections = alerts_api.read_evaluation_input(conn, report.run_id, ids)
        # the run's sensors are retired once it is scored: the next scenario starts from a
        # catalogue without them (they would fall silent, and their clock is not its clock)
        retire_sensors(conn, ids)
        # ... and their open alerts end with them: a later run of the same scenario raises its
        # own, rather than finding the last run's still active
        alerts_api.clear_alerts_of_retired(conn, ids)
    score = score_run(
        truth, detections, sensors=info.sensors, run_start_us=info.start_us, run_end_us=info.end_us
    )
    return report.run_id, score


def run_sensor_ids(output_dir: Path) -> list[str]:
    """The sensors a scenario run published as (its ``sensors.geojson``)."""
    doc = json.loads((output_dir / "sensors.geojson").read_text(encoding="utf-8"))
    return [f["properties"]["sensor_id"] for f in doc["features"]]


def print_evaluation(
    settings: Settings, scenarios: list[Path], log_dir: Path, *, speedup: float = REPLAY_SPEEDUP
) -> list[RunScore]:
    scores = []
    for scenario in scenarios:
        run_id, score = evaluate_scenario(settings, scenario, log_dir, speedup=speedup)
        print(f"\n== {scenario.stem}")
        print(format_score(run_id, score), flush=True)
        scores.append(score)
    return scores
