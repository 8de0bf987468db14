"""What the power sensors saw round an incident's onset, per network node, for the fault
location on the feeder topology (gis/faults.py, alerts/enrich_power.py). Read-only.

Per active power sensor placed on a node of the power layers:

* ``dead``: its voltage right after the onset (the median over ``[onset - LEAD_S, onset +
  AFTER_S)``) is below ``DEAD_SHARE`` of its voltage before (the median over the ``BEFORE_S``
  up to ``onset - LEAD_S``; ``DEAD_V`` when it has none), or it has no voltage after the onset
  and raised a ``silent`` alert then (a monitor that loses its supply may go quiet);
* ``overloaded``: not dead, and an over-current (``current``) or overload (``loading``)
  ``threshold_high`` alert of it was active in that window (raised before its end, at most
  ``ALERT_AGE_S`` before its start, and not cleared before its start): the engine has already
  judged it against the limits of the asset it watches (the line's or the transformer's rating);
* ``low``: not dead nor overloaded, and a low-voltage (``voltage`` ``threshold_low``) alert of it
  was active then (the voltage an overload pulls down beyond itself);
* ``live``: any other sensor with a voltage after the onset (a transformer monitor without a
  voltage says nothing unless it is overloaded).

A sensor sits on the power node its ``asset_id`` names (as ``cityops sensors import`` places
it); a bus monitor of the simulators (``sim:power:<bus row>``) on the node of that id
(gis/pandapower_layers.py); a transformer monitor otherwise on the nearest substation or
transformer node within ``NODE_SNAP_M`` (the simulators number transformers like buses, so its
asset id names no node); any other on the nearest node within ``NODE_SNAP_M``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from gis.faults import DEAD, LIVE, LOW, OVERLOADED

NODE_SNAP_M = 100.0
LEAD_S = 30.0  # [s] the window after the onset starts a little before it (same time step)
AFTER_S = 300.0  # [s] right after the onset: before any restoration switching
BEFORE_S = 900.0  # [s] before the onset: the sensor's normal voltage
DEAD_SHARE = 0.3  # [-] of its own voltage before: below this it lost supply
DEAD_V = 1000.0  # [V] when there is no voltage before the onset to compare with
SEARCH_BUFFER_M = 100.0
ALERT_AGE_S = 6 * 3600.0  # [s] an alert raised longer ago than this says nothing of the onset
__all__ = ["DEAD", "LIVE", "LOW", "OVERLOADED", "PowerObservation", "read_power_observations"]


@dataclass(frozen=True, slots=True)
class PowerObservation:
    sensor_id: str
    node_id: str
    state: str  # dead | live | overloaded | low
    voltage_before: float | None
    voltage_after: float | None


_PLACED = """
WITH s AS (
    SELECT sensor_id, sensor_type, asset_id, ST_Transform(geom, 4544) AS g FROM sensors
    WHERE utility = 'power' AND status = 'active'
), placed AS (
    SELECT s.sensor_id, coalesce(
        (SELECT n.node_id FROM power_nodes n WHERE n.node_id = s.asset_id),
        (SELECT n.node_id FROM power_nodes n WHERE s.sensor_type = 'power_bus'
            AND n.node_id = regexp_replace(s.asset_id, '^sim:power:', '')),
        (SELECT n.node_id FROM power_nodes n WHERE s.sensor_type <> 'power_bus'
            AND n.kind IN ('substation', 'transformer') AND ST_DWithin(n.geom_m, s.g, %(snap)s)
          ORDER BY n.geom_m <-> s.g LIMIT 1),
        (SELECT n.node_id FROM power_nodes n WHERE ST_DWithin(n.geom_m, s.g, %(snap)s)
          ORDER BY n.geom_m <-> s.g LIMIT 1)) AS node_id
    FROM s
)"""

_SENSOR_NODES = (
    _PLACED  # noqa: S608 (constant SQL fragments, no input in the text)
    + " SELECT sensor_id, node_id FROM placed WHERE node_id IS NOT NULL ORDER BY sensor_id"
)

_SQL = (
    _PLACED  # noqa: S608 (constant SQL fragments, no input in the text)
    + """, v AS (
    SELECT r.sensor_id,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.value)
               FILTER (WHERE r.ts < %(a0)s) AS before_v,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY r.value)
               FILTER (WHERE r.ts >= %(a0)s) AS after_v
    FROM readings r JOIN placed p ON p.sensor_id = r.sensor_id
    WHERE r.quantity = 'voltage' AND r.ts >= %(b0)s AND r.ts < %(a1)s
    GROUP BY 1
), al AS (
    SELECT a.sensor_id,
           bool_or(a.kind = 'silent') AS silent,
           bool_or(a.kind = 'threshold_high' AND a.quantity IN ('current', 'loading')) AS over,
           bool_or(a.kind = 'threshold_low' AND a.quantity = 'voltage') AS low
    FROM alerts a JOIN placed p ON p.sensor_id = a.sensor_id
    WHERE a.raised_at < %(a1)s AND a.raised_at >= %(old)s
      AND (a.cleared_at IS NULL OR a.cleared_at >= %(a0)s)
    GROUP BY 1
)
SELECT p.sensor_id, p.node_id, v.before_v, v.after_v,
       coalesce(al.silent, false), coalesce(al.over, false), coalesce(al.low, false)
