"""`cityops readings import`: history older than the live window, on both storage paths,
through the CLI as a utility runs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cityops.kernel.settings import Settings
from gis.postgis import write_sensors
from ingestion.history import QUALITY_HISTORY
from sensors.catalogue import Sensor
from sensors.quantities import Utility
from tests.conftest import run_cityops


def _register(db: str) -> None:
    with psycopg.connect(db) as conn:
        write_sensors(
            conn,
            [
                Sensor("t1", Utility.WATER, "water_tank", "T1", 104.06, 30.66),
                Sensor("ps-1", Utility.WATER, "water_pressure", "PS 1", 104.07, 30.66),
            ],
            external_ids={"t1": "T1"},
        )


def _csv(tmp_path: Path, lines: list[str], name: str = "h.csv") -> Path:
    p = tmp_path / name
    p.write_text("sensor_id,quantity,ts,value,seq\n" + "\n".join(lines) + "\n", "utf-8")
    return p


def _stored(db: str) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT sensor_id, quantity, ts, value, quality FROM readings ORDER BY 1, 2, 3"
        ).fetchall()


@pytest.mark.both_storage_paths
def test_history_past_the_live_window_is_stored_once_and_flagged(
    settings: Settings, tmp_path: Path
) -> None:
    _register(settings.database_url)
    start = (datetime.now(UTC) - timedelta(days=90)).replace(microsecond=0)
    lines = []
    for k in range(48):  # two days, hourly, 90 days ago: far past CITYOPS_ACCEPT_PAST_S
        t = (start + timedelta(hours=k)).isoformat()
        lines.append(f"T1,level,{t},{4.0 + k / 100},{k}")  # the utility's own id
        lines.append(f"ps-1,pressure,{t},{350.0 if k else 5000.0},")  # first one: suspect
    lines.append(lines[0])  # an exact repeat inside the file is one reading
    f = _csv(tmp_path, lines)
    r = run_cityops(settings, "readings", "import", str(f))
    assert r.returncode == 0, r.stderr
    assert "96 readings" in r.stderr and "96 stored, 0 already there" in r.stderr
    rows = _stored(settings.database_url)
    assert len(rows) == 96
    assert all(q & QUALITY_HISTORY for *_, q in rows)
    assert [q for s, _, ts, _, q in rows if s == "ps-1" and ts == start] == [QUALITY_HISTORY | 1]
    assert rows[0][2] == start
    # a re-run (an operator unsure it finished) stores nothing twice
    r = run_cityops(settings, "readings", "import", str(f))
    assert r.returncode == 0, r.stderr
    assert "0 stored, 96 already there" in r.stderr
    assert _stored(settings.database_url) == rows
    # the newest reading per sensor is the history's (there was none live)
    with psycopg.connect(settings.database_url) as conn:
        latest = conn.execute(
            "SELECT ts FROM sensor_latest WHERE sensor_id = 't1' AND quantity = 'level'"
        ).fetchone()
    assert latest == (start + timedelta(hours=47),)


def test_a_bad_line_stores_nothing_and_is_named(settings: Settings, tmp_path: Path) -> None:
    _register(settings.database_url)
    t = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    f = _csv(
        tmp_path,
        [
            f"t1,level,{t},4.0,",
            f"x9,level,{t},4.0,",  # line 3: unknown sensor
            f"t1,voltage,{t},4.0,",  # line 4: not a quantity of a tank gauge
            "t1,level,2026-01-01T00:00:00,4.0,",  # line 5: no zone
            f"ps-1,pressure,{future},300,",  # line 6: future
            f"t1,level,{t},4.5,",  # line 7: a second value for line 2's time
        ],
    )
    r = run_cityops(settings, "readings", "import", str(f))
    assert r.returncode == 2
    for line, what in (
        (3, "unknown sensor 'x9'"),
        (4, "'voltage' is not a quantity of water_tank"),
        (5, "no zone"),
        (6, "in the future"),
        (7, "a second value"),
    ):
        assert f"line {line}: " in r.stderr and what in r.stderr, (line, r.stderr)
    assert _stored(settings.database_url) == []
    r = run_cityops(settings, "readings", "import", str(tmp_path / "absent.csv"))
    assert r.returncode == 2
