"""The GIS water layers (``water_nodes``, ``water_pipes``; docs/gis.md) as an EPANET model.

Pure: rows in, ``.inp`` text out, coordinates in EPSG:4544 metres (the layers' ``geom_m``), so
a scenario uses the result with ``crs: EPSG:4544`` and its sensors sit on the layer's nodes.

Mapping: junctions, valves and hydrants become EPANET junctions (base demand
``base_demand_lps``, elevation ``elevation_m``); a reservoir's head is its elevation (the layer records the water level of
the treatment works' clear-water reservoir) plus ``source_head_m`` (pumping head, 0); a tank
is ``tank_diameter_m`` wide with its level between 0 and ``tank_max_level_m``, starting at
``tank_init_level_m``, its bottom at ``elevation_m``. Pipes keep diameter, length, roughness
(Hazen-Williams, default 120) and status; pump and valve links, which the layer stores without
curves or settings, become open pipes. Demands follow the daily demand pattern.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from simulators.profiles import WATER_DEMAND_PATTERN


# long: one pass writing every section of the EPANET file, in the file's own order
def water_layers_to_inp(
    nodes: Iterable[Mapping[str, Any]],
    pipes: Iterable[Mapping[str, Any]],
    *,
    source_head_m: float = 0.0,
    tank_diameter_m: float = 30.0,
    tank_init_level_m: float = 5.0,
    tank_max_level_m: float = 10.0,
    default_elevation_m: float = 500.0,
) -> str:
    """EPANET input (SI units) from layer rows: nodes need node_id, kind, x_m, y_m and may have
    elevation_m, base_demand_lps; pipes need pipe_id, from_node, to_node and may have
    diameter_mm, length_m, roughness, status."""
    junctions, reservoirs, tanks, coords = ["[JUNCTIONS]"], ["[RESERVOIRS]"], ["[TANKS]"], []
    known: set[str] = set()
    for n in nodes:
        nid = _id(n["node_id"])
        known.add(nid)
        elev = _num(n.get("elevation_m"), default_elevation_m)
        kind = n.get("kind", "junction")
        if kind == "reservoir":
            reservoirs.append(f"{nid} {elev + source_head_m:.3f}")
        elif kind == "tank":
            tanks.append(
                f"{nid} {elev:.3f} {tank_init_level_m} 0 {tank_max_level_m} {tank_diameter_m} 0"
            )
        else:
            demand = _num(n.get("base_demand_lps"), 0.0)
            junctions.append(f"{nid} {elev:.3f} {demand:.5f} diurnal")
        coords.append(f"{nid} {float(n['x_m']):.3f} {float(n['y_m']):.3f}")
    lines = ["[PIPES]"]
    for p in pipes:
        a, b = _id(p["from_node"]), _id(p["to_node"])
        if a not in known or b not in known:
            raise ValueError(f"pipe {p['pipe_id']} joins a node that is not in the layer")
        length = max(_num(p.get("length_m"), 1.0), 0.1)
        diameter = _num(p.get("diameter_mm"), 150.0)
        rough = _num(p.get("roughness"), 120.0)
        status = "Closed" if p.get("status") == "closed" else "Open"
        lines.append(
            f"{_id(p['pipe_id'])} {a} {b} {length:.2f} {diameter:.1f} {rough:.1f} 0 {status}"
        )
    return inp_text(
        "cityops water network from the GIS layers",
        [*junctions, *reservoirs, *tanks, *lines],
        ["[COORDINATES]", *coords],
    )


def inp_text(title: str, network: list[str], coordinates: list[str]) -> str:
    """An EPANET input file: ``network`` sections (junctions, sources, tanks, pipes), the city's
    diurnal demand pattern, a day at 5-minute hydraulic steps in L/s with Hazen-Williams head
    loss, and ``coordinates``."""
    pattern = " ".join(f"{v:.2f}" for v in WATER_DEMAND_PATTERN)
    return "\n".join(
        [
            "[TITLE]",
            title,
            *network,
            "[PATTERNS]",
            f"diurnal {pattern}",
            "[TIMES]",
            "Duration 24:00",
            "Hydraulic Timestep 0:05",
            "Pattern Timestep 1:00",
            "[OPTIONS]",
            "Units LPS",
            "Headloss H-W",
            *coordinates,
            "[END]",
            "",
        ]
    )


def _num(value: Any, default: float) -> float:
    """A layer's number, or ``default`` where it is missing (None, NaN)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return default
    return x if math.isfinite(x) else default


def _id(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c == ";" for c in text) or len(text) > 31:
        raise ValueError(f"{text!r} cannot be an EPANET id (1-31 characters, no spaces or ';')")
    return text
