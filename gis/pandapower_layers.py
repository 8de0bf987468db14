"""A pandapower network as the GIS power layers (power_nodes, power_lines), as gis/epanet.py
does for an EPANET model: a scenario's simulated grid becomes the city's power network, so the
alert engine's enricher places power incidents on the grid the sensors are on.

The mapping (docs in /tmp/docs-power.md, to be merged as a decision record):

* node ids are the bus's *row* in ``net.bus`` (``"0"``, ``"1"``, ...): the simulator names a bus
  monitor's asset ``sim:power:<row>`` (simulators/world.py), so its sensors land on these nodes;
* the medium-voltage bus of each HV/MV transformer is a ``substation`` (the feeder's source; the
  110 kV side, its external grid and the transformer itself are not drawn: the layers are the
  10 kV distribution); a bus with loads is a ``transformer`` (an MV/LV station) with
  ``CUSTOMERS_PER_MW`` customers per MW of its loads' base power; any other bus a ``junction``;
* line ids are the line's index in ``net.line`` (the simulator's incident element, so the ground
  truth's element is a line id); straight from bus to bus (the simulator places an incident on a
  line half-way between its buses); ``length_m`` is the model's length;
* each line switch (``et == 'l'``: the load-break switches at a line's ends, the ties among
  them normally open) is a ``switch`` node (``normally_open`` when open in the model), drawn on
  its line ``SWITCH_AT`` of the way from its bus, with a link ``sw<switch>`` of ``length_m`` 0
  from the bus to it (a switch bay, no line: never a fault candidate, gis/faults.py); the line
  then runs between its switches. So the isolation of a line opens the switches at its ends
  and the restoration advice (gis.network ``compute_restoration``) finds the ties (on a tie
  line only the open switch is drawn: the advice looks for it next to what lost supply).
  Transformer switches are not drawn; a grid with bus-bus switches is refused (ValueError: not
  drawn yet);
* ``feeder_id`` is ``<substation>-<k>``, the lines reached from the substation's k-th line
  without passing a substation or an open switch.

Voltages are given as ``voltage_kv`` (10 kV: cityops reports the example grids as Chengdu 10 kV
distribution, simulators/power.py). Coordinates come from the caller (``bus_lonlat``, one row per
bus in ``net.bus`` order): the shell places the grid exactly as the simulator does.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import geopandas as gpd
import numpy as np
from shapely.geometry import LineString, Point

from gis.layers import STORE_SRID

CUSTOMERS_PER_MW = 400  # [households per MW of base load]: about 2.5 kW per household
MV_MAX_KV = 30.0  # buses up to this are distribution (the HV side is not drawn)
SWITCH_AT = 0.05  # a line switch is drawn this share of its line's length from its bus


def pandapower_to_layers(
    net: Any, bus_lonlat: np.ndarray, *, voltage_kv: float = 10.0
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(power_nodes, power_lines) frames in EPSG:4326 from a pandapower net (module docstring)."""
    lonlat = np.asarray(bus_lonlat, float)
    if lonlat.shape != (len(net.bus), 2):
        raise ValueError(f"bus_lonlat must be {len(net.bus)} x 2 (one row per bus)")
    if (net.switch.et == "b").any():
        raise ValueError("bus-bus switches are not drawn yet: only line switches (et 'l')")
    pos = {int(b): i for i, b in enumerate(net.bus.index)}
    mv = {int(b) for b in net.bus.index if float(net.bus.vn_kv.at[b]) <= MV_MAX_KV}
    subs = {int(b) for b in net.trafo.lv_bus if int(b) in mv}
    load_mw = net.load[net.load.in_service].groupby("bus").p_mw.sum()
    names = {int(net.trafo.lv_bus.at[t]): str(net.trafo.name.at[t]) for t in net.trafo.index}

    def xy(bus: int) -> tuple[float, float]:
        return float(lonlat[pos[bus], 0]), float(lonlat[pos[bus], 1])

    nodes: list[dict[str, Any]] = []
    for b in sorted(mv, key=lambda b: pos[b]):
        if b in subs:
            kind, customers = "substation", 0
        elif b in load_mw.index:
            kind, customers = "transformer", round(float(load_mw.at[b]) * CUSTOMERS_PER_MW)
        else:
            kind, customers = "junction", 0
        nodes.append(
            {
                "node_id": str(pos[b]),
                "kind": kind,
                "voltage_kv": voltage_kv,
                "normally_open": False,
                "feeder_id": None,
                "customers": customers,
                "name": names.get(b) or str(net.bus.name.at[b]),
                "geometry": Point(xy(b)),
            }
        )
    lines: list[dict[str, Any]] = []
    line_sw = net.switch[net.switch.et == "l"]
    # a tie line is switched by its tie: the closed switch at its other end is not drawn (the
    # restoration advice looks for a normally-open switch next to what lost supply)
    ties = {int(e) for e in line_sw.element[~line_sw.closed.astype(bool)]}
    switch_at = {
        (int(line_sw.element.at[s]), int(line_sw.bus.at[s])): int(s)
        for s in line_sw.index
        if int(line_sw.element.at[s]) not in ties or not bool(line_sw.closed.at[s])
    }
    for li in net.line.index:
        a, z = int(net.line.from_bus.at[li]), int(net.line.to_bus.at[li])
        if a not in mv or z not in mv:
            continue
        ends = [str(pos[a]), str(pos[z])]
        for k, (bus, other) in enumerate(((a, z), (z, a))):
            s = switch_at.get((int(li), bus))
            if s is None:
                continue
            (x0, y0), (x1, y1) = xy(bus), xy(other)
            at = (x0 + SWITCH_AT * (x1 - x0), y0 + SWITCH_AT * (y1 - y0))
            sid = f"sw{s}"
            nodes.append(
                {
                    "node_id": sid,
                    "kind": "switch",
                    "voltage_kv": voltage_kv,
                    "normally_open": not bool(net.switch.closed.at[s]),
                    "feeder_id": None,
                    "customers": 0,
                    "name": str(net.switch.name.at[s]),
                    "geometry": Point(at),
                }
            )
            lines.append(_line(sid, str(pos[bus]), sid, LineString([xy(bus), at]), voltage_kv, 0.0))
            ends[k] = sid
        length_m = float(net.line.length_km.at[li]) * 1000.0
        row = _line(str(li), ends[0], ends[1], LineString([xy(a), xy(z)]), voltage_kv, length_m)
        row["construction"] = "overhead" if str(net.line.type.at[li]) == "ol" else "cable"
        row["conductor"] = str(net.line.std_type.at[li])
        row["status"] = "in_service" if bool(net.line.in_service.at[li]) else "out_of_service"
        lines.append(row)
    _assign_feeders(nodes, lines)
    n = gpd.GeoDataFrame(nodes, geometry="geometry", crs=STORE_SRID)
    p = gpd.GeoDataFrame(lines, geometry="geometry", crs=STORE_SRID)
    return n, p


