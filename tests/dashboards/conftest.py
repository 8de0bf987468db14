"""Dashboard fixtures: one loaded database and one real `cityops dashboard` subprocess per session
(starting a server and a browser per test would cost most of the time budget), and a headless
Chromium. Tests that change data use rows of their own (distinct sensor ids) and wait for them.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cityops.kernel.settings import Settings
from cityops.shell.stack import LocalStack, free_port
from gis.postgis import read_sensor_file, write_districts, write_sensors
from tests.conftest import ROOT, cityops_cmd, create_database, drop_database, settings_env
from tests.dashboards.browser import start_browser
from tests.waiting import wait_for

SCREENSHOTS = ROOT / "docs" / "screenshots"
HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">$x^2$ 注入测试'


@dataclass
class DashServer:
    url: str
    settings: Settings
    process: subprocess.Popen[bytes]
    log_path: Path


def load_demo(conn: psycopg.Connection) -> None:
    """Districts, demo sensors, fresh readings for most sensors, a silent one, one open alert,
    two quarantined messages (clean demo data only: ``load_hostile`` adds the hostile rows)."""
    write_districts(
        conn, json.loads((ROOT / "data" / "chengdu_districts.geojson").read_text("utf-8"))
    )
    write_sensors(conn, read_sensor_file(ROOT / "data" / "demo_sensors.geojson"))
    with conn.transaction():
        conn.execute("UPDATE sensors SET created_at = now() - interval '40 days'")
        # every sensor but the gas detectors of 金堂县 reported within the last minute;
        # gp-510106-1 is silent (last reading 2 hours ago, expected every minute)
        conn.execute(
            "INSERT INTO sensor_latest (sensor_id, quantity, ts, value, seq, received_at)"
            " SELECT sensor_id, 'pressure', now() - interval '20 seconds', 300, 1, now()"
            " FROM sensors WHERE sensor_id NOT LIKE 'gd-510121-%'"
        )
        conn.execute(
            "UPDATE sensor_latest SET ts = now() - interval '2 hours'"
            " WHERE sensor_id = 'gp-510106-1'"
        )
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES ('wp-510104-1', 'water', 'pressure',"
            " 'low', 'major', now() - interval '7 minutes', 152.5, 200,"
            " '供水压力过低：152.5 kPa（下限 200 kPa）', 'Water pressure low: 152.5 kPa (limit 200 kPa)')"
        )
        conn.execute(
            "INSERT INTO quarantine (received_at, topic, payload, payload_size, reason, detail,"
            " sensor_id) VALUES"
            " (now() - interval '5 minutes', 'city/water/wp-510105-1/telemetry', 'not json', 8,"
            "  'not_json', 'Expecting value', 'wp-510105-1'),"
            " (now() - interval '4 minutes', 'city/water/wp-510105-1/telemetry', '{}', 2,"
            "  'not_json', 'empty object', 'wp-510105-1')"
        )


def load_hostile(conn: psycopg.Connection) -> None:
    """A sensor whose name is HTML with $...$ (it must show as text everywhere), its alert and a
    quarantined message from an unknown sensor with that text as the detail."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, geom,"
            " created_at) VALUES ('wp-hostile-1', 'water', 'water_pressure', %s, 510107,"
            " ST_SetSRID(ST_MakePoint(104.03, 30.63), 4326), now() - interval '40 days')",
            (HOSTILE_NAME,),
        )
        conn.execute(
            "INSERT INTO sensor_latest (sensor_id, quantity, ts, value, seq, received_at)"
            " VALUES ('wp-hostile-1', 'pressure', now() - interval '20 seconds', 300, 1, now())"
        )
        conn.execute(
            "INSERT INTO quarantine (received_at, topic, payload, payload_size, reason, detail,"
            " sensor_id) VALUES (now() - interval '3 minutes', 'city/gas/ghost-1/telemetry',"
            " '{}', 2, 'unknown_sensor', %s, NULL)",
            (HOSTILE_NAME,),
        )
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES ('wp-hostile-1', 'water', 'pressure',"
            " 'low', 'warning', now() - interval '3 minutes', 180, 200, %s, %s)",
            (f"压力偏低 {HOSTILE_NAME}", f"Pressure low {HOSTILE_NAME}"),
        )