FROM placed p LEFT JOIN v ON v.sensor_id = p.sensor_id
LEFT JOIN al ON al.sensor_id = p.sensor_id
WHERE p.node_id IS NOT NULL
ORDER BY p.sensor_id
"""
)


def classify(
    before_v: float | None, after_v: float | None, silent: bool, over: bool, low: bool = False
) -> str | None:
    """A sensor's state from its voltages and alerts (the module's docstring); None: unknown."""
    if after_v is not None:
        dead = after_v < (DEAD_SHARE * before_v if before_v else DEAD_V)
    else:
        dead = silent and before_v is not None
    if dead:
        return DEAD
    if over:
        return OVERLOADED
    if low and after_v is not None:
        return LOW
    return LIVE if after_v is not None else None


def read_power_observations(
    conn: psycopg.Connection,
    onset: datetime,
    *,
    after_s: float = AFTER_S,
    before_s: float = BEFORE_S,
) -> list[PowerObservation]:
    """Each placed power sensor's state right after ``onset`` (the module's docstring)."""
    a0 = onset - timedelta(seconds=LEAD_S)
    rows = conn.execute(
        _SQL,
        {
            "snap": NODE_SNAP_M,
            "b0": a0 - timedelta(seconds=before_s),
            "a0": a0,
            "a1": onset + timedelta(seconds=after_s),
            "old": a0 - timedelta(seconds=ALERT_AGE_S),
        },
    ).fetchall()
    out = []
    for sid, node, before_v, after_v, silent, over, low in rows:
        b = None if before_v is None else float(before_v)
        a = None if after_v is None else float(after_v)
        state = classify(b, a, bool(silent), bool(over), bool(low))
        if state is not None:
            out.append(PowerObservation(sid, str(node), state, b, a))
    return out


def read_sensor_nodes(conn: psycopg.Connection) -> dict[str, str]:
    """The power node each active power sensor sits on (the module's docstring)."""
    rows = conn.execute(_SENSOR_NODES, {"snap": NODE_SNAP_M}).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def read_latest_power_ts(conn: psycopg.Connection) -> datetime | None:
    """The newest stored voltage reading of an active power sensor: how far ingestion has got."""
    row = conn.execute(
        "SELECT max(l.ts) FROM sensor_latest l JOIN sensors s USING (sensor_id)"
        " WHERE s.utility = 'power' AND s.status = 'active' AND l.quantity = 'voltage'"
    ).fetchone()
    return row[0] if row else None


def read_line_search_area(
    conn: psycopg.Connection, line_ids: list[str], buffer_m: float = SEARCH_BUFFER_M
) -> dict[str, Any] | None:
    """The power lines ``line_ids`` buffered by ``buffer_m`` as a GeoJSON polygon in lon/lat
    (None when none of them is in the layer)."""
    row = conn.execute(
        "SELECT ST_AsGeoJSON(ST_Transform(ST_Buffer(ST_Union(geom_m), %s), 4326), 7)"
        " FROM power_lines WHERE line_id = ANY(%s)",
        (buffer_m, list(line_ids)),
    ).fetchone()
    return json.loads(row[0]) if row and row[0] else None
