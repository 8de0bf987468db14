"""Pressure residuals round an incident's onset, per water sensor, for the network-model
localisation (gis/leaks.py, alerts/enrich.py). Read-only.

Two kinds of residual, per sensor:

* ``step`` (``read_pressure_steps``): the change across the onset, the mean of a short window
  after it minus the mean of the ``BEFORE_S`` just before it, less the same change at the same
  time of day on previous days (a difference in differences: the daily demand curve and the
  timer controls that switch pumps every night at the same minute cancel). A tank's level or
  yesterday's state do not enter, so a burst on a network with tanks is seen as it is;
  ``step_no_history`` where there are no previous days. What places a burst or a closure;
* ``level`` (``read_pressure_residuals``): the mean after the onset minus the mean over the same
  window on previous days (``history``), or the hour before the onset (``hour_before``). What
  places a leak that grew over hours, whose step across the first alert is lost in the noise.
A sensor sits on the network node its ``asset_id`` names (as ``cityops sensors import`` places
it, or ``sim:water:<node>`` as the simulators register theirs), else on the nearest water node
within ``NODE_SNAP_M``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

NODE_SNAP_M = 100.0
WINDOW_S = 900.0  # after the onset: long enough to average the noise, short enough to be "now"
LEAD_S = 60.0  # the window starts a little before the first alert: the change did too
BEFORE_S = 600.0  # [s] the window before the onset that the step is measured from
HISTORY_DAYS = 3


@dataclass(frozen=True, slots=True)
class Residual:
    sensor_id: str
    node_id: str
    residual_kpa: float
    basis: str  # history | hour_before
    readings: int


def read_incident_onset(
    conn: psycopg.Connection, incident_id: int
) -> tuple[datetime, list[str], str] | None:
    """(first alert time, member sensors, kind) of an incident."""
    row = conn.execute(
        "SELECT i.opened_at, coalesce(array_agg(DISTINCT s.sensor_id)"
        "   FILTER (WHERE s.sensor_id IS NOT NULL), '{}'), i.kind"
        " FROM incidents i LEFT JOIN incident_sensors s ON s.incident_id = i.incident_id"
        " WHERE i.incident_id = %s GROUP BY i.incident_id",
        (incident_id,),
    ).fetchone()
    return None if row is None else (row[0], list(row[1]), str(row[2]))


def read_area_sensors(conn: psycopg.Connection, sensor_ids: Sequence[str]) -> list[str] | None:
    """The active sensors of the metered areas these sensors belong to (None: in no area)."""
    rows = conn.execute(
        "SELECT DISTINCT o.sensor_id FROM metered_area_sensors m"
        " JOIN metered_area_sensors o ON o.area_id = m.area_id"
        " JOIN sensors s ON s.sensor_id = o.sensor_id AND s.status = 'active'"
        " WHERE m.sensor_id = ANY(%s) ORDER BY 1",
        (list(sensor_ids),),
    ).fetchall()
    return [r[0] for r in rows] or None


# the active water sensors and the network node each sits on (the module's docstring)
_PLACED = """
WITH s AS (
    SELECT sensor_id, asset_id, ST_Transform(geom, 4544) AS g FROM sensors
    WHERE utility = 'water' AND status = 'active'
      AND (%(ids)s::text[] IS NULL OR sensor_id = ANY(%(ids)s::text[]))
), placed AS (
    SELECT s.sensor_id, coalesce(
        (SELECT n.node_id FROM water_nodes n WHERE n.node_id = s.asset_id),
        (SELECT n.node_id FROM water_nodes n
          WHERE n.node_id = regexp_replace(s.asset_id, '^sim:water:', '')),
        (SELECT n.node_id FROM water_nodes n WHERE ST_DWithin(n.geom_m, s.g, %(snap)s)
          ORDER BY n.geom_m <-> s.g LIMIT 1)) AS node_id
    FROM s
)"""

_SQL = (
    _PLACED  # noqa: S608 (constant SQL fragments, no input in the text)
    + """, after AS (
    SELECT r.sensor_id, avg(r.value) AS v, count(*) AS n FROM readings r
    JOIN placed p ON p.sensor_id = r.sensor_id
    WHERE r.quantity = 'pressure' AND r.ts >= %(a0)s AND r.ts < %(a1)s GROUP BY 1
), hist AS (
    SELECT r.sensor_id, avg(r.value) AS v FROM readings r
    JOIN placed p ON p.sensor_id = r.sensor_id
    JOIN generate_series(1, %(days)s) d ON r.ts >= %(a0)s - d * interval '1 day'
                                      AND r.ts < %(a1)s - d * interval '1 day'
    WHERE r.quantity = 'pressure' AND r.ts >= %(a0)s - %(days)s * interval '1 day'
      AND r.ts < %(a0)s GROUP BY 1
), before AS (
    SELECT r.sensor_id, avg(r.value) AS v FROM readings r
    JOIN placed p ON p.sensor_id = r.sensor_id
    WHERE r.quantity = 'pressure' AND r.ts >= %(a0)s - interval '1 hour' AND r.ts < %(a0)s
    GROUP BY 1
)
SELECT p.sensor_id, p.node_id, a.v - coalesce(h.v, b.v),
       CASE WHEN h.v IS NOT NULL THEN 'history' ELSE 'hour_before' END, a.n