def load_readings(conn: psycopg.Connection, *, sensor_id: str = "wp-510104-1") -> None:
    """A day of 1-minute pressure readings for one sensor (a dip below the 200 kPa limit in the
    last 10 minutes), and the last hour's 1-minute rollups for every sensor with a latest value
    (so completeness is known) where the rollup is a plain table."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO readings (sensor_id, quantity, ts, value, seq, received_at)"
            " SELECT %s, 'pressure', ts,"
            "  CASE WHEN ts > now() - interval '10 minutes' THEN 150 + random() * 5"
            "       ELSE 320 + 25 * sin(extract(epoch FROM ts) / 7200) + random() * 4 END,"
            "  row_number() OVER (ORDER BY ts), ts + interval '1 second'"
            " FROM generate_series(date_trunc('minute', now()) - interval '24 hours',"
            "                      now() - interval '1 minute', interval '1 minute') ts",
            (sensor_id,),
        )
        plain = conn.execute(
            "SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass('readings_1m')"
        ).fetchone()
        if plain and plain[0]:
            conn.execute(
                "INSERT INTO readings_1m (sensor_id, quantity, bucket, value_min, value_max,"
                " value_sum, n, value_last, last_ts)"
                " SELECT l.sensor_id, l.quantity, b, 300, 300, 300, 1, 300, b"
                " FROM sensor_latest l, generate_series(date_trunc('minute', now())"
                "  - interval '59 minutes', now(), interval '1 minute') b"
                " WHERE l.sensor_id <> %s ON CONFLICT DO NOTHING",
                (sensor_id,),
            )
            # the last complete hour, as ingestion would have rolled it up (98 % complete)
            conn.execute(
                "INSERT INTO readings_1h (sensor_id, quantity, bucket, value_min, value_max,"
                " value_sum, n, value_last, last_ts)"
                " SELECT sensor_id, quantity, date_trunc('hour', now()) - interval '1 hour',"
                " 300, 300, 300 * 59, 59, 300, date_trunc('hour', now()) - interval '1 minute'"
                " FROM sensor_latest ON CONFLICT DO NOTHING"
            )
            conn.execute(
                "INSERT INTO readings_1m (sensor_id, quantity, bucket, value_min, value_max,"
                " value_sum, n, value_last, last_ts)"
                " SELECT sensor_id, quantity, date_trunc('minute', ts), min(value), max(value),"
                " sum(value), count(*), max(value), max(ts) FROM readings WHERE sensor_id = %s"
                " GROUP BY 1, 2, 3 ON CONFLICT DO NOTHING",
                (sensor_id,),
            )


def load_showcase(conn: psycopg.Connection) -> None:
    """What the README's screenshots add to the clean demo data: two more open alerts, and the
    last complete hour's 1-hour rollups for every quantity of every sensor that reports (so the
    wall's completeness is that of a healthy city, not of pressure-only test rows)."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " limit_value, message_zh, message_en) VALUES"
            " ('gd-510107-1', 'gas', 'gas_concentration', 'high', 'critical',"
            "  now() - interval '12 minutes', 28, 20, '可燃气体浓度过高：28 %LEL（上限 20 %LEL）',"
            "  'Gas concentration high: 28 %LEL (limit 20 %LEL)'),"
            " ('pb-510115-1', 'power', 'voltage', 'high', 'warning',"
            "  now() - interval '26 minutes', 10760, 10700, '10kV母线电压偏高：10760 V（上限 10700 V）',"
            "  '10 kV bus voltage high: 10760 V (limit 10700 V)')"
        )
        plain = conn.execute(
            "SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass('readings_1h')"
        ).fetchone()
        if not (plain and plain[0]):
            return
        conn.execute(
            "DELETE FROM readings_1h WHERE bucket = date_trunc('hour', now()) - interval '1 hour'"
        )
        conn.execute(
            "INSERT INTO readings_1h (sensor_id, quantity, bucket, value_min, value_max,"
            " value_sum, n, value_last, last_ts)"
            " SELECT s.sensor_id, q.quantity, date_trunc('hour', now()) - interval '1 hour',"
            " 1, 1, n, n, 1, date_trunc('hour', now()) - interval '1 minute'"
            " FROM sensors s JOIN sensor_types t ON t.type_id = s.sensor_type"
            " JOIN sensor_type_quantities q ON q.type_id = s.sensor_type,"
            " LATERAL (SELECT floor(3600 / t.expected_interval_s * 0.99) AS n) k"
            " WHERE s.sensor_id IN (SELECT sensor_id FROM sensor_latest"
            "  WHERE ts > now() - interval '1 hour')"
        )


