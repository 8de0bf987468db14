"""The `cityops` command: wiring only (settings, then the part that does the work)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from cityops.kernel.settings import Settings
from cityops.shell.paths import DATA_DIR, PROJECT_ROOT

app = typer.Typer(
    help="cityops: smart-city IoT and urban operations center (Chengdu). "
    "Settings come from CITYOPS_* environment variables (docs/contracts/settings.md).",
    no_args_is_help=True,
    add_completion=False,
)
sensors_app = typer.Typer(help="The sensor catalogue.", no_args_is_help=True)
gis_app = typer.Typer(help="The basic geographic database (PostGIS layers).", no_args_is_help=True)
users_app = typer.Typer(
    help="Operations-center accounts (roles: operator, planner, emergency, admin).",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")
app.add_typer(sensors_app, name="sensors")
app.add_typer(gis_app, name="gis")
tokens_app = typer.Typer(
    help="API tokens for the planners' API and OGC API (QGIS, GDAL, other systems).",
    no_args_is_help=True,
)
app.add_typer(tokens_app, name="tokens")
devices_app = typer.Typer(help="Device identities on the message bus.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
console = Console(stderr=True)


@app.callback()
def _commands(ctx: typer.Context) -> None:
    """Every command but `up` finds the running stack's settings by itself (issue 16 item 6):
    `up` decides from the environment whether to run its own servers."""
    from cityops.shell.stack import adopt_stack_environment

    if ctx.invoked_subcommand != "up":
        adopt_stack_environment()


def main() -> None:
    """The `cityops` command: a missing or unreachable database is a message, not a traceback."""
    import psycopg

    from cityops.kernel.db import NoDatabaseConfigured

    try:
        app()
    except NoDatabaseConfigured as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise SystemExit(2) from None
    except psycopg.OperationalError as exc:
        # libpq's message names the host and port, never the password
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        console.print(
            f"[red]cannot reach the database ({first}): is `cityops up` running, or"
            " CITYOPS_DATABASE_URL right?[/]",
            soft_wrap=True,
        )
        raise SystemExit(2) from None


def _settings() -> Settings:
    from cityops.shell.stack import command_settings

    return command_settings()


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
    incidents: Annotated[
        bool,
        typer.Option(
            help="Living demo: a random physics incident every few minutes"
            " (CITYOPS_DEMO_INCIDENTS); --no-incidents for production."
        ),
    ] = True,
) -> None:
    """Run the whole stack on this machine: database, broker, simulator, ingestion, alerts and
    dashboard. Starts a private PostgreSQL and Mosquitto unless CITYOPS_DATABASE_URL and
    CITYOPS_MQTT_URL are set; prints the dashboard URL; Ctrl-C stops everything."""
    from cityops.shell.up import run_up

    raise typer.Exit(
        run_up(
            Settings(),
            stack_dir=stack_dir,
            simulate=simulate,
            incidents=incidents,
            console=console,
        )
    )


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema (idempotent, versioned; TimescaleDB where available)."""
    from cityops.kernel.db import connect
    from cityops.kernel.migrate import storage_mode
    from cityops.shell.database import prepare_database

    with connect(_settings().database_url) as conn:
        applied = prepare_database(conn)
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


alerts_app = typer.Typer(invoke_without_command=True)  # help: the callback's docstring
incidents_app = typer.Typer(
    help="Incidents: alerts grouped by place and time.", no_args_is_help=True
)
app.add_typer(alerts_app, name="alerts")
readings_app = typer.Typer(help="Stored readings.", no_args_is_help=True)
app.add_typer(readings_app, name="readings")
app.add_typer(incidents_app, name="incidents")


@alerts_app.callback(invoke_without_command=True)
def alerts(
    ctx: typer.Context,
    partition: Annotated[
        str,
        typer.Option(
            help="k/n: evaluate only the sensors of partition k of n (each worker with its own "
            "CITYOPS_ALERTS_CLIENT_ID); 0/1 evaluates every sensor in a share group."
        ),
    ] = "0/1",
    ephemeral: Annotated[
        bool,
        typer.Option(
            help="End the broker session on stop (replays, benchmarks); by default it persists "
            "so that telemetry published while the engine is down waits for it."
        ),
    ] = False,
) -> None:
    """Without a subcommand: evaluate new readings as they arrive (thresholds with hysteresis and
    the detectors enabled per sensor type); raise, store, group into incidents, publish and
    notify; clear on return. `cityops alerts list` lists them."""
    if ctx.invoked_subcommand is not None:
        return
    _logging()
    from alerts.api import run

    try:
        k, n = (int(x) for x in partition.split("/"))
        if not 0 <= k < n:
            raise ValueError
    except ValueError:
        console.print(f"[red]--partition must be k/n with 0 <= k < n, not {partition!r}[/]")
        raise typer.Exit(2) from None
    run(_settings(), partition=(k, n), end_session=ephemeral)


