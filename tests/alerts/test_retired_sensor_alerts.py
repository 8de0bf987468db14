"""A retired sensor's open alerts end with it (alerts/stores/retired.py, through alerts.api):
its readings are refused from then on, so nothing else would ever clear them. On the real
database, through the engine's own write path."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from alerts.api import clear_alerts_of_retired
from alerts.engine import AlertChange, Evaluation
from alerts.stores.batch import write_evaluation
from gis.postgis import retire_sensors

T = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)


def _sensor(conn: psycopg.Connection, sid: str) -> None:
    conn.execute(
        "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom)"
        " VALUES (%s, 'water', 'water_pressure', %s, ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
        (sid, sid),
    )
    ts_us = int(T.timestamp() * 1e6)
    ch = AlertChange(
        "raised", sid, "water", "pressure", "threshold_low", "major", 150.0, 200.0, ts_us, "z", "e"
    )
    write_evaluation(conn, Evaluation((ch,), {}))


def test_retiring_a_sensor_ends_its_open_alert_not_the_others(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _sensor(conn, "wp-gone")
        _sensor(conn, "wp-kept")
        # an active sensor's alert is the engine's business: left as it is
        assert clear_alerts_of_retired(conn, ["wp-gone", "wp-kept"], now=T) == 0
        retire_sensors(conn, ["wp-gone"])
        now = T + timedelta(hours=1)
        assert clear_alerts_of_retired(conn, ["wp-gone", "wp-kept"], now=now) == 1
        rows = {
            sid: (state, cleared)
            for sid, state, cleared in conn.execute(
                "SELECT sensor_id, state, cleared_at FROM alerts ORDER BY sensor_id"
            )
        }
        assert rows["wp-gone"] == ("resolved", now)
        assert rows["wp-kept"] == ("open", None)
        # announced like any clear: an event for the wall and the phones
        events = conn.execute(
            "SELECT count(*) FROM alert_events WHERE event = 'cleared'"
        ).fetchone()
        assert events == (1,)
        # done once: a second call finds nothing active
        assert clear_alerts_of_retired(conn, ["wp-gone"], now=now) == 0