def _loaded_db(stack: LocalStack, template_db: str, prefix: str, *loaders) -> str:
    url = create_database(stack, prefix + uuid.uuid4().hex[:10], template_db)
    with psycopg.connect(url) as conn:
        for load in loaders:
            load(conn)
    return url


def _drop_db(stack: LocalStack, url: str) -> None:
    drop_database(stack, url.rsplit("/", 1)[1].split("?")[0])


@pytest.fixture(scope="session")
def dash_db(stack: LocalStack, template_db: str) -> Iterator[str]:
    """The shared test database: demo data, hostile strings, rows the tests add."""
    url = _loaded_db(stack, template_db, "dash_", load_demo, load_hostile, load_readings)
    yield url
    _drop_db(stack, url)


@pytest.fixture(scope="session")
def clean_db(stack: LocalStack, template_db: str) -> Iterator[str]:
    """Clean demo data only, for the screenshots the README shows (overview, wall): nothing
    hostile, no rows left by other tests."""
    url = _loaded_db(stack, template_db, "dash_clean_", load_demo, load_readings, load_showcase)
    yield url
    _drop_db(stack, url)


def dashboard_settings(stack: LocalStack, database_url: str, **extra: object) -> Settings:
    return Settings(
        database_url=database_url,
        mqtt_url=stack.mqtt_url("cityops-admin"),
        dashboard_host="127.0.0.1",
        dashboard_port=free_port(),
        dashboard_refresh_ms=2000,
        **extra,
    )


def start_dashboard(settings: Settings, log_dir: Path) -> DashServer:
    log_path = log_dir / f"dashboard-{settings.dashboard_port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        cityops_cmd("dashboard"),
        env=settings_env(settings),
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{settings.dashboard_port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"dashboard exited: {log_path.read_text(errors='replace')}")
        with urllib.request.urlopen(url + "/", timeout=2) as resp:
            return resp.status == 200

    try:  # OSError: not listening yet
        wait_for(answers, 30, interval_s=0.2, what=f"the dashboard on {url}", tolerate=(OSError,))
    except AssertionError as exc:
        proc.kill()
        output = log_path.read_text(errors="replace")
        raise RuntimeError(f"dashboard did not answer: {output}") from exc
    return DashServer(url, settings, proc, log_path)


def stop_dashboard(server: DashServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def _serve(stack: LocalStack, db_url: str, log_dir: Path) -> Iterator[DashServer]:
    server = start_dashboard(dashboard_settings(stack, db_url), log_dir)
    yield server
    stop_dashboard(server)


@pytest.fixture(scope="session")
def dash_server(
    stack: LocalStack, dash_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashServer]:
    yield from _serve(stack, dash_db, tmp_path_factory.mktemp("dashboard"))


@pytest.fixture(scope="session")
def clean_server(
    stack: LocalStack, clean_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashServer]:
    """A second dashboard process, on the clean database (README screenshots)."""
    yield from _serve(stack, clean_db, tmp_path_factory.mktemp("dashboard-clean"))


@pytest.fixture(scope="session")
def browser() -> Iterator:
    driver = start_browser(1920, 1080)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    out = Path(os.environ.get("CITYOPS_SCREENSHOT_DIR", SCREENSHOTS))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def demo_networks(dash_db: str) -> None:
    """The GIS demo city (water, gas and power networks, facilities) in the session database."""
    from gis.demo import DemoConfig, build_demo_city
    from gis.postgis import write_layers

    with psycopg.connect(dash_db) as conn:
        write_layers(conn, build_demo_city(DemoConfig()), demo=True)


PASSWORDS = {
    "li.na": "planner-pass-1",
    "zhang.wei": "emergency-pass-1",
    "wang.fang": "operator-p-1",
    "zhou.min": "Admin-pass-2026",
}


@pytest.fixture(scope="session")
def users(dash_db: str) -> dict[str, str]:
    """A planner, an emergency user, an operator and an admin in the session database."""
    from access import accounts

    with psycopg.connect(dash_db) as conn:
        accounts.write_user(conn, "li.na", PASSWORDS["li.na"], "planner", "李娜")
        accounts.write_user(conn, "zhang.wei", PASSWORDS["zhang.wei"], "emergency", "张伟")
        accounts.write_user(conn, "wang.fang", PASSWORDS["wang.fang"], "operator", "王芳")
        accounts.write_user(conn, "zhou.min", PASSWORDS["zhou.min"], "admin", "周敏")
    return PASSWORDS