@app.command("dead-letters")
def dead_letters(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    payload: Annotated[bool, typer.Option(help="Show the payloads (first 200 bytes).")] = False,
) -> None:
    """Telemetry messages the alert engine could not store (the database refused them for good):
    when, topic, size and the database's reason. They were acknowledged so that the stream went
    on; look here when the engine's log says "skipped a message the database refuses"."""
    from zoneinfo import ZoneInfo

    from alerts.api import read_dead_letters
    from cityops.kernel.db import connect

    out = Console(soft_wrap=True)
    chengdu = ZoneInfo("Asia/Shanghai")
    with connect(_settings().database_url) as conn:
        letters = read_dead_letters(conn, limit=max(1, limit))
    if not letters:
        out.print("no dead letters")
        return
    # one line per message, tab-separated: readable, and greppable when piped
    out.print("id\treceived (Asia/Shanghai)\ttopic\tbytes\terror", highlight=False)
    for d in letters:
        when = d.received_at.astimezone(chengdu).strftime("%Y-%m-%d %H:%M:%S")
        reason = d.error.splitlines()[0][:200] if d.error else ""
        out.print(
            f"{d.dead_letter_id}\t{when}\t{d.topic}\t{d.payload_bytes}\t{reason}",
            markup=False,
            highlight=False,
        )
    if payload:
        for d in letters:
            out.print(f"{d.dead_letter_id}: {d.payload[:200]!r}", markup=False, highlight=False)


@app.command()
def dashboard(
    host: Annotated[
        str | None, typer.Option(help="Listen address (default CITYOPS_DASHBOARD_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default CITYOPS_DASHBOARD_PORT).")] = None,
    threads: Annotated[
        int, typer.Option(min=1, max=64, help="Worker threads of the WSGI server (waitress).")
    ] = 8,
) -> None:
    """Serve the operations-center web pages (Simplified Chinese by default, English switch)
    on waitress, a production WSGI server."""
    _logging()
    from dashboards.app import run

    s = _settings()
    if host:
        s.dashboard_host = host
    if port:
        s.dashboard_port = port
    try:
        run(s, threads=threads)
    except ValueError as exc:  # a setting that cannot work, e.g. CITYOPS_OIDC_* (decision 0044)
        console.print(f"[bold red]cannot start the dashboard:[/] {exc}")
        raise typer.Exit(2) from None


