"""ISA-18.2 style KPIs on a known set of alerts in the real database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts import kpis

T = datetime(2026, 11, 26, 0, 0, tzinfo=UTC)


def _alert(conn, sid, minute, *, kind="threshold_low", cleared=None, ack=None, resolved=None):  # type: ignore[no-untyped-def]
    raised = T + timedelta(minutes=minute)
    conn.execute(
        "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state, raised_at,"
        " cleared_at, value, message_zh, message_en, created_at, acknowledged_at, resolved_at)"
        " VALUES (%s, 'water', 'pressure', %s, 'major', %s, %s, %s, 1, 'z', 'e', %s, %s, %s)",
        (
            sid,
            kind,
            "resolved" if resolved is not None else "acknowledged" if ack is not None else "open",
            raised,
            raised + timedelta(minutes=cleared) if cleared is not None else None,
            raised,
            raised + timedelta(seconds=ack) if ack is not None else None,
            raised + timedelta(seconds=resolved) if resolved is not None else None,
        ),
    )


def test_kpis(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        # a flood: 12 alerts in the first 10 minutes, from 12 sensors
        for i in range(12):
            _alert(conn, f"wp-{i}", i * 0.5, cleared=1, ack=60 + i * 10, resolved=600)
        # a chattering sensor: 4 raises within 50 s at minute 30 (each cleared at once)
        for k in range(4):
            _alert(conn, "wp-chatter", 30 + k * 50 / 3 / 60, kind="threshold_high", cleared=0.1)
        # two standing alerts, one of them stale (raised 2 days before)
        _alert(conn, "wp-standing", 50)
        _alert(conn, "wp-old", -2 * 24 * 60)

        start, end = T, T + timedelta(hours=1)
        rate = kpis.fetch_alert_rate(conn, start, end)
        assert (rate.periods, rate.total, rate.max_per_10min, rate.flood_periods) == (6, 17, 12, 1)
        assert rate.per_10min_per_operator == pytest.approx(17 / 6)
        assert rate.flood_fraction == pytest.approx(1 / 6)
        assert kpis.fetch_alert_rate(conn, start, end, operators=2).per_10min_per_operator == (
            pytest.approx(17 / 12)
        )

        assert kpis.fetch_standing_alerts(conn, T + timedelta(hours=1)) == (2, 1)
        # at minute 5 the first alerts (cleared after 1 minute) were partly still active
        assert kpis.fetch_standing_alerts(conn, T + timedelta(minutes=5, seconds=15))[0] == 3

        rt = kpis.fetch_response_times(conn, start, end)
        assert (rt.acknowledged, rt.resolved) == (12, 12)
        assert rt.ack_median_s == pytest.approx(115.0)  # median of 60, 70, ... 170
        assert rt.ack_p90_s == pytest.approx(159.0)
        assert rt.resolve_median_s == pytest.approx(600.0)

        worst = kpis.fetch_worst_offenders(conn, start, end, limit=2)
        assert [(o.sensor_id, o.kind, o.count) for o in worst] == [
            ("wp-chatter", "threshold_high", 4),
            ("wp-0", "threshold_low", 1),
        ]
        assert worst[0].share == pytest.approx(4 / 17)

        assert kpis.fetch_chattering(conn, start, end) == [
            ("wp-chatter", "pressure", "threshold_high", 4)
        ]
        assert kpis.fetch_shelved(conn, T) == 0
        empty = kpis.fetch_response_times(conn, T - timedelta(days=9), T - timedelta(days=8))
        assert (empty.acknowledged, empty.ack_median_s) == (0, None)
