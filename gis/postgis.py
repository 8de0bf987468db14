"""PostGIS adapter for the layers: districts, sensors, networks, facilities, grid cells.

SQL that writes these tables lives here; planner queries live in ``gis.planner``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psycopg
import shapely
from psycopg import sql

from gis.layers import STORE_SRID, Layer, get_layer
from sensors.catalogue import (
    SENSOR_TYPES,
    CatalogueError,
    Sensor,
    parse_csv_sensors,
    parse_geojson_sensors,
)

if TYPE_CHECKING:
    import geopandas as gpd


def write_sensor_types(conn: psycopg.Connection) -> None:
    """The default sensor types and their alarm limits (``sensors.catalogue.SENSOR_TYPES``);
    types and limits an operator already changed are kept."""
    for t in SENSOR_TYPES.values():
        conn.execute(
            "INSERT INTO sensor_types (type_id, utility, name_zh, name_en, expected_interval_s)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (type_id) DO NOTHING",
            (t.type_id, t.utility.value, t.name_zh, t.name_en, t.expected_interval_s),
        )
        conn.cursor().executemany(
            "INSERT INTO sensor_type_quantities"
            " (type_id, quantity, alarm_low, alarm_high, deadband)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(t.type_id, x.quantity, x.alarm_low, x.alarm_high, x.deadband) for x in t.limits],
        )


def retire_sensors(conn: psycopg.Connection, sensor_ids: Iterable[str]) -> int:
    """Mark sensors retired (they stay in the catalogue; ingestion refuses their readings)."""
    cur = conn.execute(
        "UPDATE sensors SET status = 'retired', updated_at = now() WHERE sensor_id = ANY(%s)",
        (list(sensor_ids),),
    )
    return max(0, cur.rowcount)


def write_districts(conn: psycopg.Connection, doc: Mapping[str, Any]) -> int:
    """Replace the districts layer with a GeoJSON FeatureCollection, in one transaction."""
    features = doc.get("features") or []
    with conn.transaction():
        conn.execute("DELETE FROM districts")
        for feat in features:
            p = feat["properties"]
            conn.execute(
                "INSERT INTO districts (adcode, name_zh, name_en, geom) VALUES (%s, %s, %s,"
                " ST_Multi(ST_MakeValid(ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326))))",
                (int(p["adcode"]), p["name_zh"], p["name_en"], json.dumps(feat["geometry"])),
            )
        mark_layer_loaded(conn, "districts", len(features))
    return len(features)


def read_sensor_file(path: Path) -> list[Sensor]:
    """Sensors from GeoJSON, CSV or GeoPackage (any CRS; transformed to EPSG:4326)."""
    suffix = path.suffix.lower()
    if suffix in (".geojson", ".json"):
        return parse_geojson_sensors(json.loads(path.read_text(encoding="utf-8")))
    if suffix == ".csv":
        return parse_csv_sensors(path.read_text(encoding="utf-8-sig"))
    if suffix in (".gpkg", ".shp"):
        import pyogrio

        gdf = pyogrio.read_dataframe(path)
        if gdf.crs is None:
            raise CatalogueError(f"{path}: no CRS; set one before import")
        gdf = gdf.to_crs(4326)
        return parse_geojson_sensors(json.loads(gdf.to_json()))
    raise CatalogueError(f"{path}: unsupported format {suffix} (use .geojson, .csv or .gpkg)")


def write_sensors(
    conn: psycopg.Connection,
    sensors: Iterable[Sensor],
    *,
    external_ids: Mapping[str, str] | None = None,
) -> int:
    """Insert or update sensors; the district is found from the location when not given.
    ``external_ids`` ({sensor_id: the utility's own id}) fills ``sensors.external_id``; a
    sensor whose id another external id already maps to is refused (nothing is written)."""
    n = 0
    ext = dict(external_ids or {})
    with conn.transaction():
        taken = conn.execute(
            "SELECT sensor_id, external_id FROM sensors WHERE sensor_id = ANY(%s)"
            " AND external_id IS NOT NULL",
            (list(ext),),
        ).fetchall()
        for sid, had in taken:
            if ext.get(sid) != had:
                raise CatalogueError(
                    f"{ext[sid]!r} maps to {sid!r}, already the id of the utility's {had!r}"
                )
        for s in sensors:
            conn.execute(
                """
                INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode,
                                     asset_id, status, geom, external_id)
                VALUES (%(id)s, %(utility)s, %(type)s, %(name)s,
                        COALESCE(%(adcode)s, (SELECT adcode FROM districts d WHERE
                            ST_Contains(d.geom, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)) LIMIT 1)),
                        %(asset)s, %(status)s, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326),
                        %(ext)s)
                ON CONFLICT (sensor_id) DO UPDATE SET
                    utility = EXCLUDED.utility, sensor_type = EXCLUDED.sensor_type,
                    name = EXCLUDED.name, district_adcode = EXCLUDED.district_adcode,
                    asset_id = EXCLUDED.asset_id, status = EXCLUDED.status,
                    geom = EXCLUDED.geom, updated_at = now(),
                    external_id = COALESCE(EXCLUDED.external_id, sensors.external_id)
                """,
                {
                    "id": s.sensor_id,
                    "utility": s.utility.value,
                    "type": s.sensor_type,
                    "name": s.name,
                    "adcode": s.district_adcode,
                    "asset": s.asset_id,
                    "status": s.status,
                    "lon": s.lon,
                    "lat": s.lat,
                    "ext": ext.get(s.sensor_id),
                },
            )
            n += 1
    return n


# the layers a sensor's asset id may name, per utility: (table, id column, is a link)
ASSET_TABLES: dict[str, tuple[tuple[str, str, bool], ...]] = {
    "water": (("water_nodes", "node_id", False), ("water_pipes", "pipe_id", True)),
    "gas": (("gas_nodes", "node_id", False), ("gas_pipes", "pipe_id", True)),
    "power": (("power_nodes", "node_id", False), ("power_lines", "line_id", True)),
}


def fetch_loaded_networks(conn: psycopg.Connection) -> set[str]:
    """The utilities whose network layers hold at least one feature."""
    out = set()
    for utility, tables in ASSET_TABLES.items():
        for table, _, _ in tables:
            q = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))
            if conn.execute(q).fetchone()[0]:  # type: ignore[index]
                out.add(utility)
                break
    return out


def fetch_asset_positions(
    conn: psycopg.Connection, utility: str, asset_ids: Iterable[str]
) -> dict[str, dict[str, tuple[float, float]]]:
    """{"node": {id: (lon, lat)}, "link": {...}} for the named assets of one utility's network:
    a node's position, a link's midpoint along its length. Ids not found are absent."""
    ids = sorted(set(asset_ids))
    out: dict[str, dict[str, tuple[float, float]]] = {"node": {}, "link": {}}
    for table, id_col, is_link in ASSET_TABLES[utility]:
        point = sql.SQL("ST_LineInterpolatePoint(geom, 0.5)" if is_link else "geom")
        q = sql.SQL("SELECT {id}, ST_X({p}), ST_Y({p}) FROM {t} WHERE {id} = ANY(%s)").format(
            id=sql.Identifier(id_col), p=point, t=sql.Identifier(table)
        )
        found = out["link" if is_link else "node"]
        for aid, lon, lat in conn.execute(q, (ids,)):
            found[aid] = (float(lon), float(lat))
    return out


def fetch_water_sensor_assets(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(sensor_id, sensor_type, asset_id) of the active water sensors placed on an asset."""
    rows = conn.execute(
        "SELECT sensor_id, sensor_type, asset_id FROM sensors WHERE utility = 'water'"
        " AND status = 'active' AND asset_id IS NOT NULL ORDER BY sensor_id"
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def retire_demo_water_sensors(conn: psycopg.Connection, candidates: Iterable[str]) -> list[str]:
    """Retire the given water sensors whose asset is not in the water layers as they are now
    (after a replace): the demo's sensors left on assets that no longer exist."""
    rows = conn.execute(
        """
        UPDATE sensors s SET status = 'retired', updated_at = now()
        WHERE s.sensor_id = ANY(%s) AND s.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM water_nodes n WHERE n.node_id = s.asset_id)
          AND NOT EXISTS (SELECT 1 FROM water_pipes p WHERE p.pipe_id = s.asset_id)
        RETURNING s.sensor_id
        """,
        (list(candidates),),
    ).fetchall()
    return sorted(r[0] for r in rows)


def fetch_demo_water_sensors(conn: psycopg.Connection) -> list[str]:
    """Active water sensors of the demo: on the water layers while those are marked demo
    (``gis demo --sensors``), or on the demo catalogue's made-up assets (``demo-...``,
    data/demo_sensors.geojson). Empty when the water layers are not demo data."""
    demo = conn.execute(
        "SELECT coalesce(bool_or(demo), false) FROM gis_layers"
        " WHERE name IN ('water_nodes', 'water_pipes')"
    ).fetchone()[0]  # type: ignore[index]
    if not demo:
        return []
    rows = conn.execute(
        """
        SELECT s.sensor_id FROM sensors s
        WHERE s.utility = 'water' AND s.status = 'active' AND s.asset_id IS NOT NULL
          AND (s.asset_id LIKE 'demo-%%'
               OR EXISTS (SELECT 1 FROM water_nodes n WHERE n.node_id = s.asset_id)
               OR EXISTS (SELECT 1 FROM water_pipes p WHERE p.pipe_id = s.asset_id))
        ORDER BY 1
        """
    ).fetchall()
    return [r[0] for r in rows]


# --- layers (gis_layers, networks, facilities, grid cells) -------------------------------------

_NETWORK_LINK_TABLES = ("water_pipes", "gas_pipes", "power_lines")


def _layer_rows(layer: Layer, gdf: gpd.GeoDataFrame) -> tuple[list[str], Iterable[tuple]]:
    cols = [c for c in layer.column_names if c in gdf.columns]
    geoms = shapely.to_wkb(
        shapely.set_srid(gdf.geometry.to_numpy(), STORE_SRID), hex=True, include_srid=True
    )
    data = [gdf[c].tolist() for c in cols]

    def clean(v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, np.generic):
            return v.item()
        return v

    rows = ((*(clean(col[i]) for col in data), geoms[i]) for i in range(len(gdf)))
    return cols, rows


def _copy_layer(conn: psycopg.Connection, layer: Layer, gdf: gpd.GeoDataFrame) -> None:
    cols, rows = _layer_rows(layer, gdf)
    stmt = sql.SQL("COPY {} ({}, geom) FROM STDIN").format(
        sql.Identifier(layer.table), sql.SQL(", ").join(map(sql.Identifier, cols))
    )
    with conn.cursor() as cur, cur.copy(stmt) as cp:
        for row in rows:
            cp.write_row(row)


def _after_load(conn: psycopg.Connection, names: set[str]) -> None:
    """Derived columns: lengths in metres, districts, facility service nodes, feeders."""
    for t in _NETWORK_LINK_TABLES:
        if t in names:
            conn.execute(
                sql.SQL("UPDATE {} SET length_m = ST_Length(geom_m) WHERE length_m IS NULL").format(
                    sql.Identifier(t)
                )
            )
            conn.execute(
                sql.SQL(
                    "UPDATE {} t SET district_adcode = d.adcode FROM districts d"
                    " WHERE t.district_adcode IS NULL"
                    " AND ST_Intersects(d.geom, ST_LineInterpolatePoint(t.geom, 0.5))"
                ).format(sql.Identifier(t))
            )
    for t in ("water_nodes", "gas_nodes", "power_nodes", "facilities"):
        if t in names:
            conn.execute(
                sql.SQL(
                    "UPDATE {} t SET district_adcode = d.adcode FROM districts d"
                    " WHERE t.district_adcode IS NULL AND ST_Intersects(d.geom, t.geom)"
                ).format(sql.Identifier(t))
            )
    if names & {"facilities", "water_nodes", "gas_nodes", "power_nodes"}:
        link_facilities(conn)
    if "power_lines" in names or "power_nodes" in names:
        refresh_feeders(conn)


def link_facilities(conn: psycopg.Connection, max_distance_m: float = 1000.0) -> None:
    """Each facility's serving node per network: the nearest customer node within reach."""
    for col, table, kinds in (
        ("water_node_id", "water_nodes", ["junction"]),
        ("gas_node_id", "gas_nodes", ["junction"]),
        ("power_node_id", "power_nodes", ["transformer", "junction"]),
    ):
        conn.execute(
            sql.SQL(
                "UPDATE facilities f SET {col} = (SELECT n.node_id FROM {table} n"
                " WHERE n.kind = ANY(%(kinds)s) AND ST_DWithin(n.geom_m, f.geom_m, %(d)s)"
                " ORDER BY n.geom_m <-> f.geom_m LIMIT 1)"
            ).format(col=sql.Identifier(col), table=sql.Identifier(table)),
            {"kinds": kinds, "d": max_distance_m},
        )


def refresh_feeders(conn: psycopg.Connection) -> None:
    """Rebuild power_feeders from power_lines (one row per feeder, lines collected)."""
    conn.execute("DELETE FROM power_feeders")
    conn.execute(
        """
        INSERT INTO power_feeders (feeder_id, substation_id, voltage_kv, line_count, length_m,
                                   customers, geom)
        SELECT l.feeder_id,
               (SELECT n.node_id FROM power_lines l2 JOIN power_nodes n
                    ON n.node_id IN (l2.from_node, l2.to_node) AND n.kind = 'substation'
                 WHERE l2.feeder_id = l.feeder_id LIMIT 1),
               max(l.voltage_kv), count(*), coalesce(sum(l.length_m), 0),
               coalesce((SELECT sum(customers) FROM power_nodes n WHERE n.feeder_id = l.feeder_id), 0),
               ST_Multi(ST_Collect(l.geom))
        FROM power_lines l WHERE l.feeder_id IS NOT NULL GROUP BY l.feeder_id
        """
    )


def write_layers(
    conn: psycopg.Connection,
    frames: Mapping[str, gpd.GeoDataFrame],
    *,
    source: str | None = None,
    licence: str | None = None,
    demo: bool | None = None,
    classification: str | None = None,
) -> dict[str, int]:
    """Replace whole layers in one transaction: on any error every old layer stays as it was.
    Rows that break the data dictionary's rules are refused first, all of them named
    (``gis.dictionary.RuleError``). ``classification`` (public, internal, restricted) replaces the layers' data class when given.

    Frames must be prepared (``gis.loading.prepare_layer_frame``): EPSG:4326, layer columns.
    """
    from gis.dictionary_db import enforce

    for name, gdf in frames.items():  # every file, model and demo: the dictionary's rules first
        enforce(conn, get_layer(name), gdf)
    counts: dict[str, int] = {}
    with conn.transaction():
        for name, gdf in frames.items():
            layer = get_layer(name)
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(layer.table)))
            _copy_layer(conn, layer, gdf)
            counts[name] = len(gdf)
        _after_load(conn, set(frames))
        for name, n in counts.items():
            mark_layer_loaded(
                conn,
                name,
                n,
                source=source,
                licence=licence,
                demo=demo,
                classification=classification,
            )
        for name in counts:
            # fresh statistics now, not at autovacuum's leisure: the planner's choice between
            # index and sequential scans depends on them right after a bulk replace
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(get_layer(name).table)))
        if "power_lines" in counts or "power_nodes" in counts:
            n = conn.execute("SELECT count(*) FROM power_feeders").fetchone()[0]  # type: ignore[index]
            mark_layer_loaded(conn, "power_feeders", n, demo=demo)
    return counts


