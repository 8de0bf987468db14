"""EPANET models (wntr) to the water network layers (pure: a model in, two GeoDataFrames out).

Utilities exchange networks as EPANET ``.inp`` files. Their coordinates are either projected
(metres in a known CRS) or abstract (the example networks). With ``origin`` the model is placed
with the centre of its extent on that point, scaled by ``scale_m`` metres per model unit (by
default the median ratio of pipe length to straight-line distance between its ends, which turns
an abstract drawing into a plausible layout); without it, coordinates are taken to be in ``crs``.
wntr converts to SI units on reading: lengths [m], diameters [m], demands [m³/s].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
from pyproj import CRS, Transformer
from shapely.geometry import LineString, Point

from gis.layers import STORE_SRID

LITRES_PER_CUSTOMER_DAY = 500.0  # household water use [L/day] to estimate service connections


def read_epanet(path: Path):  # -> wntr.network.WaterNetworkModel
    """Read an EPANET .inp file (wntr)."""
    import wntr

    return wntr.network.WaterNetworkModel(str(path))


def auto_scale(wn) -> float:
    """Median pipe length over straight distance between its end coordinates [m per unit]."""
    ratios = []
    for _, pipe in wn.pipes():
        (x1, y1), (x2, y2) = pipe.start_node.coordinates, pipe.end_node.coordinates
        d = math.hypot(x2 - x1, y2 - y1)
        if d > 0 and pipe.length > 0:
            ratios.append(pipe.length / d)
    return float(np.median(ratios)) if ratios else 1.0


def epanet_to_layers(
    wn,
    *,
    crs: str = "EPSG:4544",
    origin: tuple[float, float] | None = None,
    scale_m: float | None = None,
    id_prefix: str = "",
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(water_nodes, water_pipes) frames in EPSG:4326 from a wntr model."""
    target = CRS.from_user_input(crs)
    if not target.is_projected and origin is not None:
        raise ValueError(f"{crs} is not projected: an origin needs a CRS in metres (EPSG:4544)")
    place = placement(wn, target, origin, scale_m)
    nodes = [_node_row(f"{id_prefix}{name}", node, place) for name, node in wn.nodes()]
    links = [_link_row(id_prefix, name, link, place) for name, link in wn.links()]
    n = gpd.GeoDataFrame(nodes, geometry="geometry", crs=target).to_crs(STORE_SRID)
    p = gpd.GeoDataFrame(links, geometry="geometry", crs=target).to_crs(STORE_SRID)
    return n, p


_Place = Callable[[float, float], tuple[float, float]]


def placement(wn, target: CRS, origin: tuple[float, float] | None, scale_m: float | None) -> _Place:
    """Model coordinates to ``target``: as they are, or centred on ``origin`` (lon, lat) and
    scaled by ``scale_m`` [m per model unit; default ``auto_scale``]."""
    if origin is None:
        return lambda x, y: (x, y)
    xs = np.array([node.coordinates[0] for _, node in wn.nodes()])
    ys = np.array([node.coordinates[1] for _, node in wn.nodes()])
    mx, my = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    scale = scale_m if scale_m is not None else auto_scale(wn)
    ox, oy = Transformer.from_crs(4326, target, always_xy=True).transform(*origin)
    return lambda x, y: (ox + (x - mx) * scale, oy + (y - my) * scale)


_NODE_KINDS = {"Junction": "junction", "Tank": "tank", "Reservoir": "reservoir"}


def _node_row(node_id: str, node, place: _Place) -> dict[str, Any]:
    """A water_nodes row: junction demands [m³/s] to L/s and estimated customers; a reservoir's
    elevation is its head [m]."""
    kind = _NODE_KINDS[node.node_type]
    demand_lps = None
    customers = 0
    if kind == "junction":
        demand_lps = (node.base_demand or 0.0) * 1000.0
        customers = max(0, round(demand_lps * 86_400 / LITRES_PER_CUSTOMER_DAY))
        elevation = node.elevation
    elif kind == "tank":
        elevation = node.elevation
    else:
        elevation = getattr(node, "base_head", None)
    return {
        "node_id": node_id,
        "kind": kind,
        "elevation_m": elevation,
        "base_demand_lps": demand_lps,
        "customers": customers,
        "status": "open",
        "geometry": Point(place(*node.coordinates)),
    }


