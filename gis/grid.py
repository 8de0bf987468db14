"""H3 grid-governance cells clipped to the districts, with a DEMO population estimate (pure).

Chengdu has no open offline population grid, so population per cell is an estimate: a density
that decays with distance from Tianfu Square (urban core about 25,000 persons/km², falling over
about 6 km to a rural floor), scaled so that every resolution sums to the 2020 census resident
population (20,937,757). It is marked demo (``population_demo``) and in ``gis_layers``; a real
grid (e.g. WorldPop or a statistics bureau grid) replaces it through the same table.
"""

from __future__ import annotations

from collections.abc import Iterable

import geopandas as gpd
import h3
import numpy as np
from shapely.geometry import MultiPolygon, Polygon, mapping

from gis.demo import CENTRE_LONLAT
from gis.layers import METRIC_SRID, STORE_SRID

CHENGDU_POPULATION_2020 = 20_937_757
CORE_DENSITY_PER_KM2 = 25_000.0
DECAY_M = 6_000.0
RURAL_DENSITY_PER_KM2 = 350.0


def density_per_km2(distance_m: np.ndarray) -> np.ndarray:
    """Unscaled demo density [persons/km²] at a distance [m] from the centre."""
    return CORE_DENSITY_PER_KM2 * np.exp(-distance_m / DECAY_M) + RURAL_DENSITY_PER_KM2


def _cell_polygon(cell: str) -> Polygon:
    return Polygon([(lng, lat) for lat, lng in h3.cell_to_boundary(cell)])


def build_grid_cells(
    districts: gpd.GeoDataFrame,
    resolutions: Iterable[int] = (7, 8),
    *,
    total_population: int = CHENGDU_POPULATION_2020,
) -> gpd.GeoDataFrame:
    """One row per (H3 cell, district) piece: cells overlapping a district, clipped to it.

    ``districts`` needs ``adcode`` and polygon geometry in EPSG:4326.
    """
    rows: list[dict] = []
    for res in resolutions:
        for adcode, geom in zip(districts["adcode"], districts.geometry, strict=True):
            shape = h3.geo_to_h3shape(mapping(geom))
            cells = h3.h3shape_to_cells_experimental(shape, res, contain="overlap")
            for cell in cells:
                piece = _cell_polygon(cell).intersection(geom)
                if piece.is_empty or piece.area == 0:
                    continue
                if isinstance(piece, Polygon):
                    piece = MultiPolygon([piece])
                elif not isinstance(piece, MultiPolygon):
                    polys = [g for g in getattr(piece, "geoms", []) if isinstance(g, Polygon)]
                    if not polys:
                        continue
                    piece = MultiPolygon(polys)
                rows.append(
                    {
                        "h3": cell,
                        "resolution": res,
                        "district_adcode": int(adcode),
                        "geometry": piece,
                    }
                )
    gdf = gpd.GeoDataFrame(rows, geometry="geometry", crs=STORE_SRID)
    metric = gdf.to_crs(METRIC_SRID)
    area_m2 = metric.geometry.area.to_numpy()
    centre = gpd.GeoSeries.from_xy([CENTRE_LONLAT[0]], [CENTRE_LONLAT[1]], crs=STORE_SRID)
    c = centre.to_crs(METRIC_SRID).iloc[0]
    dist = metric.geometry.centroid.distance(c).to_numpy()
    raw = density_per_km2(dist) * area_m2 / 1e6
    pop = np.zeros(len(gdf))
    for res in set(gdf["resolution"]):
        mask = (gdf["resolution"] == res).to_numpy()
        pop[mask] = raw[mask] * total_population / raw[mask].sum()
    gdf["population"] = np.floor(pop + 0.5).astype(int)
    gdf["population_demo"] = True
    gdf["area_m2"] = np.round(area_m2, 1)
    return gdf
