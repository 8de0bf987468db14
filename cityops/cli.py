"""The `cityops` command: wiring only (settings, then the part that does the work)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from cityops.settings import Settings

app = typer.Typer(
    help="cityops: smart-city IoT and urban operations center (Chengdu). "
    "Settings come from CITYOPS_* environment variables (docs/contracts/settings.md).",
    no_args_is_help=True,
    add_completion=False,
)
sensors_app = typer.Typer(help="The sensor catalogue.", no_args_is_help=True)
gis_app = typer.Typer(help="The basic geographic database (PostGIS layers).", no_args_is_help=True)
app.add_typer(sensors_app, name="sensors")
app.add_typer(gis_app, name="gis")
console = Console(stderr=True)
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"


def _settings() -> Settings:
    return Settings()


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        format='{"t":"%(asctime)s","level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}',
        stream=sys.stderr,
    )


@app.command()
def up(
    stack_dir: Annotated[
        Path | None, typer.Option(help="Where the private servers keep their data.")
    ] = None,
    simulate: Annotated[bool, typer.Option(help="Run the demo simulator.")] = True,
) -> None:
    """Run the whole stack on this machine: database, broker, simulator, ingestion, alerts and
    dashboard. Starts a private PostgreSQL and Mosquitto unless CITYOPS_DATABASE_URL and
    CITYOPS_MQTT_URL are set; prints the dashboard URL; Ctrl-C stops everything."""
    from cityops.up import run_up

    raise typer.Exit(run_up(_settings(), stack_dir=stack_dir, simulate=simulate, console=console))


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (idempotent, versioned; TimescaleDB where available)."""
    from cityops.db import connect
    from cityops.migrate import migrate as do_migrate
    from cityops.migrate import storage_mode

    with connect(_settings().database_url) as conn:
        applied = do_migrate(conn)
        console.print(
            f"applied: {', '.join(applied) or 'nothing (up to date)'}; storage: {storage_mode(conn)}"
        )


@app.command()
def ingest() -> None:
    """Subscribe to sensor telemetry (QoS 1, persistent session, shared subscription), validate,
    store in batches, and acknowledge each message only after its batch is committed."""
    _logging()
    from ingestion.service import run

    run(_settings())


@app.command()
def alerts() -> None:
    """Evaluate new readings against their sensor type's limits; raise, store, publish and clear alerts."""
    _logging()
    from alerts.service import run

    run(_settings())


@app.command()
def dashboard(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default CITYOPS_DASHBOARD_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CITYOPS_DASHBOARD_PORT).")] = None,
) -> None:
    """Serve the operations-center web pages (Simplified Chinese by default, English switch)."""
    _logging()
    from dashboards.app import run

    s = _settings()
    if host:
        s.dashboard_host = host
    if port:
        s.dashboard_port = port
    run(s)


@app.command()
def simulate(
    catalogue: Annotated[
        Path, typer.Option(help="Sensor catalogue (GeoJSON) to simulate.")
    ] = DATA_DIR / "demo_sensors.geojson",
    interval_s: Annotated[float, typer.Option(help="Simulated seconds between readings.")] = 60.0,
    steps: Annotated[
        int, typer.Option(help="How many steps to publish; 0 runs until stopped.")
    ] = 0,
    speedup: Annotated[
        float, typer.Option(help="Simulated seconds per wall second; 0 = as fast as possible.")
    ] = 60.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same messages).")] = 1,
    start: Annotated[
        str | None, typer.Option(help="Simulated start time, ISO 8601 (default: now).")
    ] = None,
) -> None:
    """Publish readings for the demo water, power and gas sensors, with a scripted pressure drop
    on one water main (the anomaly) so that alerts have something to find."""
    _logging()
    from simulators.demo import run

    run(
        _settings(),
        catalogue=catalogue,
        interval_s=interval_s,
        steps=steps,
        speedup=speedup,
        seed=seed,
        start=start,
    )


@sensors_app.command("import")
def sensors_import(
    file: Annotated[Path, typer.Argument(help="GeoJSON, CSV or GeoPackage of sensors.")],
) -> None:
    """Add or update sensors from a file (columns: sensor_id, sensor_type, name, district_adcode,
    asset_id, status; Point geometry or lon/lat)."""
    from cityops.db import connect
    from gis.postgis import read_sensor_file, write_sensors

    sensors = read_sensor_file(file)
    with connect(_settings().database_url) as conn:
        n = write_sensors(conn, sensors)
    console.print(f"imported {n} sensors from {file}")


@gis_app.command("load-districts")
def gis_load_districts(
    file: Annotated[
        Path, typer.Argument(help="GeoJSON of districts (adcode, name_zh, name_en).")
    ] = DATA_DIR / "chengdu_districts.geojson",
) -> None:
    """Load Chengdu's 20 county-level districts (shipped with cityops) into PostGIS."""
    from cityops.db import connect
    from gis.postgis import write_districts

    doc = json.loads(file.read_text(encoding="utf-8"))
    with connect(_settings().database_url) as conn:
        n = write_districts(conn, doc)
    console.print(f"loaded {n} districts")


def _mount_part_commands() -> None:
    """Commands that the parts define themselves (typer sub-apps), mounted here."""
    from gis.cli import register

    register(gis_app)


_mount_part_commands()


@app.command()
def status() -> None:
    """Counts of sensors, readings, open alerts and quarantined messages."""
    from cityops.db import connect

    with connect(_settings().database_url) as conn:
        for table, sql in (
            ("sensors", "SELECT count(*) FROM sensors"),
            ("readings", "SELECT count(*) FROM readings"),
            ("open alerts", "SELECT count(*) FROM alerts WHERE state = 'open'"),
            ("quarantine", "SELECT count(*) FROM quarantine"),
        ):
            console.print(f"{table}: {conn.execute(sql).fetchone()[0]}")  # type: ignore[index]