def _link_row(id_prefix: str, name: str, link, place: _Place) -> dict[str, Any]:
    """A water_pipes row: diameters [m] to mm; pumps and valves keep no length or roughness."""
    kind = {"Pipe": "pipe", "Pump": "pump"}.get(link.link_type, "valve")
    pts = [link.start_node.coordinates, *getattr(link, "vertices", []), link.end_node.coordinates]
    geom = LineString([place(*p) for p in pts])
    if geom.length == 0:  # coincident ends: a tiny offset keeps it a line
        x, y = geom.coords[0]
        geom = LineString([(x, y), (x + 0.01, y)])
    status = str(getattr(link, "initial_status", "Open")).lower()
    return {
        "pipe_id": f"{id_prefix}{name}",
        "from_node": f"{id_prefix}{link.start_node_name}",
        "to_node": f"{id_prefix}{link.end_node_name}",
        "link_kind": kind,
        "diameter_mm": link.diameter * 1000.0 if hasattr(link, "diameter") else None,
        "length_m": link.length if kind == "pipe" else None,
        "roughness": getattr(link, "roughness", None) if kind == "pipe" else None,
        "status": "closed" if "closed" in status else "open",
        "geometry": geom,
    }


def import_epanet(
    conn,  # psycopg.Connection
    path: Path,
    *,
    crs: str = "EPSG:4544",
    origin: tuple[float, float] | None = None,
    scale_m: float | None = None,
    demo: bool = False,
) -> dict[str, int]:
    """Replace the water layers with an EPANET model, in one transaction (see
    ``import_epanet_report``, which also names the demo sensors retired)."""
    counts, _ = import_epanet_report(conn, path, crs=crs, origin=origin, scale_m=scale_m, demo=demo)
    return counts


def import_epanet_report(
    conn,  # psycopg.Connection
    path: Path,
    *,
    crs: str = "EPSG:4544",
    origin: tuple[float, float] | None = None,
    scale_m: float | None = None,
    demo: bool = False,
) -> tuple[dict[str, int], list[str]]:
    """Replace the water layers with an EPANET model, in one transaction: (layer counts, the
    demo water sensors retired with the demo layers they sat on; docs/decisions/0056)."""
    from gis.layers import get_layer
    from gis.loading import LayerLoadError, prepare_layer_frame
    from gis.postgis import fetch_demo_water_sensors, retire_demo_water_sensors, write_layers

    try:
        wn = read_epanet(path)
    except Exception as exc:  # wntr raises ENxxx errors of several types for bad files
        raise LayerLoadError(f"{path}: not a readable EPANET model ({exc})") from exc
    nodes, links = epanet_to_layers(wn, crs=crs, origin=origin, scale_m=scale_m)
    frames = {}
    for name, gdf in (("water_nodes", nodes), ("water_pipes", links)):
        frames[name], _ = prepare_layer_frame(get_layer(name), gdf)

    source = (
        f"EPANET model {path.name} ({crs}"
        + (f", origin {origin[0]},{origin[1]}" if origin else "")
        + ")"
    )
    # one transaction: the demo's water sensors go with the demo layers they sat on, or neither
    with conn.transaction():
        demo_sensors = fetch_demo_water_sensors(conn)
        counts = write_layers(conn, frames, source=source, demo=demo)
        retired = retire_demo_water_sensors(conn, demo_sensors)
        write_model_source(conn, path)
    return counts, retired


_LAYER_VERSIONS = (
    "SELECT (SELECT version FROM gis_layers WHERE name = 'water_nodes'),"
    " (SELECT version FROM gis_layers WHERE name = 'water_pipes')"
)


def write_model_source(conn, path: Path) -> None:  # (psycopg.Connection, Path)
    """Keep the EPANET text behind the water layers just written (their versions with it):
    its pumps, valves, tanks, patterns and controls, which the layers do not hold."""
    versions = conn.execute(_LAYER_VERSIONS).fetchone()
    conn.execute(
        "INSERT INTO water_model_source (id, inp, file_name, nodes_version, pipes_version)"
        " VALUES (1, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET inp = EXCLUDED.inp,"
        " file_name = EXCLUDED.file_name, nodes_version = EXCLUDED.nodes_version,"
        " pipes_version = EXCLUDED.pipes_version, imported_at = now()",
        (path.read_text(encoding="utf-8", errors="replace"), path.name, *versions),
    )


