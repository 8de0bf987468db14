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


def to_csv(fc: dict[str, Any], extra: tuple[str, str] | None = None) -> str:
    """One row per feature: its properties, then the geometry as WKT (EPSG:4326), then the
    ``extra`` (column, value) pair when given (an export's watermark)."""
    from shapely.geometry import shape

    feats = fc.get("features") or []
    keys: list[str] = []
    for f in feats:
        for k in f.get("properties") or {}:
            if k not in keys:
                keys.append(k)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    tail = [csv_safe(extra[1])] if extra else []
    w.writerow([*keys, "wkt", *([extra[0]] if extra else [])])
    for f in feats:
        props = f.get("properties") or {}
        geom = f.get("geometry")
        wkt = shape(geom).wkt if geom else ""
        row = [props.get(k) for k in keys]
        w.writerow([csv_safe("" if v is None else v) for v in row] + [wkt, *tail])
    return buf.getvalue()


def write_gpkg(
    fc: dict[str, Any],
    path: Path,
    layer: str = "result",
    *,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write the features to a GeoPackage layer (EPSG:4326), grouped by geometry type when mixed.
    ``metadata`` goes into the dataset's metadata (``gpkg_metadata``, shown by ``ogrinfo`` and
    QGIS's layer properties)."""
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
    options: dict[str, Any] = {"dataset_metadata": metadata} if metadata else {}
    if len(kinds) == 1:
        gdf.to_file(path, layer=layer, driver="GPKG", **options)
    else:
        for i, k in enumerate(kinds):
            gdf[gdf.geom_type == k].to_file(
                path, layer=f"{layer}_{k.lower()}", driver="GPKG", **(options if i == 0 else {})
            )
    return path


def render(fc: dict[str, Any], fmt: str) -> tuple[bytes, str]:
    """(body, media type) for geojson or csv; GeoPackage goes through ``write_gpkg``."""
    if fmt == "geojson":
        return to_geojson(fc).encode(), "application/geo+json"
    if fmt == "csv":
        return to_csv(fc).encode("utf-8-sig"), "text/csv; charset=utf-8"
    raise ValueError(f"unknown format {fmt!r}: geojson, csv or gpkg")


# --- exports that leave cityops: watermark, then (later) a signature -----------------------------

WATERMARK_KEY = "cityops:export"  # the GeoJSON member
WATERMARK_FIELD = "cityops_export"  # the CSV column and GeoPackage metadata item (GDAL splits ':')
FORMATS = ("geojson", "csv", "gpkg")


def build_watermark(by: str, at: str, classification: str, layers: list[str]) -> dict[str, Any]:
    """Who took the data, when (ISO 8601, Asia/Shanghai) and its class: carried inside the file
    so that a copy found elsewhere says where it came from."""
    return {"by": by, "at": at, "classification": classification, "layers": layers}


def _watermark_text(mark: dict[str, Any]) -> str:
    return (
        f"by={mark['by']}; at={mark['at']}; classification={mark['classification']};"
        f" layers={','.join(mark.get('layers') or [])}"
    )


def export_bytes(
    fc: dict[str, Any], fmt: str, *, name: str, watermark: dict[str, Any] | None = None
) -> tuple[bytes, str]:
    """(body, media type) of an answer as a file in ``fmt`` (geojson, csv or gpkg), with the
    ``watermark`` (``build_watermark``) inside: GeoJSON a top-level ``cityops:export`` member,
    CSV a last ``cityops_export`` column on every row, GeoPackage a dataset metadata item
    ``cityops_export`` (in ``gpkg_metadata``; ``ogrinfo`` prints it). Every file the HTTP API hands out passes here: the place to attach a
    signature of the bytes later (issue 14, SM2)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: geojson, csv or gpkg")
    if fmt == "gpkg":
        import tempfile

        meta = {WATERMARK_FIELD: json.dumps(watermark, ensure_ascii=False)} if watermark else None
        with tempfile.TemporaryDirectory() as tmp:
            path = write_gpkg(fc, Path(tmp) / f"{name}.gpkg", layer=name, metadata=meta)
            return path.read_bytes(), "application/geopackage+sqlite3"
    if fmt == "csv":
        body = to_csv(
            fc, extra=(WATERMARK_FIELD, _watermark_text(watermark)) if watermark else None
        )
        return body.encode("utf-8-sig"), "text/csv; charset=utf-8"
    doc = {**fc, WATERMARK_KEY: watermark} if watermark else fc
    return to_geojson(doc).encode(), "application/geo+json"
