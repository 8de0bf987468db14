"""Answers as files: GeoJSON, CSV (safe to open in a spreadsheet) and GeoPackage."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

# a cell starting with one of these is run as a formula by Excel, LibreOffice and WPS (OWASP)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formula injection: prefix risky text with a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_geojson(fc: dict[str, Any]) -> str:
    return json.dumps(fc, ensure_ascii=False, default=str)


def to_csv(fc: dict[str, Any]) -> str:
    """One row per feature: its properties, then the geometry as WKT (EPSG:4326)."""
    from shapely.geometry import shape

    feats = fc.get("features") or []
    keys: list[str] = []
    for f in feats:
        for k in f.get("properties") or {}:
            if k not in keys:
                keys.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*keys, "wkt"])
    for f in feats:
        props = f.get("properties") or {}
        geom = f.get("geometry")
        wkt = shape(geom).wkt if geom else ""
        row = [props.get(k) for k in keys]
        w.writerow([csv_safe("" if v is None else v) for v in row] + [wkt])
    return buf.getvalue()


def write_gpkg(fc: dict[str, Any], path: Path, layer: str = "result") -> Path:
    """Write the features to a GeoPackage layer (EPSG:4326), grouped by geometry type when mixed."""
    import geopandas as gpd

    feats = [f for f in fc.get("features") or [] if f.get("geometry")]
    if not feats:
        raise ValueError("nothing to write: the answer has no features with geometry")
    gdf = gpd.GeoDataFrame.from_features(feats, crs=4326)
    for col in gdf.columns:
        if col != "geometry" and gdf[col].map(lambda v: isinstance(v, list | dict)).any():
            gdf[col] = gdf[col].map(
                lambda v: json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else v
            )
    kinds = sorted(set(gdf.geom_type))
    if len(kinds) == 1:
        gdf.to_file(path, layer=layer, driver="GPKG")
    else:
        for k in kinds:
            gdf[gdf.geom_type == k].to_file(path, layer=f"{layer}_{k.lower()}", driver="GPKG")
    return path


def render(fc: dict[str, Any], fmt: str) -> tuple[bytes, str]:
    """(body, media type) for geojson or csv; GeoPackage goes through ``write_gpkg``."""
    if fmt == "geojson":
        return to_geojson(fc).encode(), "application/geo+json"
    if fmt == "csv":
        return to_csv(fc).encode("utf-8-sig"), "text/csv; charset=utf-8"
    raise ValueError(f"unknown format {fmt!r}: geojson, csv or gpkg")