def fetch_model_source(conn):  # (psycopg.Connection) -> wntr model | None
    """The imported EPANET model, while the water layers are still the ones it produced, with
    each node at its layer position (EPSG:4544 metres, as ``layers_to_wntr`` places them);
    None when there is none or a layer was reloaded since."""
    import tempfile

    row = conn.execute(
        "SELECT s.inp, s.file_name FROM water_model_source s"
        " WHERE s.nodes_version = (SELECT version FROM gis_layers WHERE name = 'water_nodes')"
        " AND s.pipes_version = (SELECT version FROM gis_layers WHERE name = 'water_pipes')"
    ).fetchone()
    if row is None:
        return None
    with tempfile.TemporaryDirectory(prefix="cityops-model-") as tmp:
        path = Path(tmp) / "model.inp"
        path.write_text(row[0], encoding="utf-8")
        wn = read_epanet(path)
    placed = {
        r[0]: (float(r[1]), float(r[2]))
        for r in conn.execute("SELECT node_id, ST_X(geom_m), ST_Y(geom_m) FROM water_nodes")
    }
    for name in wn.node_name_list:
        if name not in placed:
            return None  # the layers and the text disagree: the layers win
        wn.get_node(name).coordinates = placed[name]
    for name in wn.link_name_list:
        wn.get_link(name).vertices = []  # model units; the layers have the drawn geometry
    return wn


def model_to_lonlat(
    wn,
    *,
    crs: str = "EPSG:4544",
    origin: tuple[float, float] | None = None,
    scale_m: float | None = None,
) -> _Place:
    """Model coordinates to (lon, lat) exactly as ``epanet_to_layers`` places the model: other
    files drawn in the model's coordinates (a utility's sensors) land on its pipes."""
    target = CRS.from_user_input(crs)
    if not target.is_projected and origin is not None:
        raise ValueError(f"{crs} is not projected: an origin needs a CRS in metres (EPSG:4544)")
    place = placement(wn, target, origin, scale_m)
    to_lonlat = Transformer.from_crs(target, STORE_SRID, always_xy=True)
    return lambda x, y: to_lonlat.transform(*place(x, y))


# --- the other way: water layers to an EPANET model (for the simulators) ---------------------

TANK_DEFAULTS = {"init_level": 4.0, "min_level": 0.5, "max_level": 8.0, "diameter": 25.0}  # [m]
RESERVOIR_HEAD_ABOVE_GROUND_M = 40.0  # a treatment works' clear-water pumps, when no head is known


def _known(v) -> bool:
    return v is not None and v == v  # not None, not NaN


def _fill_elevations(nodes: gpd.GeoDataFrame, pipes: gpd.GeoDataFrame) -> dict[str, float]:
    """Elevations [m] per node; a node without one (GIS valves and hydrants often have none)
    takes the mean of its neighbours', repeated until nothing changes."""
    elev = {
        n: float(e)
        for n, e in zip(nodes["node_id"], nodes["elevation_m"], strict=True)
        if _known(e)
    }
    nbrs: dict[str, list[str]] = {}
    for a, b in zip(pipes["from_node"], pipes["to_node"], strict=True):
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    missing = [n for n in nodes["node_id"] if n not in elev]
    while missing:
        filled = {}
        for n in missing:
            known = [elev[m] for m in nbrs.get(n, []) if m in elev]
            if known:
                filled[n] = sum(known) / len(known)
        if not filled:
            break
        elev.update(filled)
        missing = [n for n in missing if n not in filled]
    return elev


