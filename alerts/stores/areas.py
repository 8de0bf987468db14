"""Metered areas as data: write a whole set (a file's import, a network's derivation) in one
checked transaction, list and show them with their polygons and whether their balance alerts.

Tables: ``metered_areas`` (with ``boundary`` and ``origin``, migration 0071),
``metered_area_meters``, ``metered_area_sensors``; reads the shared catalogue (``sensors``,
``sensor_type_quantities``) to check the meters and ``alerts`` for the balance's state.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

_AREA_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
ORIGINS = ("import", "derived")
# the alerts the water balance raises on an area's first meter (alerts/balance.py)
BALANCE_KINDS = ("water_burst", "night_flow_rise", "night_flow_step", "inlet_flow_low")
_ACTIVE = ("open", "acknowledged", "in_progress")


class AreaWriteError(ValueError):
    """A set of areas that cannot be stored as given (nothing was written)."""


def _check(conn: psycopg.Connection, areas: Sequence[Mapping[str, Any]]) -> None:
    ids = [str(a.get("area_id", "")) for a in areas]
    for area_id in ids:
        if not _AREA_ID.match(area_id):
            raise AreaWriteError(f"bad area id {area_id!r}: use 1-64 of [a-z0-9_-]")
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise AreaWriteError(f"area ids given twice: {', '.join(dup)}")
    meters = {str(m[0]) for a in areas for m in a.get("meters", ())}
    members = {str(s) for a in areas for s in a.get("members", ())}
    for a in areas:
        if not a.get("meters"):
            raise AreaWriteError(f"area {a['area_id']} has no meter")
        if not str(a.get("name", "")).strip():
            raise AreaWriteError(f"area {a['area_id']} has no name")
        if any(int(m[1]) not in (-1, 1) for m in a["meters"]):
            raise AreaWriteError(f"area {a['area_id']}: a meter's sign is +1 or -1")
    rows = conn.execute(
        "SELECT s.sensor_id, s.utility, s.status,"
        " EXISTS (SELECT 1 FROM sensor_type_quantities q"
        "         WHERE q.type_id = s.sensor_type AND q.quantity = 'flow')"
        " FROM sensors s WHERE s.sensor_id = ANY(%s)",
        (sorted(meters | members),),
    ).fetchall()
    known = {r[0]: r for r in rows}
    unknown = sorted((meters | members) - set(known))
    if unknown:
        raise AreaWriteError(f"unknown sensors: {', '.join(unknown)}")
    not_flow = sorted(s for s in meters if known[s][1] != "water" or not known[s][3])
    if not_flow:
        raise AreaWriteError(f"not water flow meters: {', '.join(not_flow)}")
    retired = sorted(s for s in meters if known[s][2] != "active")
    if retired:
        raise AreaWriteError(f"retired meters: {', '.join(retired)}")


def write_metered_areas(
    conn: psycopg.Connection,
    user: str,
    areas: Sequence[Mapping[str, Any]],
    *,
    origin: str,
) -> dict[str, int]:
    """Replace the areas of ``origin`` (``import`` or ``derived``) with ``areas`` (plain data:
    ``area_id``, ``name``, ``meters`` [(sensor, sign, storage)], ``members``, ``boundary``
    GeoJSON in EPSG:4326 or None), in one transaction after every check: an unknown sensor, a
    meter that is not an active water flow meter, a bad or repeated id, an id used by an area
    of another origin stores nothing. The engine applies them at once (NOTIFY, migration 0080).
    Returns counts: written, removed (areas of this origin no longer given)."""
    if origin not in ORIGINS:
        raise AreaWriteError(f"origin is one of {', '.join(ORIGINS)}")
    if not user.strip():
        raise AreaWriteError("writing areas needs the acting user")
    with conn.transaction():
        _check(conn, areas)
        ids = [str(a["area_id"]) for a in areas]
        # an id of another origin (the simulators', or an import while deriving) is not taken
        # over silently: one of the two would lose its area without being asked
        taken = conn.execute(
            "SELECT area_id, origin FROM metered_areas WHERE area_id = ANY(%s) AND origin <> %s"
            " ORDER BY area_id",
            (ids, origin),
        ).fetchall()
        if taken:
            raise AreaWriteError(
                "area ids already used by other areas: "
                + ", ".join(f"{i} ({o})" for i, o in taken)
                + "; give these areas other ids (derive: --prefix)"
            )
        removed = conn.execute(
            "DELETE FROM metered_areas WHERE origin = %s AND NOT (area_id = ANY(%s))",
            (origin, ids),
        ).rowcount
        for a in areas:
            area_id = str(a["area_id"])
            boundary = json.dumps(a["boundary"]) if a.get("boundary") else None
            conn.execute(
                "INSERT INTO metered_areas (area_id, name, set_by, origin, boundary)"
                " VALUES (%s, %s, %s, %s,"
                "         ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(%s::text), 4326)))"
                " ON CONFLICT (area_id) DO UPDATE SET name = EXCLUDED.name,"
                " set_by = EXCLUDED.set_by, origin = EXCLUDED.origin,"
                " boundary = EXCLUDED.boundary, enabled = true, updated_at = now()",
                (area_id, str(a["name"]).strip(), user, origin, boundary),
            )
            conn.execute("DELETE FROM metered_area_meters WHERE area_id = %s", (area_id,))
            conn.cursor().executemany(
                "INSERT INTO metered_area_meters (area_id, sensor_id, sign, storage)"
                " VALUES (%s, %s, %s, %s)",
                [(area_id, str(m[0]), int(m[1]), bool(m[2])) for m in a["meters"]],
            )
            conn.execute("DELETE FROM metered_area_sensors WHERE area_id = %s", (area_id,))
            conn.execute(
                "INSERT INTO metered_area_sensors (area_id, sensor_id)"
                " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
                (area_id, sorted({*map(str, a.get("members", ())), *(m[0] for m in a["meters"])})),
            )
    return {"written": len(areas), "removed": removed}


_LIST_SQL = """
SELECT a.area_id, a.name, a.origin, a.enabled, a.set_by, a.updated_at,
       coalesce((SELECT json_agg(json_build_object('sensor_id', m.sensor_id, 'sign', m.sign,
                                                   'storage', m.storage) ORDER BY m.sensor_id)
                 FROM metered_area_meters m WHERE m.area_id = a.area_id), '[]'),
       (SELECT count(*) FROM metered_area_sensors s WHERE s.area_id = a.area_id),
       CASE WHEN a.boundary IS NULL THEN NULL ELSE ST_Area(a.boundary::geography) END,
       coalesce((SELECT array_agg(DISTINCT al.kind ORDER BY al.kind) FROM alerts al
                 JOIN metered_area_meters m ON m.sensor_id = al.sensor_id
                 WHERE m.area_id = a.area_id AND al.kind = ANY(%(kinds)s)
                   AND al.state = ANY(%(active)s)), '{}'),
       CASE WHEN %(geometry)s THEN ST_AsGeoJSON(a.boundary, 7)::json END
