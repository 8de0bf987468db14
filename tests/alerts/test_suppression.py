"""Maintenance windows, chattering and flood suppression of notifications (real database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.dispatch import plan_deliveries
from alerts.engine import AlertChange, Evaluation
from alerts.notify import FLOOD_MAX, Route, suppression_reason
from alerts.stores.actions import escalate_due
from alerts.stores.alert_rows import write_maintenance_window
from alerts.stores.batch import write_evaluation
from alerts.stores.notifications import write_route
from alerts.stores.times import us_from_ts
from cityops.kernel.crypto import Keyring

S = 1_000_000
T = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_suppression_reason() -> None:
    assert suppression_reason(None, 0, 0) is None
    assert suppression_reason("maintenance:3", 0, 0) == "maintenance"
    assert suppression_reason(None, 1, 0) is None  # the second raise still goes out
    assert suppression_reason(None, 2, 0) == "chattering"
    assert suppression_reason(None, 0, FLOOD_MAX - 1) is None
    assert suppression_reason(None, 0, FLOOD_MAX) == "flood"


def _change(event: str, sid: str, at: datetime, value: float) -> AlertChange:
    return AlertChange(
        event,
        sid,
        "water",
        "pressure",
        "threshold_low",
        "major",
        value,  # type: ignore[arg-type]
        200.0,
        us_from_ts(at),
        "z",
        "e",
    )


def _add(conn: psycopg.Connection, sid: str, district: int) -> None:
    conn.execute(
        "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, geom)"
        " VALUES (%s, 'water', 'water_pressure', %s, %s, ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
        (sid, sid, district),
    )


def _deliveries(conn: psycopg.Connection) -> list[tuple[str, str, str | None]]:
    return conn.execute(
        "SELECT a.sensor_id, d.status, d.suppressed_reason FROM notification_deliveries d"
        " JOIN alert_events e USING (event_id) JOIN alerts a USING (alert_id) ORDER BY d.delivery_id"
    ).fetchall()


def test_maintenance_window_suppresses_escalation_and_notification(
    db_url: str, keyring: Keyring
) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _add(conn, "wp-m1", 510104)
        _add(conn, "wp-m2", 510105)
        write_route(conn, Route(0, "all", "webhook", "http://127.0.0.1:9/x"), keyring)
        wid = write_maintenance_window(
            conn,
            "zhang.wei",
            T,
            T + timedelta(hours=2),
            "valve replacement 更换阀门",
            district_adcode=510104,
        )
        with pytest.raises(ValueError):
            write_maintenance_window(
                conn, "zhang.wei", T, T + timedelta(hours=1), " ", sensor_id="x"
            )
        for sid in ("wp-m1", "wp-m2"):
            write_evaluation(
                conn, Evaluation((_change("raised", sid, T + timedelta(minutes=5), 150.0),), {})
            )
        conn.execute("UPDATE alerts SET created_at = raised_at")
        rows = conn.execute(
            "SELECT sensor_id, suppressed_by FROM alerts ORDER BY sensor_id"
        ).fetchall()
        assert rows == [("wp-m1", f"maintenance:{wid}"), ("wp-m2", None)]
        escalated = escalate_due(conn, now=T + timedelta(hours=1))
        assert [e.alert_id for e in escalated] == [
            conn.execute("SELECT alert_id FROM alerts WHERE sensor_id = 'wp-m2'").fetchone()[0]  # type: ignore[index]
        ]
        assert plan_deliveries(conn, now=T + timedelta(hours=1)) == 2  # wp-m2 raised + escalated
        assert _deliveries(conn) == [
            ("wp-m1", "suppressed", "maintenance"),
            ("wp-m2", "pending", None),
            ("wp-m2", "pending", None),
        ]
        # after the window, the same sensor notifies again
        write_evaluation(
            conn, Evaluation((_change("cleared", "wp-m1", T + timedelta(hours=3), 300.0),), {})
        )
        write_evaluation(
            conn,
            Evaluation((_change("raised", "wp-m1", T + timedelta(hours=3, minutes=1), 150.0),), {}),
        )
        assert conn.execute(
            "SELECT suppressed_by FROM alerts WHERE sensor_id = 'wp-m1' ORDER BY alert_id DESC LIMIT 1"
        ).fetchone() == (None,)


def test_chattering_and_flood(db_url: str, keyring: Keyring) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _add(conn, "wp-c", 510104)
        for i in range(FLOOD_MAX + 5):
            _add(conn, f"wp-f{i:02d}", 510104)
        write_route(conn, Route(0, "all", "webhook", "http://127.0.0.1:9/x"), keyring)
        # the same alert raised 4 times within 4 minutes: the 3rd and 4th are not notified
        for k in range(4):
            at = T + timedelta(minutes=k)
            write_evaluation(conn, Evaluation((_change("raised", "wp-c", at, 150.0),), {}))
            write_evaluation(
                conn,
                Evaluation((_change("cleared", "wp-c", at + timedelta(seconds=30), 300.0),), {}),
            )
        assert plan_deliveries(conn, now=T + timedelta(minutes=5)) == 2
        assert [r[1:] for r in _deliveries(conn)] == [
            ("pending", None),
            ("pending", None),
            ("suppressed", "chattering"),
            ("suppressed", "chattering"),
        ]
        # a flood: 25 sensors at once; the route gets FLOOD_MAX in 10 minutes, counting the 2 above
        write_evaluation(
            conn,
            Evaluation(
                tuple(
                    _change("raised", f"wp-f{i:02d}", T + timedelta(minutes=6), 150.0)
                    for i in range(FLOOD_MAX + 5)
                ),
                {},
            ),
        )
        assert plan_deliveries(conn, now=T + timedelta(minutes=6)) == FLOOD_MAX - 2
        flood = [r for r in _deliveries(conn) if r[0].startswith("wp-f")]
        assert sum(r[1] == "pending" for r in flood) == FLOOD_MAX - 2
        assert sum(r[2] == "flood" for r in flood) == 7
        # ten minutes later the route is open again
        write_evaluation(
            conn, Evaluation((_change("cleared", "wp-f00", T + timedelta(minutes=20), 300.0),), {})
        )
        write_evaluation(
            conn, Evaluation((_change("raised", "wp-f00", T + timedelta(minutes=21), 150.0),), {})
        )
        assert plan_deliveries(conn, now=T + timedelta(minutes=21)) == 1
