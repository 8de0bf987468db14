"""``cityops up``: the whole stack on one machine, supervised, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from rich.console import Console
from rich.status import Status

from cityops.kernel.clock import Deadline
from cityops.kernel.db import connect
from cityops.kernel.migrate import storage_mode
from cityops.kernel.settings import Settings
from cityops.shell.database import prepare_database
from cityops.shell.paths import DATA_DIR, PROJECT_ROOT
from cityops.shell.stack import (
    LocalStack,
    default_stack_dir,
    ensure_service_user,
    free_port,
    port_is_free,
)

SERVICES = ("ingest", "alerts", "dashboard", "simulate")
MAX_RESTARTS_PER_MINUTE = 5
GIS_PORT = 5001


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    user: str | None = None  # run as this user (cityops up as root: the servers' user)
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


def run_up(
    settings: Settings,
    *,
    stack_dir: Path | None,
    simulate: bool,
    console: Console,
    incidents: bool = True,
) -> int:
    """The whole stack on this machine until SIGTERM or Ctrl-C; 0 after a clean stop.

    ``simulate``: run the living demo (simulators/living.py); ``incidents`` False
    (``--no-incidents``) keeps its physics and plays no incidents, as CITYOPS_DEMO_INCIDENTS=0
    does."""
    started = time.monotonic()
    if not incidents:
        settings = settings.model_copy(update={"demo_incidents": "0"})
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    stack: LocalStack | None = None
    children: list[Child] = []
    try:
        with console.status("preparing cityops ...") as status:
            settings, env, logs, stack = _servers(settings, stack_dir, console, status)
            admin_password = _prepare(settings, console, status)
            env["CITYOPS_DEMO_INCIDENTS"] = settings.demo_incidents
            children, url, gis_url = _start_services(settings, env, logs, simulate, status, console)
        _say_demo(settings, simulate, console)
        console.print(
            f"[bold green]cityops is running[/] in {time.monotonic() - started:.1f} s. "
            f"Dashboard: [bold]{url}[/]  Planners' API and OGC API Features: "
            f"{gis_url}/api and /ogc  (logs: {logs}; Ctrl-C stops everything)"
        )
        if admin_password:
            console.print(
                f"first account created: [bold]admin[/] / [bold]{admin_password}[/] "
                "(shown once; change it with `cityops users add admin --role admin`)"
            )
        print(url, flush=True)
        while not stopping.wait(0.5):
            for child in children:
                if child.proc is not None and child.proc.poll() is not None:
                    _restart(child, env, console)
        return 0
    except Exception as exc:
        console.print(f"[bold red]cityops up failed:[/] {exc}")
        return 1
    finally:
        console.print("stopping ...")
        _stop_children(children)
        if stack is not None:
            stack.stop()
        console.print("stopped")


def _servers(
    settings: Settings, stack_dir: Path | None, console: Console, status: Status
) -> tuple[Settings, dict[str, str], Path, LocalStack | None]:
    """The database and broker: those CITYOPS_DATABASE_URL and CITYOPS_MQTT_URL name, or a
    private stack started here. Returns the settings and environment that point at them, the
    logs folder and the stack (None when the services are the environment's)."""
    env = dict(os.environ)
    root = stack_dir or default_stack_dir(PROJECT_ROOT)
    if settings.database_url and settings.mqtt_url:
        console.print("using the services named by CITYOPS_DATABASE_URL and CITYOPS_MQTT_URL")
        stack = None
    else:
        stack = LocalStack(root, log=lambda m: status.update(m + " ..."))
        stack.start()
        env.update(stack.environment())
        settings = settings.model_copy(
            update={
                "database_url": stack.database_url,
                "mqtt_url": stack.mqtt_url("cityops-admin"),
                "keys_dir": env["CITYOPS_KEYS_DIR"],
                "device_ca_dir": env["CITYOPS_DEVICE_CA_DIR"],
            }
        )
        console.print(f"private PostgreSQL and Mosquitto under {root}")
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return settings, env, logs, stack


def _prepare(settings: Settings, console: Console, status: Status) -> str | None:
    """Migrate, load the reference data; the first admin's password when one was created."""
    status.update("migrating the database ...")
    with connect(settings.database_url) as conn:
        applied = prepare_database(conn)
        mode = storage_mode(conn)
        status.update("loading districts and demo sensors ...")
        _load_reference_data(conn)
        admin_password = _first_admin(conn)
        if settings.keys_dir:
            # secrets stored before this release (or under an older data key) encrypted now
            from alerts.api import reencrypt_routes
            from cityops.kernel.crypto import load_keyring

            reencrypt_routes(conn, load_keyring(Path(settings.keys_dir)))
    console.print(f"database ready (storage: {mode}; applied: {', '.join(applied) or 'none'})")
    return admin_password


def _start_services(
    settings: Settings,
    env: dict[str, str],
    logs: Path,
    simulate: bool,
    status: Status,
    console: Console,
) -> tuple[list[Child], str, str]:
    """Start every service as a child process; return them, the dashboard's URL once it
    answers, and the planners' API base URL."""
    port = settings.dashboard_port if port_is_free(settings.dashboard_port) else free_port()
    env["CITYOPS_DASHBOARD_PORT"] = str(port)
    gis_port = GIS_PORT if port_is_free(GIS_PORT) else free_port()
    py = [sys.executable, "-m", "cityops"]
    user = _service_user(logs, console)
    env["HOME"] = str(logs.parent)  # not root's home, which the service user may not read
    children = [
        Child(name, _service_args(name, py), logs / f"{name}.log", user)
        for name in SERVICES
        if simulate or name != "simulate"
    ]
    children.append(
        Child("gis", [*py, "gis", "serve", "--port", str(gis_port)], logs / "gis.log", user)
    )
    for child in children:
        status.update(f"starting {child.name} ...")
        _spawn(child, env)
    url = f"http://{settings.dashboard_host}:{port}/"
    status.update(f"waiting for the dashboard at {url} ...")
    _wait_http(url, timeout_s=90, children=children)
    return children, url, f"http://{settings.dashboard_host}:{gis_port}"


def _service_args(name: str, py: list[str]) -> list[str]:
    # the simulator is the living demo: physics in real time with an incident every few
    # minutes (CITYOPS_DEMO_INCIDENTS), not `cityops simulate`'s one scripted drop
    if name == "simulate":
        return [sys.executable, "-m", "simulators.living"]
    return [*py, name]


def _say_demo(settings: Settings, simulate: bool, console: Console) -> None:
    if not simulate:
        return
    from simulators.living import parse_every

    every = parse_every(settings.demo_incidents)
    if every is None:
        console.print("living demo: the city in real time, no incidents")
    else:
        console.print(
            f"living demo: the city in real time, a random incident every {every:g} s "
            "(CITYOPS_DEMO_INCIDENTS=0 or --no-incidents for none)"
        )


def _load_reference_data(conn: psycopg.Connection) -> None:
    from gis.postgis import read_sensor_file, write_districts, write_sensors

    if conn.execute("SELECT count(*) FROM districts").fetchone()[0] == 0:
        write_districts(
            conn, json.loads((DATA_DIR / "chengdu_districts.geojson").read_text(encoding="utf-8"))
        )
    if conn.execute("SELECT count(*) FROM sensors").fetchone()[0] == 0:
        write_sensors(conn, read_sensor_file(DATA_DIR / "demo_sensors.geojson"))
    if conn.execute("SELECT count(*) FROM water_pipes").fetchone()[0] == 0:
        # the demo networks, facilities and grid cells (marked demo in gis_layers)
        from gis.demo import DemoConfig, build_demo_city
        from gis.grid import build_grid_cells
        from gis.postgis import fetch_districts_frame, write_grid_cells, write_layers

        write_grid_cells(conn, build_grid_cells(fetch_districts_frame(conn), (7, 8)))
        write_layers(conn, build_demo_city(DemoConfig()), demo=True)


def _first_admin(conn: psycopg.Connection) -> str | None:
    """On a database without accounts, create ``admin`` with a random password."""
    import secrets

    from access.accounts import read_users, write_user

    if read_users(conn):
        return None
    password = secrets.token_urlsafe(12)
    write_user(conn, "admin", password, "admin", "管理员")
    return password


def _spawn(child: Child, env: dict[str, str]) -> None:
    log = open(child.log_path, "ab")  # noqa: SIM115 - handed to the child
    child.proc = subprocess.Popen(
        child.args,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
        start_new_session=True,
        user=child.user,
        group=child.user,
        extra_groups=[] if child.user else None,
    )
    log.close()


def _service_user(logs: Path, console: Console) -> str | None:
    """The unprivileged user the services run as when ``cityops up`` runs as root: the
    servers' own user, once it can run cityops from this checkout (it needs to read the code
    and the virtual environment); None (the services stay ours) otherwise, with a warning."""
    user = ensure_service_user()
    if user is None:
        return None
    probe = subprocess.run(
        ["runuser", "-u", user, "--", sys.executable, "-c", "import cityops.shell.cli"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if probe.returncode != 0:
        console.print(
            f"[yellow]the services run as root: user {user} cannot read this checkout"
            f" ({PROJECT_ROOT}); put it where others may read it to run them unprivileged[/]"
        )
        return None
    for path in (logs, *logs.iterdir()):
        shutil.chown(path, user, user)
    return user


def _restart(child: Child, env: dict[str, str], console: Console) -> None:
    now = time.monotonic()
    child.restarts = [t for t in child.restarts if now - t < 60]
    if child.name == "simulate" and child.proc is not None and child.proc.returncode == 0:
        return  # a finite simulation that finished
    if len(child.restarts) >= MAX_RESTARTS_PER_MINUTE:
        return
    tail = child.log_path.read_text(errors="replace").splitlines()[-5:]
    console.print(
        f"[yellow]{child.name} exited ({child.proc.returncode if child.proc else '?'}); restarting[/]"
    )
    for line in tail:
        console.print(f"  {line}", markup=False)
    child.restarts.append(now)
    time.sleep(1)
    _spawn(child, env)


def _wait_http(url: str, *, timeout_s: float, children: list[Child]) -> None:
    deadline = Deadline(timeout_s)
    while not deadline.passed():
        for child in children:
            if (
                child.proc is not None
                and child.proc.poll() is not None
                and child.name != "simulate"
            ):
                tail = "\n".join(child.log_path.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the dashboard did not answer at {url} within {timeout_s:.0f} s")


def _stop_children(children: list[Child]) -> None:
    for child in children:
        if child.proc is not None and child.proc.poll() is None:
            os.killpg(child.proc.pid, signal.SIGTERM)
    deadline = Deadline(15)
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline.left()))
        except subprocess.TimeoutExpired:
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(5)
