"""Placing example networks in Chengdu: metres in EPSG:4544, then longitude/latitude.

EPSG:4544 is CGCS2000 / 3-degree Gauss-Kruger CM 105E, the metric grid for Chengdu's centre
(104.06 E); CGCS2000 and WGS 84 differ by centimetres, so EPSG:4326 is used for output.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import Transformer

METRIC_CRS = "EPSG:4544"


@lru_cache(maxsize=4)
def _to_lonlat() -> Transformer:
    return Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)


@lru_cache(maxsize=4)
def _to_metric() -> Transformer:
    return Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)


def lonlat_to_metric(lon: float, lat: float) -> tuple[float, float]:
    x, y = _to_metric().transform(lon, lat)
    return float(x), float(y)


def metric_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = _to_lonlat().transform(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(lon), np.asarray(lat)


def place(
    xy: np.ndarray, *, scale_m: float, anchor_lon: float, anchor_lat: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale abstract or foreign metric coordinates ``xy`` (n x 2) by ``scale_m`` [m per unit],
    centre them on the anchor and return (lon, lat, metric xy in EPSG:4544)."""
    xy = np.asarray(xy, float)
    centre = (xy.min(axis=0) + xy.max(axis=0)) / 2.0
    ax, ay = lonlat_to_metric(anchor_lon, anchor_lat)
    metric = (xy - centre) * scale_m + np.array([ax, ay])
    lon, lat = metric_to_lonlat(metric[:, 0], metric[:, 1])
    return lon, lat, metric


def project(xy: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates already in a projected ``crs`` (a utility's own model): (lon, lat, metric
    xy in EPSG:4544)."""
    xy = np.asarray(xy, float)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xy[:, 0], xy[:, 1])
    x, y = _to_metric().transform(lon, lat)
    return np.asarray(lon), np.asarray(lat), np.column_stack([x, y])