def layers_to_wntr(nodes: gpd.GeoDataFrame, pipes: gpd.GeoDataFrame, *, crs: str = "EPSG:4544"):
    """A wntr WaterNetworkModel from the water layers (EPSG:4326 frames as stored).

    Junctions, hydrants and valve nodes become junctions (valve nodes with no demand: the model
    has no place for a gate valve at a node, and closing one is done on its pipes); tanks and
    reservoirs keep their elevation (``elevation_m`` is the reservoir's head, as EPANET import
    stores it; a reservoir without one gets 40 m); nodes without an elevation take their
    neighbours' mean. Pump and valve links carry no curve
    or setting in the layers and become short open pipes. Coordinates are in ``crs`` (metres).
    Units: lengths [m], diameters [mm] -> [m], demands [L/s] -> [m³/s].
    """
    import wntr

    wn = wntr.network.WaterNetworkModel()
    wn.options.hydraulic.headloss = "H-W"
    n_m = nodes.to_crs(crs)
    elevations = _fill_elevations(nodes, pipes)
    for r in n_m.itertuples():
        xy = (float(r.geometry.x), float(r.geometry.y))
        elev = elevations.get(r.node_id, 0.0)
        if r.kind == "reservoir":
            wn.add_reservoir(
                r.node_id, base_head=elev or RESERVOIR_HEAD_ABOVE_GROUND_M, coordinates=xy
            )
        elif r.kind == "tank":
            wn.add_tank(r.node_id, elevation=elev, coordinates=xy, **TANK_DEFAULTS)
        else:
            demand = r.base_demand_lps if r.kind == "junction" else 0.0
            demand = float(demand) / 1000.0 if _known(demand) else 0.0
            wn.add_junction(r.node_id, base_demand=demand, elevation=elev, coordinates=xy)
    p_m = pipes.to_crs(crs)
    for r in p_m.itertuples():
        length = r.length_m if _known(r.length_m) else r.geometry.length
        dia = r.diameter_mm if _known(r.diameter_mm) else 300.0
        rough = r.roughness if _known(r.roughness) else 120.0
        if r.link_kind != "pipe":
            length, dia = max(float(length or 0.0), 1.0), max(float(dia), 300.0)
        wn.add_pipe(
            r.pipe_id,
            r.from_node,
            r.to_node,
            length=max(float(length), 0.1),
            diameter=float(dia) / 1000.0,
            roughness=float(rough),
            initial_status="CLOSED" if r.status == "closed" else "OPEN",
        )
        vertices = list(r.geometry.coords)[1:-1]
        if vertices:
            wn.get_link(r.pipe_id).vertices = [(float(x), float(y)) for x, y in vertices]
    return wn


def fetch_water_model(conn):  # (psycopg.Connection) -> wntr.network.WaterNetworkModel
    """The hydraulic model of the water layers: the imported EPANET model itself while the
    layers are the ones it produced (``fetch_model_source``: pumps, valves, tanks, patterns and
    controls as the utility drew them), else the layers as a wntr model (``layers_to_wntr``)."""
    import shapely

    stored = fetch_model_source(conn)
    if stored is not None:
        return stored

    def frame(table: str, cols: str) -> gpd.GeoDataFrame:
        cur = conn.execute(f"SELECT {cols}, ST_AsBinary(geom) FROM {table} ORDER BY 1")  # noqa: S608 - constants
        names = [d.name for d in cur.description][:-1]
        rows = cur.fetchall()
        return gpd.GeoDataFrame(
            {n: [r[i] for r in rows] for i, n in enumerate(names)},
            geometry=shapely.from_wkb([bytes(r[-1]) for r in rows]),
            crs=STORE_SRID,
        )

    nodes = frame("water_nodes", "node_id, kind, elevation_m, base_demand_lps")
    pipes = frame(
        "water_pipes",
        "pipe_id, from_node, to_node, link_kind, diameter_mm, length_m, roughness, status",
    )
    return layers_to_wntr(nodes, pipes)


# --- limits from the model: each sensor's band from the model's own simulated day ----------

KPA_PER_M_HEAD = 9.80665  # fresh water: 1 m of head is 9.80665 kPa
# the least margin round a simulated range [canonical unit]: a model is not the network. For
# pressure 2 m of head: the WRc code of practice for network analysis (1989) asks a calibrated
# model to match every field pressure within 2 m, and an uncalibrated one does no better (with
# 1 m, the unseen-network rehearsal raised four loggers 0.6-3 kPa under their band before any
# leak). For flow and level: a model that barely moves must not alarm on sensor noise.
MODEL_BAND_FLOOR = {"pressure": 2.0 * 9.80665, "flow": 0.5, "level": 0.2}
MODEL_QUANTITIES = tuple(MODEL_BAND_FLOOR)
# the least margin as a share of the largest simulated value: a flow meter's error is relative
# (1-2 % of the reading for a magnetic meter), and a model is not the network to the per cent
MODEL_BAND_SHARE = {"flow": 0.05}
PDD_REQUIRED_M = 15.0  # [m] pressure for a junction's full demand (as simulators/water.py)
TWO_WAY_LPS = 0.5  # [L/s] a link's flow beyond this both ways over the day: a two-way link


