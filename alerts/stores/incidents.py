"""Incidents: ``incidents`` (related alerts grouped by place, time and metered area, with their
network context) and ``incident_sensors`` (each member sensor, and whether it showed a sensor
problem, a process alarm, or both). The rules are pure (alerts/incidents.py); here they are
fetched and written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.incidents import DEFAULT_WINDOW_S, Candidate, Grouping, IncidentState
from alerts.stores.times import ts_from_us, us_from_ts

_GROUP_LOCK = 0x0C17_0906  # one grouper at a time, whichever worker


@dataclass(frozen=True, slots=True)
class IncidentRow:
    incident_id: int
    utility: str
    kind: str
    severity: str
    state: str
    alert_count: int
    radius_m: float
    lon: float
    lat: float
    alert_ids: tuple[int, ...]
    explanation_zh: str
    explanation_en: str
    likely_location: str | None = None
    affected: dict[str, Any] | None = None  # alerts/enrich.py; None until computed


def try_lock_grouping(conn: psycopg.Connection) -> bool:
    """The grouper's transaction lock: False when another worker is grouping."""
    got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_GROUP_LOCK,)).fetchone()
    return got == (True,)


def lock_candidates(
    conn: psycopg.Connection,
    sensor_id: str,
    utility: str,
    at: datetime,
    window_s: float,
    neighbours: Sequence[str],
) -> list[Candidate]:
    """Open incidents of ``utility`` whose latest alert is within ``window_s`` [s] of ``at``,
    locked, with what the grouping rules ask of them about ``sensor_id`` and its metered-area
    ``neighbours``."""
    window = timedelta(seconds=window_s)
    rows = conn.execute(
        """
        SELECT incident_id, utility, severity, last_alert_at, ST_X(centre), ST_Y(centre),
               alert_count, radius_m, kinds, centre_weight, kind,
               EXISTS (SELECT 1 FROM incident_sensors m WHERE m.incident_id = i.incident_id
                       AND m.sensor_id = %(sensor)s),
               EXISTS (SELECT 1 FROM incident_sensors m WHERE m.incident_id = i.incident_id
                       AND m.sensor_id = %(sensor)s AND m.health),
               EXISTS (SELECT 1 FROM incident_sensors m WHERE m.incident_id = i.incident_id
                       AND m.sensor_id = ANY(%(neighbours)s))
        FROM incidents i
        WHERE state = 'open' AND utility = %(utility)s
          AND last_alert_at BETWEEN %(since)s AND %(until)s
        ORDER BY incident_id FOR UPDATE
        """,
        {
            "sensor": sensor_id,
            "neighbours": list(neighbours),
            "utility": utility,
            "since": at - window,
            "until": at + window,
        },
    ).fetchall()
    return [
        Candidate(
            IncidentState(
                r[0], r[1], r[2], us_from_ts(r[3]), r[4], r[5], r[6], r[7], frozenset(r[8]), r[9]
            ),
            r[10],
            r[11],
            r[12],
            r[13],
        )
        for r in rows
    ]


def read_unflagged_members(
    conn: psycopg.Connection, incident_id: int, except_sensor: str
) -> list[str]:
    """Member sensors with a process alarm and no sensor-health alert in the incident."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT sensor_id FROM incident_sensors WHERE incident_id = %s AND process"
            " AND NOT health AND sensor_id <> %s",
            (incident_id, except_sensor),
        )
    ]


def write_grouping(
    conn: psycopg.Connection, g: Grouping, *, opened_at: datetime, district: int | None
) -> int:
    """Store the grouper's decision: the joined incident updated, or a new one opened at
    ``opened_at`` in ``district``; returns the incident's id."""
    inc = g.incident
    values = (
        g.kind,
        inc.severity,
        ts_from_us(inc.last_alert_us),
        inc.count,
        sorted(inc.kinds),
        inc.lon,
        inc.lat,
        inc.radius_m,
        *g.explanation,
        inc.weight,
    )
    if g.joins is not None:
        conn.execute(
            "UPDATE incidents SET kind = %s, severity = %s, last_alert_at = %s, alert_count = %s,"
            " kinds = %s, centre = ST_SetSRID(ST_MakePoint(%s, %s), 4326), radius_m = %s,"
            " explanation_zh = %s, explanation_en = %s, centre_weight = %s, updated_at = now()"
            " WHERE incident_id = %s",
            (*values, g.joins),
        )
        return g.joins
    row = conn.execute(
        "INSERT INTO incidents (kind, severity, last_alert_at, alert_count, kinds, centre,"
        " radius_m, explanation_zh, explanation_en, centre_weight, utility, opened_at,"
        " district_adcode) VALUES (%s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326),"
        " %s, %s, %s, %s, %s, %s, %s) RETURNING incident_id",
        (*values, inc.utility, opened_at, district),
    ).fetchone()
    assert row is not None
    return int(row[0])


