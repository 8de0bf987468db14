"""The thin path through every part, on the real broker and database:

simulator -> Mosquitto -> ingestion -> PostgreSQL, and alerts raised and cleared from the stream.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import psycopg
import pytest

from cityops.kernel.settings import Settings
from gis.postgis import read_sensor_file, write_districts, write_sensors
from sensors.payload import TimeWindow, decode_message
from sensors.topics import alert_filter, parse_telemetry_topic, telemetry_filter
from tests.conftest import ROOT, cityops_cmd, settings_env
from tests.listening import Recorder
from tests.waiting import wait_for

DATA = ROOT / "data"
STEPS = 16  # the demo's scripted drop covers steps 3-12 and recovers by step 14


def _load_city(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        write_districts(
            conn, json.loads((DATA / "chengdu_districts.geojson").read_text(encoding="utf-8"))
        )
        write_sensors(conn, read_sensor_file(DATA / "demo_sensors.geojson"))


def _start(settings: Settings, command: str, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        cityops_cmd(command),
        env=settings_env(settings),
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.terminate()
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


@pytest.mark.slow
def test_simulator_to_database_to_alert_raised_and_cleared(
    settings: Settings, tmp_path: Path
) -> None:
    _load_city(settings.database_url)
    telemetry = Recorder(settings.mqtt_url, [telemetry_filter()])
    alert_events = Recorder(settings.mqtt_url, [alert_filter()])
    ingest = _start(settings, "ingest", tmp_path / "ingest.log")
    alerts = _start(settings, "alerts", tmp_path / "alerts.log")
    try:
        # both consumers subscribed before the first reading: ingestion marks itself running
        # once subscribed, the engine logs that it is ready
        def ingest_running() -> bool:
            with psycopg.connect(settings.database_url) as conn:
                row = conn.execute(
                    "SELECT state FROM ingest_workers WHERE client_id = %s",
                    (settings.ingest_client_id,),
                ).fetchone()
            return row is not None and row[0] == "running"

        wait_for(ingest_running, 30, what="ingestion to subscribe")
        wait_for(
            lambda: "alerts engine ready" in (tmp_path / "alerts.log").read_text(),
            30,
            what="the alert engine to subscribe",
        )
        sim = subprocess.run(
            cityops_cmd("simulate", "--steps", str(STEPS), "--speedup", "0", "--seed", "7"),
            env=settings_env(settings),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert sim.returncode == 0, sim.stderr[-2000:]

        n_sensors = 120
        wait_for(
            lambda: len(telemetry.snapshot()) >= n_sensors * STEPS,
            30,
            what="all published messages",
        )
        published = telemetry.snapshot()
        assert len(published) == n_sensors * STEPS

        now_us = time.time_ns() // 1000
        expected = set()
        for topic, payload in published:
            sid = parse_telemetry_topic(topic).sensor_id
            for r in decode_message(payload, sid, now_us, TimeWindow()):
                expected.add((r.sensor_id, r.quantity, r.ts_us, r.value, r.seq))

        def stored() -> set[tuple]:
            with psycopg.connect(settings.database_url) as conn:
                rows = conn.execute(
                    "SELECT sensor_id, quantity,"
                    " (extract(epoch FROM ts) * 1000000)::bigint, value, seq FROM readings"
                ).fetchall()
            return set(rows)

        wait_for(lambda: len(stored()) >= len(expected), 60, what="every reading stored")
        with psycopg.connect(settings.database_url) as conn:
            total = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
            quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
            latest = conn.execute("SELECT count(DISTINCT sensor_id) FROM sensor_latest").fetchone()[
                0
            ]
        assert stored() == expected  # the exact readings, each exactly once
        assert total == len(expected)
        assert quarantined == 0
        assert latest == n_sensors

        # the scripted drop on wp-510104-1 raised exactly one low-pressure alert, then cleared it
        def alert_rows() -> list[tuple]:
            with psycopg.connect(settings.database_url) as conn:
                return conn.execute(
                    "SELECT sensor_id, quantity, kind, state, cleared_at IS NOT NULL FROM alerts"
                    " ORDER BY alert_id"
                ).fetchall()

        wait_for(lambda: any(r[4] for r in alert_rows()), 30, what="the alert to clear")
        rows = alert_rows()
        assert [(r[0], r[1], r[2]) for r in rows] == [("wp-510104-1", "pressure", "threshold_low")]
        assert rows[0][4] is True and rows[0][3] != "open"

        wait_for(lambda: len(alert_events.snapshot()) >= 2, 15, what="raised and cleared events")
        events = [json.loads(p) for _, p in alert_events.snapshot()]
        assert [e["event"] for e in events] == ["raised", "cleared"]
        assert {e["sensor_id"] for e in events} == {"wp-510104-1"}
        assert all(t == "city/alerts/water/wp-510104-1" for t, _ in alert_events.snapshot())

        # both services stop cleanly on SIGTERM
        assert _stop(ingest) == 0, (tmp_path / "ingest.log").read_text()[-3000:]
        assert _stop(alerts) == 0, (tmp_path / "alerts.log").read_text()[-3000:]
    finally:
        for proc in (ingest, alerts):
            if proc.poll() is None:
                _stop(proc)
        telemetry.close()
        alert_events.close()