FROM placed p JOIN after a ON a.sensor_id = p.sensor_id
LEFT JOIN hist h ON h.sensor_id = p.sensor_id
LEFT JOIN before b ON b.sensor_id = p.sensor_id
WHERE p.node_id IS NOT NULL AND coalesce(h.v, b.v) IS NOT NULL
ORDER BY p.sensor_id
"""
)


def read_pressure_residuals(
    conn: psycopg.Connection,
    onset: datetime,
    sensor_ids: Sequence[str] | None = None,
    *,
    window_s: float = WINDOW_S,
    history_days: int = HISTORY_DAYS,
) -> list[Residual]:
    """Each placed water sensor's pressure residual [kPa] after ``onset`` (``sensor_ids``:
    only these; None: every active water sensor)."""
    a0 = onset - timedelta(seconds=LEAD_S)
    rows = conn.execute(
        _SQL,
        {
            "ids": None if sensor_ids is None else list(sensor_ids),
            "snap": NODE_SNAP_M,
            "a0": a0,
            "a1": a0 + timedelta(seconds=window_s),
            "days": int(history_days),
        },
    ).fetchall()
    return [Residual(r[0], r[1], float(r[2]), r[3], int(r[4])) for r in rows]


def read_pipe_ids(conn: psycopg.Connection) -> set[str]:
    """The water links that are pipes (not pumps or valves): what can leak or burst."""
    return {r[0] for r in conn.execute("SELECT pipe_id FROM water_pipes WHERE link_kind = 'pipe'")}


def read_latest_pressure_ts(conn: psycopg.Connection) -> datetime | None:
    """The newest stored water pressure reading's time: how far ingestion has got."""
    row = conn.execute(
        "SELECT max(l.ts) FROM sensor_latest l JOIN sensors s USING (sensor_id)"
        " WHERE s.utility = 'water' AND s.status = 'active' AND l.quantity = 'pressure'"
    ).fetchone()
    return row[0] if row else None


_STEP_SQL = (
    _PLACED  # noqa: S608 (constant SQL fragments, no input in the text)
    + """, days AS (
    SELECT d FROM generate_series(0, %(days)s) d
), win AS (
    -- per sensor and day back (0: the incident's day), the mean before and after the onset
    SELECT r.sensor_id, d.d,
           avg(r.value) FILTER (WHERE r.ts >= %(a0)s - d.d * interval '1 day') AS after_v,
           avg(r.value) FILTER (WHERE r.ts < %(a0)s - d.d * interval '1 day') AS before_v,
           count(*) FILTER (WHERE r.ts >= %(a0)s - d.d * interval '1 day') AS n
    FROM readings r
    JOIN placed p ON p.sensor_id = r.sensor_id
    JOIN days d ON r.ts >= %(b0)s - d.d * interval '1 day' AND r.ts < %(a1)s - d.d * interval '1 day'
    WHERE r.quantity = 'pressure' AND r.ts >= %(b0)s - %(days)s * interval '1 day'
      AND r.ts < %(a1)s
    GROUP BY 1, 2
), today AS (
    SELECT sensor_id, after_v - before_v AS step, n FROM win
    WHERE d = 0 AND after_v IS NOT NULL AND before_v IS NOT NULL
), usual AS (
    SELECT sensor_id, avg(after_v - before_v) AS step FROM win
    WHERE d > 0 AND after_v IS NOT NULL AND before_v IS NOT NULL GROUP BY 1
)
SELECT p.sensor_id, p.node_id, t.step - coalesce(u.step, 0),
       CASE WHEN u.step IS NOT NULL THEN 'step' ELSE 'step_no_history' END, t.n
FROM placed p JOIN today t ON t.sensor_id = p.sensor_id
LEFT JOIN usual u ON u.sensor_id = p.sensor_id
WHERE p.node_id IS NOT NULL
ORDER BY p.sensor_id
"""
)


def read_pressure_steps(
    conn: psycopg.Connection,
    onset: datetime,
    *,
    window_s: float = WINDOW_S,
    before_s: float = BEFORE_S,
    history_days: int = HISTORY_DAYS,
) -> list[Residual]:
    """Each placed water sensor's pressure step [kPa] across ``onset``, less its usual step at
    that time of day (the module's docstring)."""
    a0 = onset - timedelta(seconds=LEAD_S)
    rows = conn.execute(
        _STEP_SQL,
        {
            "ids": None,
            "snap": NODE_SNAP_M,
            "b0": a0 - timedelta(seconds=before_s),
            "a0": a0,
            "a1": a0 + timedelta(seconds=window_s),
            "days": int(history_days),
        },
    ).fetchall()
    return [Residual(r[0], r[1], float(r[2]), r[3], int(r[4])) for r in rows]


def read_meter_links(conn: psycopg.Connection, sensor_ids: Sequence[str]) -> list[str]:
    """The water links (pipes, pumps, valves) that these flow meters sit on, nearest first: a
    meter's asset id when it names a link, else the link within ``NODE_SNAP_M`` of it."""
    rows = conn.execute(
        "SELECT DISTINCT ON (s.sensor_id) s.sensor_id, p.pipe_id,"
        "   CASE WHEN p.pipe_id = s.asset_id THEN -1"
        "        ELSE ST_Distance(p.geom_m, ST_Transform(s.geom, 4544)) END AS d"
        " FROM sensors s JOIN water_pipes p"
        "   ON p.pipe_id = s.asset_id"
        "   OR ST_DWithin(p.geom_m, ST_Transform(s.geom, 4544), %s)"
        " WHERE s.sensor_id = ANY(%s) AND s.utility = 'water'"
        "   AND s.sensor_type = 'water_flow'"
        " ORDER BY s.sensor_id, d",
        (NODE_SNAP_M, list(sensor_ids)),
    ).fetchall()
    out: list[str] = []
    for _sid, link, _d in sorted(rows, key=lambda r: r[2]):
        if link not in out:
            out.append(link)
    return out
