"""PostGIS adapter for the districts and sensor layers (SQL for these tables lives here)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import psycopg

from sensors.catalogue import CatalogueError, Sensor, parse_csv_sensors, parse_geojson_sensors


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


def write_sensors(conn: psycopg.Connection, sensors: Iterable[Sensor]) -> int:
    """Insert or update sensors; the district is found from the location when not given."""
    n = 0
    with conn.transaction():
        for s in sensors:
            conn.execute(
                """
                INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode,
                                     asset_id, status, geom)
                VALUES (%(id)s, %(utility)s, %(type)s, %(name)s,
                        COALESCE(%(adcode)s, (SELECT adcode FROM districts d WHERE
                            ST_Contains(d.geom, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)) LIMIT 1)),
                        %(asset)s, %(status)s, ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326))
                ON CONFLICT (sensor_id) DO UPDATE SET
                    utility = EXCLUDED.utility, sensor_type = EXCLUDED.sensor_type,
                    name = EXCLUDED.name, district_adcode = EXCLUDED.district_adcode,
                    asset_id = EXCLUDED.asset_id, status = EXCLUDED.status,
                    geom = EXCLUDED.geom, updated_at = now()
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
                },
            )
            n += 1
    return n
