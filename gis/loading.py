"""Reading and checking layer files before they reach the database.

``read_layer_file`` touches the file system (pyogrio); ``prepare_layer_frame`` is pure: it checks
the CRS and transforms to EPSG:4326, checks the extent against Chengdu (a wrong CRS puts data in
the wrong country), maps and coerces columns, and repairs invalid geometries with
``shapely.make_valid`` (or rejects them when ``repair=False`` or when repair changes the kind of
geometry). Every refusal raises ``LayerLoadError`` with a message that names the features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from shapely.geometry import LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon
from shapely.ops import linemerge

from gis.layers import CHENGDU_BOUNDS, STORE_SRID, Layer

SUPPORTED_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".zip")


class LayerLoadError(ValueError):
    """A file that cannot become the layer; nothing was written."""


@dataclass(slots=True)
class LoadReport:
    layer: str
    features: int = 0
    source_crs: str = ""
    repaired: list[str] = field(default_factory=list)  # ids of repaired geometries
    renamed: dict[str, str] = field(default_factory=dict)


def read_layer_file(path: Path, *, sublayer: str | None = None) -> gpd.GeoDataFrame:
    """A GeoPackage, GeoJSON or Shapefile as a GeoDataFrame (CRS as declared by the file)."""
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    if not path.exists():
        raise LayerLoadError(f"{path}: no such file")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise LayerLoadError(
            f"{path}: unsupported format {path.suffix!r} (GeoPackage, GeoJSON or Shapefile)"
        )
    try:
        info = pyogrio.read_info(path, layer=sublayer)
        gdf = pyogrio.read_dataframe(path, layer=sublayer, on_invalid="ignore")
    except (DataSourceError, DataLayerError, RuntimeError, ValueError) as exc:
        raise LayerLoadError(f"{path}: cannot be read ({exc}); is the file complete?") from exc
    declared = info.get("features")
    if declared is not None and declared >= 0 and declared != len(gdf):
        raise LayerLoadError(
            f"{path}: declares {declared} features but {len(gdf)} could be read; truncated file?"
        )
    return gdf


def _map_columns(layer: Layer, df: pd.DataFrame, report: LoadReport) -> pd.DataFrame:
    """Match file columns to the layer's (case-insensitive; Shapefile's 10-character names)."""
    rename: dict[str, str] = {}
    wanted = layer.column_names
    for col in df.columns:
        if col == df.geometry.name:
            continue
        low = str(col).lower()
        if low in wanted:
            target = low
        else:
            cands = [w for w in wanted if len(low) == 10 and w.startswith(low)]
            if len(cands) != 1:
                continue
            target = cands[0]
        if target != col:
            rename[col] = target
    report.renamed = rename
    return df.rename(columns=rename)


def _coerce(layer: Layer, df: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for col in layer.columns:
        if col.name not in df.columns:
            out[col.name] = col.default
            continue
        s = df[col.name]
        if col.type in ("int", "float"):
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
            if bad.any():
                raise LayerLoadError(
                    f"{layer.name}.{col.name}: not a number for "
                    f"{', '.join(map(str, ids[bad].head(5)))}"
                )
            if col.type == "int":
                frac = num.notna() & (num != np.floor(num.fillna(0)))
                if frac.any():
                    raise LayerLoadError(
                        f"{layer.name}.{col.name}: not a whole number for "
                        f"{', '.join(map(str, ids[frac].head(5)))}"
                    )
                out[col.name] = [None if pd.isna(v) else int(v) for v in num]
            else:
                out[col.name] = [None if pd.isna(v) else float(v) for v in num]
        elif col.type == "bool":
            out[col.name] = [
                None
                if v is None or (isinstance(v, float) and np.isnan(v))
                else str(v).strip().lower() in ("1", "true", "t", "yes", "y")
                for v in s
            ]
        else:
            out[col.name] = [
                None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in s
            ]
        if col.default is not None:
            out[col.name] = [col.default if v is None else v for v in out[col.name]]
        if col.required and out[col.name].isna().any():
            missing = ids[out[col.name].isna()].head(5)
            raise LayerLoadError(
                f"{layer.name}.{col.name} is required but empty for {', '.join(map(str, missing))}"
            )
    return out


def _conform(geom, target: str):
    """The geometry as the layer's type, or None when that would change its meaning."""
    if geom is None or geom.is_empty:
        return None
    if target == "Point":
        if isinstance(geom, Point):
            return geom
        if isinstance(geom, MultiPoint) and len(geom.geoms) == 1:
            return geom.geoms[0]
        return None
    if target == "LineString":
        if isinstance(geom, LineString):
            return geom
        lines = [g for g in getattr(geom, "geoms", []) if isinstance(g, LineString)]
        if lines:
            merged = linemerge(MultiLineString(lines)) if len(lines) > 1 else lines[0]
            if isinstance(merged, LineString):
                return merged
        return None
    if target in ("MultiPolygon", "Polygon"):
        if isinstance(geom, Polygon):
            return MultiPolygon([geom])
        if isinstance(geom, MultiPolygon):
            return geom
        polys = []
        for g in getattr(geom, "geoms", []):
            if isinstance(g, Polygon):
                polys.append(g)
            elif isinstance(g, MultiPolygon):
                polys.extend(g.geoms)
        return MultiPolygon(polys) if polys else None
    if target == "MultiLineString":
        if isinstance(geom, LineString):
            return MultiLineString([geom])
        return geom if isinstance(geom, MultiLineString) else None
    return geom