def write_layer(conn: psycopg.Connection, name: str, gdf: gpd.GeoDataFrame, **meta: Any) -> int:
    """Replace one layer (see ``write_layers``)."""
    return write_layers(conn, {name: gdf}, **meta)[name]


def mark_layer_loaded(
    conn: psycopg.Connection,
    name: str,
    count: int,
    *,
    source: str | None = None,
    licence: str | None = None,
    demo: bool | None = None,
    classification: str | None = None,
) -> None:
    conn.execute(
        "UPDATE gis_layers SET feature_count = %s, version = version + 1, loaded_at = now(),"
        " source = COALESCE(%s, source), licence = COALESCE(%s, licence),"
        " demo = COALESCE(%s, demo), classification = COALESCE(%s, classification)"
        " WHERE name = %s",
        (count, source, licence, demo, classification, name),
    )


def write_grid_cells(conn: psycopg.Connection, gdf: gpd.GeoDataFrame) -> int:
    """Replace the grid-cell layer (``gis.grid.build_grid_cells`` output)."""
    layer = get_layer("grid_cells")
    with conn.transaction():
        conn.execute("DELETE FROM grid_cells")
        _copy_layer(conn, layer, gdf)
        conn.execute("ANALYZE grid_cells")
        demo = bool(gdf["population_demo"].any()) if "population_demo" in gdf else True
        mark_layer_loaded(conn, "grid_cells", len(gdf), demo=demo)
    return len(gdf)


