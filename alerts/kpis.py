"""Alarm-management KPIs in the style of ISA-18.2 / EEMUA 191, as SQL on the alerts tables.

Read-only query functions for the dashboard (``fetch_*``); each takes a psycopg connection and a
period ``[start, end)``. Benchmarks from ISA-18.2 (per operator position): about 1 alert per
10 minutes is very likely acceptable, 2 is manageable, more than 10 in 10 minutes is a flood;
flood time under 1 % of the period; fewer than 5 standing alerts; the 10 most frequent alerts
under 1-5 % of the load; no chattering alerts (3 or more raises within 60 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

FLOOD_PER_10MIN = 10
CHATTER_COUNT = 3
CHATTER_WINDOW_S = 60


@dataclass(frozen=True, slots=True)
class AlertRate:
    periods: int  # 10-minute periods in [start, end)
    total: int  # alerts raised
    per_10min_per_operator: float  # average
    max_per_10min: int
    flood_periods: int  # periods with more than FLOOD_PER_10MIN raises
    flood_fraction: float  # of the periods


@dataclass(frozen=True, slots=True)
class ResponseTimes:
    acknowledged: int
    ack_median_s: float | None  # cityops raised it -> someone acknowledged [s]
    ack_p90_s: float | None
    resolved: int
    resolve_median_s: float | None  # raised -> resolved (by staff or by the system) [s]
    resolve_p90_s: float | None


@dataclass(frozen=True, slots=True)
class Offender:
    sensor_id: str
    quantity: str
    kind: str
    count: int
    share: float  # of all alerts in the period


def fetch_alert_rate(
    conn: psycopg.Connection, start: datetime, end: datetime, *, operators: int = 1
) -> AlertRate:
    """Alerts raised per 10 minutes (by ``raised_at``), empty periods included."""
    row = conn.execute(
        """
        WITH periods AS (
            SELECT p FROM generate_series(%(start)s::timestamptz,
                                          %(end)s::timestamptz - interval '1 microsecond',
                                          interval '10 minutes') AS p
        ), counts AS (
            SELECT p, (SELECT count(*) FROM alerts a
                       WHERE a.raised_at >= p AND a.raised_at < least(p + interval '10 minutes',
                                                                       %(end)s::timestamptz)) AS n
            FROM periods
        )
        SELECT count(*), coalesce(sum(n), 0), coalesce(max(n), 0),
               count(*) FILTER (WHERE n > %(flood)s)
        FROM counts
        """,
        {"start": start, "end": end, "flood": FLOOD_PER_10MIN},
    ).fetchone()
    assert row is not None
    periods, total, mx, floods = (int(x) for x in row)
    return AlertRate(
        periods,
        total,
        total / periods / max(operators, 1) if periods else 0.0,
        mx,
        floods,
        floods / periods if periods else 0.0,
    )


def fetch_standing_alerts(
    conn: psycopg.Connection, at: datetime, *, stale_s: float = 86_400
) -> tuple[int, int]:
    """(standing, stale): conditions active at ``at``, and those active for over ``stale_s``."""
    row = conn.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE raised_at < %(at)s - make_interval(secs => %(stale)s))
        FROM alerts
        WHERE raised_at <= %(at)s AND (cleared_at IS NULL OR cleared_at > %(at)s)
        """,
        {"at": at, "stale": stale_s},
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def fetch_response_times(conn: psycopg.Connection, start: datetime, end: datetime) -> ResponseTimes:
    """Time to acknowledge and to resolve for alerts raised in the period."""
    row = conn.execute(
        """
        WITH a AS (
            SELECT extract(epoch FROM acknowledged_at - least(created_at, acknowledged_at)) AS ack,
                   extract(epoch FROM resolved_at - least(created_at, resolved_at)) AS res
            FROM alerts WHERE raised_at >= %s AND raised_at < %s
        )
        SELECT count(ack), percentile_cont(0.5) WITHIN GROUP (ORDER BY ack),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY ack),
               count(res), percentile_cont(0.5) WITHIN GROUP (ORDER BY res),
               percentile_cont(0.9) WITHIN GROUP (ORDER BY res)
        FROM a
        """,
        (start, end),
    ).fetchone()
    assert row is not None
    f = [float(x) if x is not None else None for x in row]
    return ResponseTimes(int(row[0]), f[1], f[2], int(row[3]), f[4], f[5])


def fetch_worst_offenders(
    conn: psycopg.Connection, start: datetime, end: datetime, *, limit: int = 10
) -> list[Offender]:
    rows = conn.execute(
        """
        SELECT sensor_id, quantity, kind, count(*) AS n,
               count(*)::float8 / sum(count(*)) OVER () AS share
        FROM alerts WHERE raised_at >= %s AND raised_at < %s
        GROUP BY sensor_id, quantity, kind
        ORDER BY n DESC, sensor_id, quantity, kind
        LIMIT %s
        """,
        (start, end, limit),
    ).fetchall()
    return [Offender(r[0], r[1], r[2], int(r[3]), float(r[4])) for r in rows]


def fetch_chattering(
    conn: psycopg.Connection, start: datetime, end: datetime
) -> list[tuple[str, str, str, int]]:
    """Alerts (sensor, quantity, kind) raised CHATTER_COUNT or more times within
    CHATTER_WINDOW_S seconds, with their most raises in one window."""
    rows = conn.execute(
        """
        WITH w AS (
            SELECT sensor_id, quantity, kind,
                   count(*) OVER (PARTITION BY sensor_id, quantity, kind ORDER BY raised_at
                                  RANGE BETWEEN make_interval(secs => %s) PRECEDING
                                  AND CURRENT ROW) AS n
            FROM alerts WHERE raised_at >= %s AND raised_at < %s
        )
        SELECT sensor_id, quantity, kind, max(n) FROM w
        GROUP BY sensor_id, quantity, kind HAVING max(n) >= %s
        ORDER BY max(n) DESC, sensor_id
        """,
        (CHATTER_WINDOW_S, start, end, CHATTER_COUNT),
    ).fetchall()
    return [(r[0], r[1], r[2], int(r[3])) for r in rows]


def fetch_shelved(conn: psycopg.Connection, at: datetime) -> int:
    row = conn.execute(
        "SELECT count(*) FROM alerts WHERE shelved_until > %s AND state IN"
        " ('open', 'acknowledged', 'in_progress')",
        (at,),
    ).fetchone()
    return int(row[0]) if row else 0