def prepare_layer_frame(
    layer: Layer,
    gdf: gpd.GeoDataFrame,
    *,
    assume_crs: str | None = None,
    repair: bool = True,
    bounds: tuple[float, float, float, float] | None = CHENGDU_BOUNDS,
) -> tuple[gpd.GeoDataFrame, LoadReport]:
    """The frame checked, in EPSG:4326 with the layer's columns; raises ``LayerLoadError``."""
    report = LoadReport(layer.name)
    if len(gdf) == 0:
        raise LayerLoadError(f"{layer.name}: the file has no features")
    gdf = _to_store_crs(layer, gdf, assume_crs, report)
    gdf = _map_columns(layer, gdf, report)
    ids = _checked_ids(layer, gdf)
    geoms = shapely.force_2d(gdf.geometry.to_numpy())
    null = np.array([g is None or g.is_empty for g in geoms])
    if null.any():
        raise LayerLoadError(
            f"{layer.name}: features without geometry: {', '.join(ids[null].head(5))}"
        )
    if bounds is not None:
        _check_extent(layer, geoms, bounds, report)
    out_geoms = _conformed_geometries(layer, geoms, ids, repair, report)
    out = gpd.GeoDataFrame(_coerce(layer, gdf, ids), geometry=out_geoms, crs=STORE_SRID)
    report.features = len(out)
    return out, report


def _to_store_crs(
    layer: Layer, gdf: gpd.GeoDataFrame, assume_crs: str | None, report: LoadReport
) -> gpd.GeoDataFrame:
    """The frame in EPSG:4326, from the CRS it declares or ``assume_crs`` when it has none."""
    if gdf.crs is None:
        if not assume_crs:
            raise LayerLoadError(
                f"{layer.name}: the file declares no CRS (a Shapefile without .prj?); "
                "pass --crs EPSG:xxxx if you know it"
            )
        gdf = gdf.set_crs(assume_crs)
    elif assume_crs and CRS.from_user_input(assume_crs) != gdf.crs:
        raise LayerLoadError(
            f"{layer.name}: the file declares {gdf.crs.to_string()} but --crs says {assume_crs}"
        )
    report.source_crs = gdf.crs.to_string()
    try:
        return gdf.to_crs(STORE_SRID)
    except Exception as exc:  # pyproj raises several types for impossible transforms
        raise LayerLoadError(
            f"{layer.name}: cannot transform from {report.source_crs} to EPSG:4326: {exc}"
        ) from exc


