"""Multi-scale output: geometry simplified per zoom band, sensor state per district or cell.

Bands follow the web map's ground resolution at Chengdu's latitude (about 134,650 m / 2^zoom per
pixel): a geometry is simplified (in EPSG:4544, topology preserved) by about one pixel, and small
network elements are left out where they would be less than a pixel apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from gis.layers import get_layer
from gis.planner import feature_collection, metric_geom, rows_to_features


@dataclass(frozen=True, slots=True)
class ZoomBand:
    name: str
    min_zoom: int
    max_zoom: int
    tolerance_m: float  # simplification tolerance [m]
    min_diameter_mm: float  # network links thinner than this are left out
    node_kinds: tuple[str, ...] | None  # node kinds shown; None: all


ZOOM_BANDS: tuple[ZoomBand, ...] = (
    ZoomBand("city", 0, 9, 250.0, 500.0, ("reservoir", "tank", "source", "substation")),
    ZoomBand(
        "district", 10, 11, 60.0, 300.0, ("reservoir", "tank", "source", "substation", "regulator")
    ),
    ZoomBand(
        "neighbourhood",
        12,
        13,
        15.0,
        0.0,
        ("reservoir", "tank", "source", "substation", "regulator", "valve", "switch"),
    ),
    ZoomBand("street", 14, 30, 0.0, 0.0, None),
)


def zoom_band(zoom: float) -> ZoomBand:
    z = int(zoom)
    for band in ZOOM_BANDS:
        if band.min_zoom <= z <= band.max_zoom:
            return band
    return ZOOM_BANDS[-1] if z > 0 else ZOOM_BANDS[0]


def fetch_layer_for_zoom(
    conn: psycopg.Connection,
    layer_name: str,
    zoom: float,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 20_000,
    offset: int = 0,
) -> dict[str, Any]:
    """A layer's features for a map at ``zoom`` (EPSG:4326 GeoJSON), simplified for the band;
    ``limit`` features from ``offset`` in id order."""
    layer = get_layer(layer_name)
    band = zoom_band(zoom)
    params: list[Any] = []
    gm = metric_geom(layer, "t")
    geom: sql.Composable
    if band.tolerance_m > 0 and layer.geometry_type != "Point":
        params.append(band.tolerance_m)
        geom = sql.SQL("ST_Transform(ST_SimplifyPreserveTopology({}, %s), 4326)").format(gm)
    else:
        geom = sql.SQL("t.geom")
    where: list[sql.Composable] = []
    if bbox is not None:
        params.extend(bbox)
        where.append(sql.SQL("t.geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"))
    if "diameter_mm" in layer.column_names and band.min_diameter_mm > 0:
        params.append(band.min_diameter_mm)
        where.append(sql.SQL("coalesce(t.diameter_mm, 0) >= %s"))
    if layer.role == "nodes" and band.node_kinds is not None:
        params.append(list(band.node_kinds))
        where.append(sql.SQL("t.kind = ANY(%s)"))
    params.extend((limit, offset))
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in layer.column_names)
    stmt = sql.SQL(
        "SELECT {cols}, ST_AsGeoJSON({geom}, 6) AS geometry FROM {table} t WHERE {where}"
        " ORDER BY t.{id} LIMIT %s OFFSET %s"
    ).format(
        cols=cols,
        geom=geom,
        table=sql.Identifier(layer.table),
        where=sql.SQL(" AND ").join(where) if where else sql.SQL("true"),
        id=sql.Identifier(layer.id_column),
    )
    feats = rows_to_features(conn.execute(stmt, params), layer.id_column)
    return feature_collection(
        feats, layer=layer_name, zoom_band=band.name, tolerance_m=band.tolerance_m
    )


_STATE_AGGREGATES = """
    count(st.sensor_id) AS sensors,
    count(st.sensor_id) FILTER (WHERE st.status = 'active') AS active,
    count(st.sensor_id) FILTER (WHERE st.status = 'active' AND (st.last_ts IS NULL
        OR st.last_ts < now() - make_interval(secs => 3 * st.expected_interval_s))) AS stale,
    count(al.sensor_id) AS alerting_sensors,
    coalesce(sum(al.n), 0) AS open_alerts,
    max(al.sev) AS worst,
    count(st.sensor_id) FILTER (WHERE st.utility = 'water') AS water,
    count(st.sensor_id) FILTER (WHERE st.utility = 'power') AS power,
    count(st.sensor_id) FILTER (WHERE st.utility = 'gas') AS gas
"""

# each sensor with its latest reading and expected interval; open alerts per sensor
_STATE_INPUTS = """
WITH st AS (
    SELECT s.sensor_id, s.utility, s.district_adcode, s.geom, s.status,
           (SELECT max(l.ts) FROM sensor_latest l WHERE l.sensor_id = s.sensor_id) AS last_ts,
           t.expected_interval_s
    FROM sensors s JOIN sensor_types t ON t.type_id = s.sensor_type
),
al AS (
    SELECT sensor_id, count(*) AS n,
           max(CASE severity WHEN 'critical' THEN 4 WHEN 'major' THEN 3 WHEN 'warning' THEN 2
               ELSE 1 END) AS sev
    FROM alerts WHERE cleared_at IS NULL AND state NOT IN ('resolved', 'closed')
    GROUP BY sensor_id
)"""

_STATE_BY = {
    "district": """{inputs}
SELECT d.adcode AS id, d.name_zh, d.name_en, {aggregates},
       ST_AsGeoJSON(ST_Transform(ST_SimplifyPreserveTopology(ST_Transform(d.geom, 4544),
                    %(tol)s), 4326), 6) AS geometry
FROM districts d
LEFT JOIN st ON st.district_adcode = d.adcode
LEFT JOIN al ON al.sensor_id = st.sensor_id
GROUP BY d.adcode ORDER BY d.adcode
""",
    "grid": """{inputs},
res AS (SELECT coalesce(%(res)s, min(resolution)) AS r FROM grid_cells)
SELECT c.cell_id AS id, c.h3, c.district_adcode, c.population, {aggregates},
       ST_AsGeoJSON(ST_Transform(ST_SimplifyPreserveTopology(c.geom_m, %(tol)s), 4326), 6)
           AS geometry
FROM grid_cells c JOIN res ON c.resolution = res.r
JOIN st ON ST_Intersects(c.geom, st.geom)
LEFT JOIN al ON al.sensor_id = st.sensor_id
GROUP BY c.h3, c.district_adcode ORDER BY c.h3
""",
}

_SEVERITY = {4: "critical", 3: "major", 2: "warning", 1: "info"}


def fetch_sensor_state(
    conn: psycopg.Connection,
    *,
    by: str = "district",
    resolution: int | None = None,
    zoom: float = 10,
) -> dict[str, Any]:
    """Sensor state per district (all 20) or per grid cell holding sensors, with geometry
    simplified for ``zoom``. Stale: no reading for three expected intervals."""
    if by not in _STATE_BY:
        raise ValueError("by must be district or grid")
    tol = zoom_band(zoom).tolerance_m
    stmt = sql.SQL(_STATE_BY[by]).format(
        inputs=sql.SQL(_STATE_INPUTS), aggregates=sql.SQL(_STATE_AGGREGATES)
    )
    feats = rows_to_features(conn.execute(stmt, {"tol": tol, "res": resolution}), "id")
    for f in feats:
        p = f["properties"]
        p["worst_severity"] = _SEVERITY.get(p.pop("worst") or 0)
    return feature_collection(feats, aggregated_by=by, tolerance_m=tol)
