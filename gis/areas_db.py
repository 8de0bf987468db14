"""What a metered-area derivation reads from the GIS (adapter): the water network, its flow
meters and other sensors placed at network assets, and the pipes' geometry in metres.

A flow meter is an active water sensor whose type measures ``flow`` and whose ``asset_id``
names a ``water_pipes.pipe_id`` (the contract of ``cityops sensors import --at-asset``).
"""

from __future__ import annotations

from typing import Any

import psycopg
from pyproj import Transformer

from gis.analysis import fetch_network
from gis.network import Network

METRIC_SRID = 4544  # the layers' stored metric copy (geom_m)


def fetch_area_inputs(
    conn: psycopg.Connection,
) -> tuple[Network, dict[str, str], dict[str, str]]:
    """(water network, flow meter -> pipe id, other water sensor -> node or pipe id)."""
    net = fetch_network(conn, "water")
    rows = conn.execute(
        "SELECT s.sensor_id, s.asset_id,"
        " EXISTS (SELECT 1 FROM sensor_type_quantities q"
        "         WHERE q.type_id = s.sensor_type AND q.quantity = 'flow'),"
        " EXISTS (SELECT 1 FROM water_pipes p WHERE p.pipe_id = s.asset_id)"
        " FROM sensors s WHERE s.utility = 'water' AND s.status = 'active'"
        " AND s.asset_id IS NOT NULL ORDER BY s.sensor_id"
    ).fetchall()
    meters = {sid: asset for sid, asset, flow, on_pipe in rows if flow and on_pipe}
    others = {sid: asset for sid, asset, _, _ in rows if sid not in meters}
    return net, meters, others


def fetch_pipe_lines_m(
    conn: psycopg.Connection, pipe_ids: list[str]
) -> dict[str, list[tuple[float, float]]]:
    """pipe id -> its vertices [m, EPSG:4544]."""
    out: dict[str, list[tuple[float, float]]] = {}
    for pid, coords in conn.execute(
        "SELECT pipe_id, ST_AsGeoJSON(geom_m)::json -> 'coordinates' FROM water_pipes"
        " WHERE pipe_id = ANY(%s)",
        (pipe_ids,),
    ):
        out[pid] = [(float(c[0]), float(c[1])) for c in coords]
    return out


def metric_to_lonlat() -> Any:
    """(x, y) [EPSG:4544] -> (lon, lat) [EPSG:4326], for shapely.ops.transform."""
    return Transformer.from_crs(METRIC_SRID, 4326, always_xy=True).transform
