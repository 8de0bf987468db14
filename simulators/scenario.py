"""`cityops simulate SCENARIO`: run a scenario file against the broker (wiring only).

Order: parse and validate the file, build and check the world (models, elements, sensors),
write the sensor catalogue and the planned ground truth (file, then database), and only then
publish. At the end the ground truth is rewritten with what happened (the sensors each incident
actually affected) and the number of messages.

Outputs in ``output_dir`` (default ``var/sim/<run_id>``): ``sensors.geojson`` (the run's
catalogue, importable with ``cityops sensors import``), ``ground_truth.json`` and, with
device identities, ``devices.json`` (passwords, 0600) and ``mosquitto_passwd.txt``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cityops.kernel.settings import Settings
from sensors.catalogue import sensors_to_geojson
from simulators.mqtt import DevicePublishers, RunStats, publish_steps, stop_on_signals
from simulators.run import ScenarioRun
from simulators.spec import (
    Scenario,
    ScenarioError,
    check_id_prefix,
    parse_scenario,
    parse_time_ms,
)

log = logging.getLogger(__name__)


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file (ScenarioError names the line and field)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), None, "", f"cannot read: {exc.strerror}") from None
    return parse_scenario(text, str(path))


def prepare_run(
    scenario: Scenario,
    *,
    seed: int | None = None,
    start: str | None = None,
    now_s: float | None = None,
    database_url: str = "",
) -> ScenarioRun:
    """The run, checked against its models; nothing is published or written.

    ``database_url``: where to read the GIS water layers for ``model: gis``."""
    if seed is not None:
        scenario = scenario.model_copy(update={"seed": seed})
    water = scenario.networks.water
    gis_folder = None
    if water is not None and water.model == "gis":
        scenario = _with_gis_water(scenario, database_url)
        gis_folder = Path(scenario.networks.water.model).parent  # type: ignore[union-attr]
    if start:
        start_ms = parse_time_ms(start)
    elif scenario.start_ms is not None:
        start_ms = scenario.start_ms
    else:
        # no start: the run ends now, so no reading is stamped in the future
        now = time.time() if now_s is None else now_s
        start_ms = int(now - scenario.duration_s) * 1000
    try:
        return ScenarioRun(scenario, start_ms=start_ms)
    finally:
        if gis_folder is not None:
            import shutil

            shutil.rmtree(gis_folder, ignore_errors=True)


def check_scenario(path: Path, *, database_url: str = "") -> dict[str, Any]:
    """Validate a scenario completely (file and models) without publishing; a summary."""
    scn = load_scenario(path)
    run = prepare_run(scn, now_s=0.0 if scn.start_ms is None else None, database_url=database_url)
    try:
        return {
            "name": scn.name,
            "sensors": len(run.sensors),
            "steps": run.steps,
            "incidents": len(scn.incidents),
            "faults": len(scn.faults),
        }
    finally:
        run.close()


def _with_gis_water(scenario: Scenario, database_url: str) -> Scenario:
    """The scenario with its water model built from the GIS layers in the database."""
    import tempfile

    from simulators.gisnet import water_layers_to_inp

    model = ("networks", "water", "model")
    if not database_url:
        raise scenario.fail(model, "gis needs a database (CITYOPS_DATABASE_URL)")
    from cityops.kernel.db import connect
    from simulators.store import read_water_layers

    with connect(database_url) as conn:
        nodes, pipes = read_water_layers(conn)
    if not nodes or not pipes:
        raise scenario.fail(model, "the GIS water layers are empty (cityops gis load-demo?)")
    try:
        text = water_layers_to_inp(nodes, pipes)
    except ValueError as exc:
        raise scenario.fail(model, str(exc)) from None
    folder = Path(tempfile.mkdtemp(prefix="cityops-gis-water-"))
    inp = folder / "gis_water.inp"
    inp.write_text(text)
    water = scenario.networks.water.model_copy(update={"model": str(inp), "crs": "EPSG:4544"})  # type: ignore[union-attr]
    networks = scenario.networks.model_copy(update={"water": water})
    return scenario.model_copy(update={"networks": networks})


@dataclass
class ScenarioReport:
    run_id: str
    output_dir: Path
    stats: RunStats
    ground_truth: dict[str, Any]


# long: a dozen keyword options and their docstring; the steps are helpers below
def run_scenario(
    settings: Settings,
    scenario: Path,
    *,
    speedup: float | None = None,
    seed: int | None = None,
    start: str | None = None,
    output_dir: Path | None = None,
    write_db: bool = True,
    register_sensors: bool = False,
    devices: Path | None = None,
    stop: threading.Event | None = None,
    id_prefix: str | None = None,
) -> ScenarioReport:
    """Validate, then publish a scenario; returns where its outputs are and its figures.

    ``speedup`` (simulated seconds per wall second, 0 as fast as possible), ``seed`` and
    ``start`` override the file. ``write_db``: ground truth into ``sim_runs`` /
    ``sim_ground_truth`` when a database is configured. ``register_sensors``: also upsert the
    run's sensors into the catalogue table so that ingestion accepts them. ``devices``: a JSON
    file of sensor id -> password; each sensor then publishes with its own identity.
    ``id_prefix`` overrides the file's: a second run of a scenario in one database then has
    sensors (and a metered area) of its own, not the first run's state and readings.
    """
    scn = load_scenario(scenario)
    if id_prefix is not None:
        scn = scn.model_copy(update={"id_prefix": check_id_prefix(id_prefix)})
    run = prepare_run(scn, seed=seed, start=start, database_url=settings.database_url)
    try:
        sink = _sink(settings, run, devices)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        run_id = f"{scn.name}-{stamp}-{uuid.uuid4().hex[:6]}"
        out = Path(output_dir) if output_dir else Path("var") / "sim" / run_id
        use_db = write_db and bool(settings.database_url)
        truth = _record_start(settings, run, run_id, out, use_db, register_sensors)
        log.info(
            "scenario %s: %d sensors, %d steps of %g s from %s, seed %d; outputs in %s",
            scn.name,
            len(run.sensors),
            run.steps,
            scn.step_s,
            truth["start"],
            run.scenario.seed,
            out,
        )
        with stop_on_signals(stop or threading.Event()) as ev:
            stats = publish_steps(
                sink,
                run.messages,
                steps=run.steps,
                interval_s=scn.step_s,
                speedup=scn.speedup if speedup is None else speedup,
                stop=ev,
                label=f"scenario {scn.name}",
                final=run.final_messages,
            )
        truth = run.ground_truth(run_id=run_id, messages=stats.messages)
        if stats.steps < run.steps:
            truth["stopped_at_step"] = stats.steps
        _write_truth_file(out, truth)
        if use_db:
            from cityops.kernel.db import connect
            from simulators.store import write_run_end

            with connect(settings.database_url) as conn:
                write_run_end(conn, truth)
        log.info("scenario %s: %d messages in %.1f s", scn.name, stats.messages, stats.wall_s)
        return ScenarioReport(run_id, out, stats, truth)
    finally:
        run.close()


def _sink(settings: Settings, run: ScenarioRun, devices: Path | None) -> str | DevicePublishers:
    """Where the run publishes: the simulators' service identity, or with device identities
    (``devices``: sensor id -> password) a fleet with a connection per sensor."""
    scn, url = run.scenario, settings.mqtt_url_for("sim")
    if devices is None and scn.identities != "device":
        return url
    from simulators.devices import device_url, read_credentials

    if devices is None:
        raise scn.fail(("identities",), "device identities need a credentials file")
    creds = read_credentials(devices)
    missing = [s.sensor_id for s in run.sensors if s.sensor_id not in creds]
    if missing:
        problem = f"no credentials for {len(missing)} sensors, e.g. {missing[0]}"
        raise ScenarioError(str(devices), None, "", problem)
    return DevicePublishers({s.sensor_id: device_url(url, s.sensor_id, creds) for s in run.sensors})


def _record_start(
    settings: Settings, run: ScenarioRun, run_id: str, out: Path, use_db: bool, register: bool
) -> dict[str, Any]:
    """The catalogue and the planned ground truth, in ``out`` and (``use_db``) the database;
    with ``register`` the sensors, their limits and areas too. Returns the ground truth."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "sensors.geojson").write_text(
        json.dumps(sensors_to_geojson(run.sensors), ensure_ascii=False, indent=1),
        encoding="utf-8",
    )
    truth = run.ground_truth(run_id=run_id)
    _write_truth_file(out, truth)
    if use_db or register:
        _db_start(settings, truth, run if register else None, use_db)
    return truth


def _write_truth_file(out: Path, truth: dict[str, Any]) -> None:
    tmp = out / "ground_truth.json.tmp"
    tmp.write_text(json.dumps(truth, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(out / "ground_truth.json")


def _db_start(
    settings: Settings, truth: dict[str, Any], run: ScenarioRun | None, truth_too: bool
) -> None:
    from cityops.kernel.db import connect
    from simulators.store import write_run_start

    with connect(settings.database_url) as conn:
        if run is not None:
            from gis.postgis import write_sensors
            from simulators.store import write_asset_limits, write_metered_areas

            write_sensors(conn, run.sensors)
            write_asset_limits(conn, run.world.asset_limits)
            water = [s.sensor_id for s in run.sensors if s.utility.value == "water"]
            write_metered_areas(conn, run.world.metered_areas, water)
        if truth_too:
            write_run_start(conn, truth)