FROM metered_areas a
"""


def _row(r: tuple) -> dict[str, Any]:
    return {
        "area_id": r[0],
        "name": r[1],
        "origin": r[2],
        "enabled": r[3],
        "set_by": r[4],
        "updated_at": r[5].isoformat(),
        "meters": list(r[6]),
        "sensors": int(r[7]),
        "area_km2": None if r[8] is None else round(float(r[8]) / 1e6, 4),
        "alerting": list(r[9]),
        "boundary": r[10],
    }


def read_metered_area_list(
    conn: psycopg.Connection, *, geometry: bool = False
) -> list[dict[str, Any]]:
    """Every metered area with its meters (sign, storage), sensor count, area [km²] and the
    balance alerts active on it (``alerting``: kinds); ``geometry``: its polygon as GeoJSON."""
    rows = conn.execute(
        _LIST_SQL + " ORDER BY a.area_id",
        {"kinds": list(BALANCE_KINDS), "active": list(_ACTIVE), "geometry": geometry},
    ).fetchall()
    return [_row(r) for r in rows]


def read_metered_area(conn: psycopg.Connection, area_id: str) -> dict[str, Any] | None:
    """One area as in the list, with its polygon and the sensors inside it, or None."""
    row = conn.execute(
        _LIST_SQL + " WHERE a.area_id = %(id)s",
        {"kinds": list(BALANCE_KINDS), "active": list(_ACTIVE), "geometry": True, "id": area_id},
    ).fetchone()
    if row is None:
        return None
    out = _row(row)
    out["members"] = [
        r[0]
        for r in conn.execute(
            "SELECT sensor_id FROM metered_area_sensors WHERE area_id = %s ORDER BY sensor_id",
            (area_id,),
        )
    ]
    return out