def simulate_day(
    wn, pattern: list[float] | tuple[float, ...], *, step_s: int = 3600, days: int = 1
):
    """Pressures [m], link flows [m³/s] over ``days`` days of ``wn`` with every junction's
    demand that has no pattern of its own following ``pattern`` (hourly multipliers: the layers
    keep no patterns; an imported model's stay), pressure-driven, on a copy.
    Returns (pressure frame, flowrate frame), one row per step."""
    import copy

    from gis.hydraulics import run_hydraulics

    m = copy.deepcopy(wn)
    m.add_pattern("cityops-day", list(pattern))
    for _, j in m.junctions():
        for d in j.demand_timeseries_list:
            if d.pattern_name is None:  # an imported model's own patterns stay
                d.pattern_name = "cityops-day"
    if not m.options.time.pattern_timestep:
        m.options.time.pattern_timestep = 3600
    if m.options.hydraulic.demand_model != "PDD":
        # demand-driven, a model whose pumps cannot keep up draws a vacuum that no network
        # has; pressure-driven (what the simulators run), a junction short of pressure takes
        # less: full demand from 15 m, none at 0 m
        m.options.hydraulic.demand_model = "PDD"
        m.options.hydraulic.required_pressure = PDD_REQUIRED_M
        m.options.hydraulic.minimum_pressure = 0.0
    try:
        hyd = run_hydraulics(m, duration_s=days * 24 * 3600 - step_s, step_s=step_s)
    except Exception as exc:  # EPANET reports a model it cannot solve in several error types
        raise ValueError(f"the water model does not solve over {days} day(s) ({exc})") from exc
    return hyd.pressure, hyd.flowrate


def modelled_range(
    pressure, flowrate, wn, quantity: str, asset_id: str
) -> tuple[float, float] | None:
    """The simulated (min, max) [canonical unit] of ``quantity`` at a network asset: a node's
    pressure or level (a tank's pressure is its level), a link's flow (signed as EPANET signs
    it, from the link's start node to its end node, which is how a meter placed on the link is
    read unless ``flip_flow_bands`` finds it fitted the other way; a link whose flow reverses
    over the day: -max..max) or the pressures at its two ends. None: nothing modelled."""
    if asset_id in wn.node_name_list and quantity in ("pressure", "level"):
        s = pressure[asset_id]
        scale = KPA_PER_M_HEAD if quantity == "pressure" else 1.0
        if quantity == "level" and asset_id not in wn.tank_name_list:
            return None
        return float(s.min()) * scale, float(s.max()) * scale
    if asset_id in wn.link_name_list:
        link = wn.get_link(asset_id)
        if quantity == "flow":
            signed = flowrate[asset_id] * 1000.0  # m³/s -> L/s
            if signed.min() < -TWO_WAY_LPS and signed.max() > TWO_WAY_LPS:
                # a tank's link fills and empties: its meter reads both signs, whichever way it
                # was fitted, so the band is symmetric round zero
                q = float(signed.abs().max())
                return -q, q
            return float(signed.min()), float(signed.max())
        if quantity == "pressure":
            ends = pressure[[link.start_node_name, link.end_node_name]]
            return float(ends.min().min()) * KPA_PER_M_HEAD, float(
                ends.max().max()
            ) * KPA_PER_M_HEAD
    return None


def model_band(
    quantity: str, lo: float, hi: float, *, margin: float = 0.25
) -> tuple[float, float, float]:
    """(alarm_low, alarm_high, deadband) round a simulated range: ``margin`` times its span on
    each side, at least ``MODEL_BAND_FLOOR`` and ``MODEL_BAND_SHARE`` of the largest value (a
    pump that runs at one speed all day has no span, and its meter reads within a few per cent
    of it); the deadband a quarter of that margin. A flow band may go below zero: a meter on a
    link that the model leaves idle reads its noise round zero, both signs."""
    if hi < lo:
        raise ValueError(f"empty range {lo}..{hi}")
    pad = max(
        margin * (hi - lo),
        MODEL_BAND_FLOOR[quantity],
        MODEL_BAND_SHARE.get(quantity, 0.0) * max(abs(lo), abs(hi)),
    )
    low = lo - pad
    if quantity == "level" and lo >= 0:
        low = max(low, 0.0)  # a tank's level has no negative alarm
    return low, hi + pad, pad / 4


def flip_flow_band(lo: float, hi: float, stored_median: float | None) -> tuple[float, float, bool]:
    """(lo, hi, flipped) of a one-way link's simulated flow, turned round when the meter's
    stored readings (their median) run the other way: the meter is fitted against the link's
    direction. A two-way band (symmetric) or a meter with no stored readings stays as it is."""
    one_way = lo >= -TWO_WAY_LPS or hi <= TWO_WAY_LPS
    if stored_median is None or not one_way or abs(stored_median) <= TWO_WAY_LPS:
        return lo, hi, False
    model_sign = 1.0 if hi + lo >= 0 else -1.0
    if stored_median * model_sign >= 0:
        return lo, hi, False
    return -hi, -lo, True