def fetch_districts_frame(conn: psycopg.Connection) -> gpd.GeoDataFrame:
    import geopandas as gpd

    rows = conn.execute(
        "SELECT adcode, name_zh, name_en, ST_AsBinary(geom) FROM districts ORDER BY adcode"
    ).fetchall()
    return gpd.GeoDataFrame(
        {
            "adcode": [r[0] for r in rows],
            "name_zh": [r[1] for r in rows],
            "name_en": [r[2] for r in rows],
        },
        geometry=shapely.from_wkb([bytes(r[3]) for r in rows]),
        crs=STORE_SRID,
    )


def fetch_layer_metadata(conn: psycopg.Connection) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT name, table_name, title_zh, title_en, geometry_type, source, licence, crs, demo,"
        " description, feature_count, version, loaded_at, classification FROM gis_layers"
        " ORDER BY name"
    )
    names = [d.name for d in cur.description]  # type: ignore[union-attr]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def fetch_layer_classes(conn: psycopg.Connection) -> dict[str, str]:
    """Layer (and served view) -> data class: ``gis_layers.classification``, plus the views
    that are no layer of their own (``gis.layers.VIEW_CLASSES``)."""
    from gis.layers import VIEW_CLASSES

    rows = conn.execute("SELECT name, classification FROM gis_layers").fetchall()
    return {**VIEW_CLASSES, **{r[0]: r[1] for r in rows}}