def _line(
    line_id: str, a: str, z: str, geom: LineString, voltage_kv: float, length_m: float | None
) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "from_node": a,
        "to_node": z,
        "voltage_kv": voltage_kv,
        "feeder_id": None,
        "construction": "cable",
        "conductor": None,
        "length_m": length_m,
        "status": "in_service",
        "geometry": geom,
    }


def _assign_feeders(nodes: list[dict[str, Any]], lines: list[dict[str, Any]]) -> None:
    """``feeder_id`` of lines and nodes: per substation line, what it reaches without passing a
    substation or an open switch (a line between two feeders' open switch keeps the first)."""
    kind = {n["node_id"]: n for n in nodes}
    at: dict[str, list[dict[str, Any]]] = {}
    for row in lines:
        at.setdefault(row["from_node"], []).append(row)
        at.setdefault(row["to_node"], []).append(row)
    stops = {k for k, n in kind.items() if n["kind"] == "substation" or n["normally_open"]}
    for sub in sorted((k for k, n in kind.items() if n["kind"] == "substation"), key=_natural):
        for k, first in enumerate(sorted(at.get(sub, []), key=lambda r: _natural(r["line_id"]))):
            if first["feeder_id"] is not None:
                continue
            fid = f"{sub}-{k + 1}"
            queue = deque([first])
            while queue:
                row = queue.popleft()
                if row["feeder_id"] is not None:
                    continue
                row["feeder_id"] = fid
                for end in (row["from_node"], row["to_node"]):
                    if end in stops:
                        continue
                    if kind.get(end, {}).get("feeder_id") is None and end in kind:
                        kind[end]["feeder_id"] = fid
                    queue.extend(r for r in at.get(end, []) if r["feeder_id"] is None)


def _natural(s: str) -> tuple[int, str]:
    return (int(s), "") if s.isdigit() else (1 << 30, s)


def import_pandapower(
    conn: Any,  # psycopg.Connection
    net: Any,
    bus_lonlat: np.ndarray,
    *,
    source: str,
    voltage_kv: float = 10.0,
) -> dict[str, int]:
    """Replace the power layers with a pandapower net in one transaction (feeders refreshed by
    ``write_layers``); returns the layer counts."""
    from gis.layers import get_layer
    from gis.loading import prepare_layer_frame
    from gis.postgis import write_layers

    nodes, lines = pandapower_to_layers(net, bus_lonlat, voltage_kv=voltage_kv)
    frames = {}
    for name, gdf in (("power_nodes", nodes), ("power_lines", lines)):
        frames[name], _ = prepare_layer_frame(get_layer(name), gdf)
    with conn.transaction():
        return write_layers(conn, frames, source=source)