# the options are declared one per parameter, as typer reads them: long on purpose
@app.command()
def simulate(
    scenario: Annotated[
        Path | None,
        typer.Argument(
            help="Scenario file (YAML, docs/simulators.md). Without it the demo sensors are simulated."
        ),
    ] = None,
    catalogue: Annotated[
        Path, typer.Option(help="Demo: sensor catalogue (GeoJSON) to simulate.")
    ] = DATA_DIR / "demo_sensors.geojson",
    interval_s: Annotated[
        float, typer.Option(help="Demo: simulated seconds between readings.")
    ] = 60.0,
    steps: Annotated[
        int, typer.Option(help="Demo: how many steps to publish; 0 runs until stopped.")
    ] = 0,
    speedup: Annotated[
        float | None,
        typer.Option(
            help="Simulated seconds per wall second; 0 = as fast as possible "
            "(default: 60 for the demo, the scenario's own for a scenario)."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Random seed (same seed, same messages; default 1 or the scenario's)."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Simulated start time, ISO 8601 (default: the scenario's, or a run ending now)."
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            help="Scenario: folder for sensors.geojson and ground_truth.json (default var/sim/<run id>)."
        ),
    ] = None,
    ground_truth_db: Annotated[
        bool, typer.Option(help="Scenario: also write the ground truth to the database.")
    ] = True,
    register_sensors: Annotated[
        bool, typer.Option(help="Scenario: add its sensors to the catalogue before publishing.")
    ] = False,
    devices: Annotated[
        Path | None,
        typer.Option(
            help="Scenario: JSON of sensor id -> password; each sensor then publishes with its own identity."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Scenario: validate it against its network models and exit.")
    ] = False,
) -> None:
    """Publish simulated telemetry. Without SCENARIO: the demo sensors with a scripted pressure
    drop on one water main. With SCENARIO: physics-based water, power and gas networks with
    labelled incidents and sensor faults; the file is validated before anything is published and
    the ground truth is written to a file and the database."""
    _logging()
    if scenario is not None:
        _simulate_scenario(
            scenario,
            check=check,
            speedup=speedup,
            seed=seed,
            start=start,
            output_dir=output,
            write_db=ground_truth_db,
            register_sensors=register_sensors,
            devices=devices,
        )
        return
    from simulators.demo import run

    run(
        _settings(),
        catalogue=catalogue,
        interval_s=interval_s,
        steps=steps,
        speedup=60.0 if speedup is None else speedup,
        seed=1 if seed is None else seed,
        start=start,
    )


def _simulate_scenario(scenario: Path, *, check: bool, **options: Any) -> None:
    """``cityops simulate SCENARIO``: check it, or run it and say where its ground truth is."""
    from simulators.scenario import check_scenario, run_scenario
    from simulators.spec import ScenarioError

    try:
        if check:
            console.print(check_scenario(scenario, database_url=_settings().database_url))
            return
        report = run_scenario(_settings(), scenario, **options)
    except ScenarioError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    console.print(
        f"run {report.run_id}: {report.stats.messages} messages in {report.stats.wall_s:.1f} s; "
        f"ground truth in {report.output_dir}"
    )


@app.command()
def evaluate(
    scenarios: Annotated[list[Path], typer.Argument(help="Scenario files (scenarios/*.yaml).")],
    log_dir: Annotated[
        Path, typer.Option(help="Where the engine logs and ground truth go.")
    ] = PROJECT_ROOT / "var" / "evaluate",
    speedup: Annotated[
        float,
        typer.Option(
            help="Simulated seconds per wall second (0: as fast as possible; then a sensor's "
            "dropout shorter than a batch of replayed readings goes unseen)."
        ),
    ] = 3600.0,
) -> None:
    """Replay labelled scenarios through the real broker and alert engine and print, per incident
    type, recall, time to detection, localisation error, false alerts per 1,000 sensor-days and a
    NAB-style score. Use a database of its own: the scenarios register their sensors."""
    _logging("WARNING")
    from cityops.shell.evaluate import print_evaluation

    print_evaluation(_settings(), scenarios, log_dir, speedup=speedup)


@readings_app.command("import")
def readings_import(
    file: Annotated[Path, typer.Argument(help="CSV: sensor_id, quantity, ts, value[, seq].")],
) -> None:
    """Load history, also older than the live window (CITYOPS_ACCEPT_PAST_S): the whole file is
    checked first (nothing stored on any error), then written through ingestion's store;
    readings already stored are skipped, so a re-run stores nothing twice. Rows are flagged as
    history: data trust counts them as backfilled, not late. sensor_id may be the utility's own
    id (external_id). ts: ISO 8601 with a zone, or Unix seconds."""
    from ingestion.history import HistoryError, import_history

    settings = _settings()
    try:
        text = file.read_text(encoding="utf-8-sig")
        r = import_history(settings.database_url, text, retention_days=settings.retention_days)
    except (HistoryError, OSError, UnicodeDecodeError) as exc:
        console.print(f"[red]{exc}[/]", soft_wrap=True)
        raise typer.Exit(2) from None
    span = f" from {r.first:%Y-%m-%d %H:%M} to {r.last:%Y-%m-%d %H:%M} UTC" if r.first else ""
    console.print(
        f"{r.rows} readings in {file}{span}: {r.stored} stored, {r.skipped} already there",
        soft_wrap=True,
    )


@gis_app.command("load-districts")
def gis_load_districts(
    file: Annotated[
        Path, typer.Argument(help="GeoJSON of districts (adcode, name_zh, name_en).")
    ] = DATA_DIR / "chengdu_districts.geojson",
) -> None:
    """Load Chengdu's 20 county-level districts (shipped with cityops) into PostGIS."""
    from cityops.kernel.db import connect
    from gis.postgis import write_districts

    doc = json.loads(file.read_text(encoding="utf-8"))
    with connect(_settings().database_url) as conn:
        n = write_districts(conn, doc)
    console.print(f"loaded {n} districts")


PASSWORD_PROBLEMS = {
    "short": "the password needs at least 12 characters",
    "username": "the password must not be or contain the user name",
    "common": "the password is too common",
    "simple": "the password needs 3 of: lower case, upper case, digits, other characters"
    " (or at least 16 characters)",
}


@users_app.command("add")
def users_add(
    username: Annotated[str, typer.Argument(help="Login name: lower-case letters, digits, . _ -")],
    role: Annotated[str, typer.Option(help="operator, planner, emergency or admin.")],
    display_name: Annotated[str, typer.Option(help="Name shown in the audit log.")] = "",
    password_stdin: Annotated[
        bool, typer.Option(help="Read the password from standard input instead of prompting.")
    ] = False,
) -> None:
    """Create an account, or replace its password and role (argon2id hash; its sessions end).
    Passwords: >= 12 characters, not containing the name, not a common one, 3 character classes
    or >= 16 characters (access.auth.password_problem)."""
    import psycopg

    from access.accounts import write_user
    from access.auth import password_problem
    from cityops.kernel.db import connect

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    problem = password_problem(password, username)
    if problem:
        console.print(f"[red]{PASSWORD_PROBLEMS[problem]}[/]")
        raise typer.Exit(2)
    with connect(_settings().database_url) as conn:
        try:
            write_user(conn, username, password, role, display_name)
        except (ValueError, psycopg.errors.CheckViolation) as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    console.print(f"account {username} ({role}) saved")


@users_app.command("list")
def users_list() -> None:
    """The accounts, their roles and whether they are disabled (never the password hashes)."""
    from rich.table import Table

    from access.accounts import read_users
    from cityops.kernel.db import connect

    with connect(_settings().database_url) as conn:
        rows = read_users(conn)
    table = Table("username", "role", "name", "disabled", "created")
    for r in rows:
        table.add_row(
            r["username"],
            r["role"],
            r["display_name"],
            str(r["disabled"]),
            f"{r['created_at']:%Y-%m-%d}",
        )
    Console().print(table)


@users_app.command("disable")
def users_disable(
    username: Annotated[str, typer.Argument(help="The account to disable.")],
    enable: Annotated[bool, typer.Option(help="Enable it again instead.")] = False,
) -> None:
    """Disable an account (its sessions end at once), or enable it again."""
    from access.accounts import write_user_disabled
    from cityops.kernel.db import connect

    with connect(_settings().database_url) as conn:
        if not write_user_disabled(conn, username, not enable):
            console.print(f"[red]no account {username}[/]")
            raise typer.Exit(2)
    console.print(f"account {username} {'enabled' if enable else 'disabled'}")


class _LazyModule:
    """A module imported on its first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


def _mount_part_commands() -> None:
    """Commands that the parts define themselves (typer sub-apps), mounted here."""
    from access.cli import register as register_tokens
    from gis.cli import register

    # the metered areas' store is the alerts part's (gis may not import it); loaded on first use
    # because alerts.api takes most of a second to import and most commands never need it
    register(gis_app, alerts_api=_LazyModule("alerts.api"))
    register_tokens(tokens_app)

    from cityops.shell.devices_cli import register as register_devices

    register_devices(devices_app)

    from cityops.shell.security_cli import register as register_security

    register_security(app)  # keys, verify, audit verify (national cryptography)

    from cityops.shell.works_cli import register as register_works

    register_works(app)  # the works calendar: planned operations raise no leak (issue 15)

    from cityops.shell.sensors_cli import register as register_sensors

    register_sensors(sensors_app)  # import (CRS, model placement, at-asset, utility ids)

    from cityops.shell.listing_cli import register as register_listing

    register_listing(alerts_app, incidents_app)  # alerts list, incidents list


_mount_part_commands()


@app.command()
def status() -> None:
    """Counts of sensors, readings, open alerts and quarantined messages."""
    from cityops.kernel.db import connect

    with connect(_settings().database_url) as conn:
        for table, sql in (
            ("sensors", "SELECT count(*) FROM sensors"),
            ("readings", "SELECT count(*) FROM readings"),
            ("open alerts", "SELECT count(*) FROM alerts WHERE state = 'open'"),
            ("quarantine", "SELECT count(*) FROM quarantine"),
            ("alert dead letters", "SELECT count(*) FROM alert_dead_letters"),
        ):
            console.print(f"{table}: {conn.execute(sql).fetchone()[0]}")  # type: ignore[index]