def _checked_ids(layer: Layer, gdf: gpd.GeoDataFrame) -> pd.Series:
    """The features' ids as text, once each, with every required column present."""
    id_col = layer.id_column
    if id_col not in gdf.columns:
        raise LayerLoadError(
            f"{layer.name}: no {id_col!r} column (have {', '.join(map(str, gdf.columns))})"
        )
    ids = gdf[id_col].astype(str)
    dup = ids[ids.duplicated()]
    if len(dup):
        raise LayerLoadError(f"{layer.name}: duplicate {id_col} {', '.join(dup.head(5))}")
    missing = [c.name for c in layer.columns if c.required and c.name not in gdf.columns]
    if missing:
        raise LayerLoadError(f"{layer.name}: required columns missing: {', '.join(missing)}")
    return ids


def _check_extent(
    layer: Layer, geoms: np.ndarray, bounds: tuple[float, float, float, float], report: LoadReport
) -> None:
    """Refuse data outside ``bounds`` [degrees]: the usual sign of a wrong CRS."""
    minx, miny, maxx, maxy = shapely.total_bounds(geoms)
    bx0, by0, bx1, by1 = bounds
    if not (bx0 <= minx and maxx <= bx1 and by0 <= miny and maxy <= by1):
        raise LayerLoadError(
            f"{layer.name}: after transforming from {report.source_crs} the features span "
            f"{minx:.4f},{miny:.4f} to {maxx:.4f},{maxy:.4f}, outside Chengdu "
            f"({bx0},{by0} to {bx1},{by1}); is the declared CRS right?"
        )


def _conformed_geometries(
    layer: Layer, geoms: np.ndarray, ids: pd.Series, repair: bool, report: LoadReport
) -> list:
    """Each geometry valid (repaired unless ``repair`` is off) and of the layer's type."""
    valid = shapely.is_valid(geoms)
    out_geoms = []
    for i, g in enumerate(geoms):
        if not valid[i]:
            if not repair:
                raise LayerLoadError(
                    f"{layer.name}: invalid geometry for {ids.iloc[i]}: "
                    f"{shapely.is_valid_reason(g)}"
                )
            g = shapely.make_valid(g)
            report.repaired.append(ids.iloc[i])
        c = _conform(g, layer.geometry_type)
        if c is None:
            reason = "" if valid[i] else f" after repair ({shapely.is_valid_reason(geoms[i])})"
            raise LayerLoadError(
                f"{layer.name}: geometry of {ids.iloc[i]} is a {g.geom_type}{reason}; "
                f"the layer needs {layer.geometry_type}"
            )
        out_geoms.append(c)
    return out_geoms


def load_layer_file(
    conn,  # psycopg.Connection
    path: Path,
    layer_name: str,
    *,
    sublayer: str | None = None,
    assume_crs: str | None = None,
    repair: bool = True,
    source: str | None = None,
    licence: str | None = None,
    demo: bool | None = False,
    classification: str | None = None,
) -> LoadReport:
    """Read, check and load one layer file; replaces the layer in one transaction.
    ``classification`` (public, internal, restricted) sets the layer's data class."""
    from gis.layers import get_layer
    from gis.postgis import write_layer

    try:
        layer = get_layer(layer_name)
    except KeyError as exc:
        raise LayerLoadError(str(exc.args[0])) from None
    if classification is not None and classification not in ("public", "internal", "restricted"):
        raise LayerLoadError(
            f"classification is public, internal or restricted, not {classification!r}"
        )
    if not layer.loadable:
        raise LayerLoadError(f"layer {layer_name} is derived or has its own loader; not loadable")
    gdf = read_layer_file(path, sublayer=sublayer)
    frame, report = prepare_layer_frame(layer, gdf, assume_crs=assume_crs, repair=repair)
    import psycopg

    from gis.dictionary import RuleError

    try:
        write_layer(
            conn,
            layer_name,
            frame,
            source=source or str(path.name),
            licence=licence,
            demo=demo,
            classification=classification,
        )
    except RuleError as exc:  # the data dictionary's rules, every broken one named
        raise LayerLoadError(str(exc)) from None
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
        raise LayerLoadError(f"{layer_name}: the database refused the data: {exc}") from exc
    return report
