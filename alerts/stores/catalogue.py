"""What the engine reads to know the sensors: limits, per-sensor overrides, detector settings
and metered areas.

Tables: ``alert_detector_settings``, ``sensor_limit_overrides``, ``metered_areas``,
``metered_area_meters``, ``metered_area_sensors``; it reads the shared catalogue (``sensors``,
``sensor_types``, ``sensor_type_quantities``, written by the GIS part and migrations).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alerts.balance import AREA_PARAMS, AreaSpec
from alerts.detectors import UNCONFIGURED, StreamConfig, build_stream_config
from alerts.engine import SensorInfo
from sensors.catalogue import DEFAULT_DETECTORS, QuantityLimits


def read_sensors(conn: psycopg.Connection) -> dict[str, SensorInfo]:
    """Active sensors with their limits per quantity (``sensor_limit_overrides`` where a sensor
    has its own, else its type's ``sensor_type_quantities``), reporting interval [s] and
    streaming detectors (``alert_detector_settings``; quantities without rows: the threshold)."""
    rows = conn.execute(
        """
        SELECT s.sensor_id, s.utility, s.sensor_type, t.expected_interval_s, q.quantity,
               CASE WHEN o.sensor_id IS NULL THEN q.alarm_low ELSE o.alarm_low END,
               CASE WHEN o.sensor_id IS NULL THEN q.alarm_high ELSE o.alarm_high END,
               coalesce(o.deadband, q.deadband)
        FROM sensors s
        JOIN sensor_types t ON t.type_id = s.sensor_type
        LEFT JOIN sensor_type_quantities q ON q.type_id = s.sensor_type
        LEFT JOIN sensor_limit_overrides o
            ON o.sensor_id = s.sensor_id AND o.quantity = q.quantity
        WHERE s.status = 'active'
        ORDER BY s.sensor_id
        """
    ).fetchall()
    streams = read_stream_configs(conn)
    limits: dict[str, dict[str, QuantityLimits]] = {}
    meta: dict[str, tuple[str, str, float]] = {}
    for sid, utility, stype, interval, quantity, low, high, band in rows:
        meta[sid] = (utility, stype, float(interval))
        per = limits.setdefault(sid, {})
        if quantity is not None:
            per[quantity] = QuantityLimits(quantity, low, high, float(band or 0.0))
    return {
        sid: SensorInfo(
            sid,
            utility,
            stype,
            limits[sid],
            interval,
            {q: streams.get(stype, {}).get(q, UNCONFIGURED) for q in limits[sid]}
            | streams.get(stype, {}),
        )
        for sid, (utility, stype, interval) in meta.items()
    }


def read_stream_configs(conn: psycopg.Connection) -> dict[str, dict[str, StreamConfig]]:
    """type_id -> quantity -> the enabled streaming detectors (alerts/detectors/)."""
    found: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any]]]] = {}
    for type_id, quantity, detector, severity, params in conn.execute(
        "SELECT type_id, quantity, detector, severity, params FROM alert_detector_settings"
        " WHERE enabled ORDER BY type_id, quantity, detector"
    ):
        found.setdefault((type_id, quantity), {})[detector] = (severity, params or {})
    out: dict[str, dict[str, StreamConfig]] = {}
    for (type_id, quantity), rows in found.items():
        out.setdefault(type_id, {})[quantity] = build_stream_config(quantity, rows)
    return out


def write_default_detectors(conn: psycopg.Connection) -> None:
    """The streaming detectors a new installation starts with (decision 0025); a row the
    operators changed or disabled (``enabled = false``) is kept as it is."""
    conn.cursor().executemany(
        "INSERT INTO alert_detector_settings (type_id, quantity, detector, severity, params)"
        " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
        [
            (d.type_id, d.quantity, d.detector, d.severity, json.dumps(dict(d.params)))
            for d in DEFAULT_DETECTORS
        ],
    )


def write_limit_override(
    conn: psycopg.Connection,
    user: str,
    sensor_id: str,
    quantity: str,
    alarm_low: float | None,
    alarm_high: float | None,
    deadband: float,
    reason: str,
) -> None:
    """Give one sensor its own limits for a quantity [canonical unit] (replacing any earlier
    ones); the engine applies them at once (NOTIFY, migration 0080). Only quantities its type
    has limits for."""
    if not reason.strip() or not user.strip():
        raise ValueError("a limit override needs a reason and the acting user")
    with conn.transaction():
        known = conn.execute(
            "SELECT 1 FROM sensors s JOIN sensor_type_quantities q ON q.type_id = s.sensor_type"
            " WHERE s.sensor_id = %s AND q.quantity = %s",
            (sensor_id, quantity),
        ).fetchone()
        if known is None:
            raise LookupError(f"{sensor_id} has no limits for {quantity}")
        conn.execute(
            "INSERT INTO sensor_limit_overrides (sensor_id, quantity, alarm_low, alarm_high,"
            " deadband, reason, set_by) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (sensor_id, quantity) DO UPDATE SET alarm_low = EXCLUDED.alarm_low,"
            " alarm_high = EXCLUDED.alarm_high, deadband = EXCLUDED.deadband,"
            " reason = EXCLUDED.reason, set_by = EXCLUDED.set_by, set_at = now()",
            (sensor_id, quantity, alarm_low, alarm_high, deadband, reason, user),
        )


def write_metered_area(
    conn: psycopg.Connection,
    user: str,
    area_id: str,
    name: str,
    meters: Sequence[tuple[str, int]],
    params: dict[str, Any] | None = None,
    members: Sequence[str] = (),
    storage: Sequence[str] = (),
) -> None:
    """Define (or redefine) a metered area: its inlet flow meters, each with +1 where a positive
    flow enters the area and -1 where it leaves (alerts/balance.py), and the sensors inside it
    (``members``; the meters always are), which incident grouping uses as the network's
    topology; ``storage``: the meters on service reservoirs rather than sources; the engine
    applies it at once (NOTIFY, migration 0080)."""
    if not meters or any(sign not in (-1, 1) for _, sign in meters):
        raise ValueError("a metered area needs meters, each with sign +1 or -1")
    with conn.transaction():
        conn.execute(
            "INSERT INTO metered_areas (area_id, name, params, set_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (area_id) DO UPDATE SET name = EXCLUDED.name, params = EXCLUDED.params,"
            " set_by = EXCLUDED.set_by, enabled = true, updated_at = now()",
            (area_id, name, Jsonb(params or {}), user),
        )
        conn.execute("DELETE FROM metered_area_meters WHERE area_id = %s", (area_id,))
        for sensor_id, sign in meters:
            conn.execute(
                "INSERT INTO metered_area_meters (area_id, sensor_id, sign, storage)"
                " VALUES (%s, %s, %s, %s)",
                (area_id, sensor_id, sign, sensor_id in storage),
            )
        conn.execute("DELETE FROM metered_area_sensors WHERE area_id = %s", (area_id,))
        conn.execute(
            "INSERT INTO metered_area_sensors (area_id, sensor_id)"
            " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (area_id, sorted({*members, *(m for m, _ in meters)})),
        )


def read_metered_areas(conn: psycopg.Connection) -> dict[str, AreaSpec]:
    """Enabled metered areas whose meters are all active sensors."""
    rows = conn.execute(
        "SELECT a.area_id, a.name, a.params, array_agg(m.sensor_id ORDER BY m.sensor_id),"
        " array_agg(m.sign ORDER BY m.sensor_id), bool_and(s.status = 'active'),"
        " coalesce(array_agg(m.sensor_id) FILTER (WHERE m.storage), '{}')"
        " FROM metered_areas a JOIN metered_area_meters m USING (area_id)"
        " JOIN sensors s USING (sensor_id) WHERE a.enabled GROUP BY a.area_id ORDER BY a.area_id"
    ).fetchall()
    out = {}
    for area_id, name, params, sensors, signs, all_active, storage in rows:
        if not all_active:
            continue
        known = {k: v for k, v in (params or {}).items() if k in AREA_PARAMS}
        out[area_id] = AreaSpec(
            area_id,
            name,
            tuple(zip(sensors, signs, strict=True)),
            storage=frozenset(storage),
            **known,
        )
    return out


def read_area_neighbours(conn: psycopg.Connection, sensor_id: str) -> list[str]:
    """The sensors sharing a metered area with ``sensor_id`` (itself included): the network's
    topology as incident grouping uses it."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT other.sensor_id FROM metered_area_sensors mine"
            " JOIN metered_area_sensors other USING (area_id) WHERE mine.sensor_id = %s",
            (sensor_id,),
        )
    ]


def read_sensor_place(
    conn: psycopg.Connection, sensor_id: str
) -> tuple[float, float, int | None] | None:
    """(lon, lat [degrees, WGS 84], district adcode) of a catalogued sensor, or None."""
    row = conn.execute(
        "SELECT ST_X(geom), ST_Y(geom), district_adcode FROM sensors WHERE sensor_id = %s",
        (sensor_id,),
    ).fetchone()
    return (row[0], row[1], row[2]) if row is not None else None
