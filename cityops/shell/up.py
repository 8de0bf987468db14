"""``cityops up``: the whole stack on one machine, supervised, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from rich.console import Console

from cityops.kernel.db import connect
from cityops.kernel.migrate import storage_mode
from cityops.kernel.settings import Settings
from cityops.shell.database import prepare_database
from cityops.shell.paths import DATA_DIR, PROJECT_ROOT
from cityops.shell.stack import LocalStack, default_stack_dir, free_port, port_is_free

SERVICES = ("ingest", "alerts", "dashboard", "simulate")
MAX_RESTARTS_PER_MINUTE = 5
GIS_PORT = 5001


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)


def run_up(settings: Settings, *, stack_dir: Path | None, simulate: bool, console: Console) -> int:
    started = time.monotonic()
    stack: LocalStack | None = None
    env = dict(os.environ)
    children: list[Child] = []
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        with console.status("preparing cityops ...") as status:
            if settings.database_url and settings.mqtt_url:
                console.print(
                    "using the services named by CITYOPS_DATABASE_URL and CITYOPS_MQTT_URL"
                )
                logs = (stack_dir or default_stack_dir(PROJECT_ROOT)) / "logs"
            else:
                root = stack_dir or default_stack_dir(PROJECT_ROOT)
                stack = LocalStack(root, log=lambda m: status.update(m + " ..."))
                stack.start()
                env.update(stack.environment())
                settings = Settings(
                    **{
                        **settings.model_dump(),
                        "database_url": stack.database_url,
                        "mqtt_url": stack.mqtt_url("cityops-admin"),
                    }
                )
                logs = root / "logs"
                console.print(f"private PostgreSQL and Mosquitto under {root}")
            logs.mkdir(parents=True, exist_ok=True)
            status.update("migrating the database ...")
            with connect(settings.database_url) as conn:
                applied = prepare_database(conn)
                mode = storage_mode(conn)
                status.update("loading districts and demo sensors ...")
                _load_reference_data(conn)
                admin_password = _first_admin(conn)
            console.print(
                f"database ready (storage: {mode}; applied: {', '.join(applied) or 'none'})"
            )

            port = settings.dashboard_port
            if not port_is_free(port):
                port = free_port()
            env["CITYOPS_DASHBOARD_PORT"] = str(port)
            gis_port = GIS_PORT if port_is_free(GIS_PORT) else free_port()
            py = [sys.executable, "-m", "cityops"]
            for name in SERVICES:
                if name == "simulate" and not simulate:
                    continue
                children.append(Child(name, [*py, name], logs / f"{name}.log"))
            gis_cmd = [*py, "gis", "serve", "--port", str(gis_port)]
            children.append(Child("gis", gis_cmd, logs / "gis.log"))
            for child in children:
                status.update(f"starting {child.name} ...")
                _spawn(child, env)
            url = f"http://{settings.dashboard_host}:{port}/"
            status.update(f"waiting for the dashboard at {url} ...")
            _wait_http(url, timeout_s=90, children=children)
        console.print(
            f"[bold green]cityops is running[/] in {time.monotonic() - started:.1f} s. "
            f"Dashboard: [bold]{url}[/]  Planners' API and OGC API Features: "
            f"http://{settings.dashboard_host}:{gis_port}/api and /ogc  "
            f"(logs: {logs}; Ctrl-C stops everything)"
        )
        if admin_password:
            console.print(
                f"first account created: [bold]admin[/] / [bold]{admin_password}[/] "
                "(shown once; change it with `cityops users add admin --role admin`)"
            )
        print(url, flush=True)
        while not stopping:
            for child in children:
                if child.proc is not None and child.proc.poll() is not None and not stopping:
                    _restart(child, env, console)
            time.sleep(0.5)
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

    from dashboards.accounts import read_users, write_user

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
    )
    log.close()


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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
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
    deadline = time.monotonic() + 15
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait(5)