def add_member(conn: psycopg.Connection, incident_id: int, sensor_id: str, *, health: bool) -> None:
    """Record the sensor in the incident, with a sensor-health alert or a process alarm."""
    conn.execute(
        "INSERT INTO incident_sensors (incident_id, sensor_id, health, process)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (incident_id, sensor_id) DO UPDATE"
        " SET health = incident_sensors.health OR EXCLUDED.health,"
        " process = incident_sensors.process OR EXCLUDED.process",
        (incident_id, sensor_id, health, not health),
    )


def resolve_quiet_incidents(
    conn: psycopg.Connection, *, now: datetime, window_s: float = DEFAULT_WINDOW_S
) -> int:
    """Resolve open incidents with no active alert and no new alert for ``window_s`` [s]."""
    with conn.transaction():
        cur = conn.execute(
            # one statement: "no active member alert" must hold when the incident is resolved
            "UPDATE incidents i SET state = 'resolved', resolved_at = %s, updated_at = now()"
            " WHERE state = 'open' AND last_alert_at < %s AND NOT EXISTS"
            " (SELECT 1 FROM alerts a WHERE a.incident_id = i.incident_id AND a.cleared_at IS NULL)",
            (now, now - timedelta(seconds=window_s)),
        )
    return cur.rowcount


def read_open_incidents(conn: psycopg.Connection) -> list[IncidentRow]:
    """Open incidents with their alerts and network context (for the dashboard and tests)."""
    rows = conn.execute(
        "SELECT i.incident_id, i.utility, i.kind, i.severity, i.state, i.alert_count, i.radius_m,"
        " ST_X(i.centre), ST_Y(i.centre),"
        " coalesce(array_agg(a.alert_id ORDER BY a.alert_id)"
        "   FILTER (WHERE a.alert_id IS NOT NULL), '{}'),"
        " i.explanation_zh, i.explanation_en, i.likely_location,"
        " CASE WHEN i.enriched_at IS NULL THEN NULL ELSE i.affected END"
        " FROM incidents i LEFT JOIN alerts a ON a.incident_id = i.incident_id"
        " WHERE i.state = 'open' GROUP BY i.incident_id ORDER BY i.incident_id"
    ).fetchall()
    # mypy cannot count a row's columns: 14, as IncidentRow's fields
    return [IncidentRow(*r[:9], tuple(r[9]), *r[10:]) for r in rows]  # type: ignore[call-arg]


def read_unenriched(
    conn: psycopg.Connection, limit: int
) -> list[tuple[int, str, float, float, float]]:
    """(incident_id, utility, lon, lat, radius [m]) of open incidents new or grown since their
    network context was computed, then of incidents resolved before they ever got one (a
    burst isolated within a few seconds of a replay, an enricher that was down): the record
    says where each was, even after it ended. Open ones first."""
    return conn.execute(
        "SELECT incident_id, utility, ST_X(centre), ST_Y(centre), radius_m FROM incidents"
        " WHERE (state = 'open' AND (enriched_at IS NULL OR enriched_at < updated_at))"
        "    OR (state <> 'open' AND enriched_at IS NULL)"
        " ORDER BY state <> 'open', incident_id LIMIT %s",
        (limit,),
    ).fetchall()


def write_context(
    conn: psycopg.Connection, incident_id: int, location: str | None, affected: dict[str, Any]
) -> None:
    """The incident's network context (alerts/enrich.py); ``updated_at`` is left alone: only
    grouping moves it."""
    with conn.transaction():
        conn.execute(
            "UPDATE incidents SET likely_location = %s, affected = %s, enriched_at = now()"
            " WHERE incident_id = %s",
            (location, Jsonb(affected), incident_id),
        )


# the water balance's alerts carry the excess inflow [L/s] as their value (alerts/balance.py)
BALANCE_EXCESS_KINDS = ("water_burst", "night_flow_rise", "night_flow_step")


def read_incident_size(
    conn: psycopg.Connection, incident_id: int
) -> tuple[str | None, float | None, bool | None]:
    """(severity, the largest excess inflow of its balance alerts [L/s] or None, whether that
    excess came as a sudden rise (the balance's burst rule) or None without balance alerts):
    what the isolation advice needs to be proportionate (gis.network.advise_isolation)."""
    row = conn.execute(
        "SELECT i.severity, max(a.value), bool_or(a.kind = 'water_burst')"
        " FROM incidents i LEFT JOIN alerts a"
        "   ON a.incident_id = i.incident_id AND a.kind = ANY(%s)"
        " WHERE i.incident_id = %s GROUP BY i.incident_id, i.severity",
        (list(BALANCE_EXCESS_KINDS), incident_id),
    ).fetchone()
    if row is None:
        return None, None, None
    return row[0], (float(row[1]) if row[1] is not None else None), row[2]