def write_layer_classification(conn: psycopg.Connection, name: str, classification: str) -> bool:
    """Set a layer's data class; False when there is no such layer."""
    cur = conn.execute(
        "UPDATE gis_layers SET classification = %s WHERE name = %s", (classification, name)
    )
    return cur.rowcount == 1


def fetch_stored_medians(
    conn: psycopg.Connection, sensor_ids: Sequence[str], quantity: str, *, days: int = 30
) -> dict[str, float]:
    """The median of each sensor's stored ``quantity`` readings over the newest ``days`` days
    before its latest one (history loaded with `cityops readings import` counts): which way a
    meter reads. Sensors with no readings are absent."""
    rows = conn.execute(
        """
        SELECT r.sensor_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY r.value)
        FROM readings r
        JOIN (SELECT sensor_id, max(ts) AS last_ts FROM readings
              WHERE sensor_id = ANY(%(ids)s) AND quantity = %(q)s GROUP BY sensor_id) l
          USING (sensor_id)
        WHERE r.quantity = %(q)s AND r.ts > l.last_ts - make_interval(days => %(days)s)
        GROUP BY r.sensor_id
        """,
        {"ids": list(sensor_ids), "q": quantity, "days": days},
    ).fetchall()
    return {r[0]: float(r[1]) for r in rows}
