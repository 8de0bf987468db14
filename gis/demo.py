"""A deterministic demo city network in central Chengdu (pure: numbers in, GeoDataFrames out).

Nothing here is real infrastructure. Every layer it produces is marked demo in ``gis_layers``
and goes into the database through the same loader as a utility's real data
(``gis.postgis.write_layer``). The layout is built in EPSG:4544 metres around Tianfu Square and
served in EPSG:4326.

- water: a looped grid of mains (``spacing_m`` apart) with trunk mains every 8th street,
  gate valves near a third of the junctions, hydrants on laterals, a treatment-works reservoir in
  the west and a tank in the east;
- gas: a coarser medium-pressure grid fed by two gate stations, with regulators and valves;
- power: 110/10 kV substations, each with radial 10 kV feeders (trunk, laterals, distribution
  transformers), sectionalising switches, and normally-open ties between neighbouring feeders;
- facilities: hospitals, schools, fire stations and shelters with demo names.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
from pyproj import Transformer
from shapely.geometry import LineString, Point

from gis.layers import METRIC_SRID, STORE_SRID

CENTRE_LONLAT = (104.0657, 30.6598)  # Tianfu Square


@dataclass(frozen=True, slots=True)
class DemoConfig:
    grid_n: int = 20  # water junctions per side (60 gives > 10,000 pipes)
    spacing_m: float = 250.0
    seed: int = 4
    substations: int = 3
    feeders_per_substation: int = 6
    feeder_length: int = 16  # trunk poles per feeder
    hospitals: int = 6
    schools: int = 30
    fire_stations: int = 5
    shelters: int = 10


def _centre_m() -> tuple[float, float]:
    t = Transformer.from_crs(STORE_SRID, METRIC_SRID, always_xy=True)
    return t.transform(*CENTRE_LONLAT)


class _Builder:
    """Collects nodes and links in metres; turns them into GeoDataFrames in EPSG:4326."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []
        self.xy: dict[str, tuple[float, float]] = {}
        self.props: dict[str, dict[str, Any]] = {}  # node id -> its row
        self._numbers: dict[str, int] = {}

    def next_id(self, prefix: str, digits: int) -> str:
        """The next id of a series: ``WP000001``, ``WP000002`` ..."""
        n = self._numbers[prefix] = self._numbers.get(prefix, 0) + 1
        return f"{prefix}{n:0{digits}d}"

    def node(self, node_id: str, x: float, y: float, **props: Any) -> str:
        self.xy[node_id] = (x, y)
        self.props[node_id] = row = {"node_id": node_id, "geometry": Point(x, y), **props}
        self.nodes.append(row)
        return node_id

    def along(self, a: str, z: str, t: float) -> tuple[float, float]:
        """The point at fraction ``t`` of the way from node ``a`` to node ``z`` [m]."""
        (xa, ya), (xz, yz) = self.xy[a], self.xy[z]
        return xa + t * (xz - xa), ya + t * (yz - ya)

    def midpoint(self, a: str, z: str) -> tuple[float, float]:
        """Half way between two nodes [m], as (a + z) / 2: the demo's numbers depend on it."""
        (xa, ya), (xz, yz) = self.xy[a], self.xy[z]
        return (xa + xz) / 2, (ya + yz) / 2

    def link(self, id_field: str, link_id: str, a: str, z: str, **props: Any) -> None:
        line = LineString([self.xy[a], self.xy[z]])
        self.links.append(
            {
                id_field: link_id,
                "from_node": a,
                "to_node": z,
                "length_m": round(line.length, 2),
                "geometry": line,
                **props,
            }
        )

    def frames(self) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
        nodes = gpd.GeoDataFrame(self.nodes, geometry="geometry", crs=METRIC_SRID)
        links = gpd.GeoDataFrame(self.links, geometry="geometry", crs=METRIC_SRID)
        return nodes.to_crs(STORE_SRID), links.to_crs(STORE_SRID)


@dataclass(frozen=True, slots=True)
class _Grid:
    """A square street grid of ``n`` x ``n`` crossings ``spacing_m`` apart, centred on
    (``cx``, ``cy``) in EPSG:4544 metres."""

    n: int
    spacing_m: float
    cx: float
    cy: float

    @classmethod
    def round_tianfu_square(cls, n: int, spacing_m: float) -> _Grid:
        return cls(n, spacing_m, *_centre_m())

    @property
    def half(self) -> float:
        """From the centre to the outermost crossings [m]."""
        return (self.n - 1) * self.spacing_m / 2

    def crossing(self, i: int, j: int) -> tuple[float, float]:
        return self.cx - self.half + i * self.spacing_m, self.cy - self.half + j * self.spacing_m

    def streets(self) -> Iterator[tuple[tuple[int, int], tuple[int, int], int]]:
        """(crossing, the next crossing east or north, the street's line number) per block."""
        for i in range(self.n):
            for j in range(self.n):
                for di, dj, line in ((1, 0, j), (0, 1, i)):
                    if i + di < self.n and j + dj < self.n:
                        yield (i, j), (i + di, j + dj), line


def _material(year: int, rng: np.random.Generator) -> str:
    if year < 1990:
        return "cast_iron"
    if year < 2005:
        return str(rng.choice(["ductile_iron", "steel", "prestressed_concrete"]))
    return str(rng.choice(["ductile_iron", "pe", "steel"], p=[0.6, 0.3, 0.1]))


def build_water(cfg: DemoConfig) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Water mains on a looped street grid with gate valves, hydrants, a reservoir and a tank."""
    rng = np.random.default_rng(cfg.seed)
    grid = _Grid.round_tianfu_square(cfg.grid_n, cfg.spacing_m)
    b = _Builder()
    junctions = _water_junctions(b, grid, rng)
    _water_mains(b, grid, junctions, rng)
    _water_hydrants(b, junctions)
    _water_sources(b, grid, junctions)
    return b.frames()


def _water_pipe(b: _Builder, a: str, z: str, **props: Any) -> None:
    b.link("pipe_id", b.next_id("WP", 6), a, z, link_kind="pipe", **props, status="open")


def _water_junctions(
    b: _Builder, grid: _Grid, rng: np.random.Generator
) -> dict[tuple[int, int], str]:
    """A junction at every crossing, jittered by up to 25 m; more customers near the centre."""
    junctions = {}
    for i in range(grid.n):
        for j in range(grid.n):
            x0, y0 = grid.crossing(i, j)
            x, y = x0 + rng.uniform(-25, 25), y0 + rng.uniform(-25, 25)
            r = math.hypot(x - grid.cx, y - grid.cy)
            customers = int(20 + 120 * math.exp(-r / 3000) + rng.integers(0, 20))
            junctions[i, j] = b.node(
                f"WJ{i:03d}{j:03d}",
                x,
                y,
                kind="junction",
                elevation_m=round(500 - 0.002 * (y - grid.cy) + rng.uniform(-1, 1), 2),
                customers=customers,
                base_demand_lps=round(customers * 0.5 / 86.4, 4),
                status="open",
            )
    return junctions


def _water_mains(
    b: _Builder, grid: _Grid, junctions: dict[tuple[int, int], str], rng: np.random.Generator
) -> None:
    """A main along every block, older towards the edge; a gate valve near the start of 80 %."""
    rmax = math.hypot(grid.half, grid.half)

    def main(a: str, z: str, line: int, r: float) -> None:
        year = int(np.clip(1958 + 62 * (r / rmax) + rng.normal(0, 8), 1955, 2024))
        trunk = line % 8 == 0
        dia = 600.0 if trunk else (300.0 if line % 4 == 0 else float(rng.choice([150.0, 200.0])))
        _water_pipe(
            b,
            a,
            z,
            material=_material(year, rng),
            diameter_mm=dia,
            install_year=year,
            pressure_class="PN16" if dia > 300 else "PN10",
            roughness=100.0 if year < 1990 else 130.0,
        )

    for start, end, line in grid.streets():
        a, z = junctions[start], junctions[end]
        xm, ym = b.midpoint(a, z)
        r = math.hypot(xm - grid.cx, ym - grid.cy)
        if rng.random() < 0.8:
            # valves and hydrants take their ground level from the junctions beside them
            ea, ez = b.props[a]["elevation_m"], b.props[z]["elevation_m"]
            v = b.node(
                b.next_id("WV", 6),
                *b.along(a, z, 0.12),
                kind="valve",
                customers=0,
                status="open",
                elevation_m=round(ea + 0.12 * (ez - ea), 2),
            )
            main(a, v, line, r)
            main(v, z, line, r)
        else:
            main(a, z, line, r)


def _water_hydrants(b: _Builder, junctions: dict[tuple[int, int], str]) -> None:
    """A hydrant on a short lateral at every fourth junction."""
    for (i, j), node in junctions.items():
        if (i + 2 * j) % 4 == 0:
            x, y = b.xy[node]
            h = b.node(
                b.next_id("WH", 6),
                x + 15,
                y + 12,
                kind="hydrant",
                customers=0,
                status="open",
                elevation_m=b.props[node]["elevation_m"],
            )
            _water_pipe(
                b,
                node,
                h,
                material="ductile_iron",
                diameter_mm=100.0,
                install_year=2010,
                pressure_class="PN10",
                roughness=130.0,
            )


def _water_sources(b: _Builder, grid: _Grid, junctions: dict[tuple[int, int], str]) -> None:
    """A treatment works west of the grid and a tank east of it, each on a trunk main."""
    n, half = grid.n, grid.half
    mid = (n // 8) * 8 if n > 8 else n // 2
    y = grid.cy - half + mid * grid.spacing_m
    for sid, kind, x, target in (
        ("WR001", "reservoir", grid.cx - half - 1500, junctions[0, mid]),
        ("WT001", "tank", grid.cx + half + 800, junctions[n - 1, mid]),
    ):
        b.node(sid, x, y, kind=kind, customers=0, status="open", elevation_m=540.0)
        _water_pipe(
            b,
            sid,
            target,
            material="steel",
            diameter_mm=1000.0,
            install_year=2008,
            pressure_class="PN16",
            roughness=140.0,
        )


def build_gas(cfg: DemoConfig) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A medium-pressure grid at twice the water spacing, fed by two gate stations."""
    rng = np.random.default_rng(cfg.seed + 1)
    grid = _Grid.round_tianfu_square(max(3, cfg.grid_n // 2), cfg.spacing_m * 2)
    b = _Builder()
    junctions = _gas_junctions(b, grid, rng)
    _gas_pipes(b, grid, junctions, rng)
    for sid, (x, y), target in (
        ("GS001", (grid.cx - grid.half - 900, grid.cy - grid.half - 900), junctions[0, 0]),
        (
            "GS002",
            (grid.cx + grid.half + 900, grid.cy + grid.half + 900),
            junctions[grid.n - 1, grid.n - 1],
        ),
    ):
        b.node(sid, x, y, kind="source", pressure_class="sub_high_b", customers=0, status="open")
        b.link(
            "pipe_id",
            b.next_id("GP", 6),
            sid,
            target,
            material="steel",
            diameter_mm=400.0,
            install_year=2006,
            pressure_class="sub_high_b",
            status="open",
        )
    return b.frames()


def _gas_junctions(
    b: _Builder, grid: _Grid, rng: np.random.Generator
) -> dict[tuple[int, int], str]:
    """A junction at every crossing (jittered by up to 30 m), a regulator at every fifth."""
    junctions: dict[tuple[int, int], str] = {}
    for i in range(grid.n):
        for j in range(grid.n):
            x, y = grid.crossing(i, j)
            reg = (i * 3 + j) % 5 == 0
            junctions[i, j] = b.node(
                f"GJ{i:03d}{j:03d}",
                x + rng.uniform(-30, 30),
                y + rng.uniform(-30, 30),
                kind="regulator" if reg else "junction",
                pressure_class="medium_b",
                customers=0 if reg else int(rng.integers(30, 200)),
                status="open",
            )
    return junctions


def _gas_pipes(
    b: _Builder, grid: _Grid, junctions: dict[tuple[int, int], str], rng: np.random.Generator
) -> None:
    """A pipe along every block; a valve near the start of 40 %."""

    def pipe(a: str, z: str, props: dict[str, Any]) -> None:
        b.link("pipe_id", b.next_id("GP", 6), a, z, **props)

    for start, end, _ in grid.streets():
        a, z = junctions[start], junctions[end]
        year = int(rng.integers(1985, 2024))
        props = dict(
            material="pe" if year > 2000 else "steel",
            diameter_mm=float(rng.choice([110.0, 160.0, 200.0, 250.0])),
            install_year=year,
            pressure_class="medium_b",
            status="open",
        )
        if rng.random() < 0.4:
            v = b.node(
                b.next_id("GV", 5),
                *b.along(a, z, 0.1),
                kind="valve",
                pressure_class="medium_b",
                customers=0,
                status="open",
            )
            pipe(a, v, props)
            pipe(v, z, props)
        else:
            pipe(a, z, props)


def build_power(cfg: DemoConfig) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """110/10 kV substations round the centre, each with radial feeders tied at their ends."""
    rng = np.random.default_rng(cfg.seed + 2)
    cx, cy = _centre_m()
    extent = (cfg.grid_n - 1) * cfg.spacing_m / 2
    b = _Builder()
    for k in range(cfg.substations):
        angle = 2 * math.pi * k / cfg.substations
        sub = b.node(
            f"PS{k + 1:03d}",
            cx + 0.5 * extent * math.cos(angle),
            cy + 0.5 * extent * math.sin(angle),
            kind="substation",
            voltage_kv=110.0,
            normally_open=False,
            customers=0,
            name=f"示范{k + 1}号110kV变电站",
        )
        ends = [
            _feeder(b, rng, cfg, sub, f"F{k + 1:02d}{f + 1:02d}", f)
            for f in range(cfg.feeders_per_substation)
        ]
        _feeder_ties(b, rng, k, ends)
    return b.frames()


_POLE_SPACING_M = 150.0


def _line(b: _Builder, rng: np.random.Generator, a: str, z: str, feeder: str | None) -> None:
    """A 10 kV line, mostly cable."""
    b.link(
        "line_id",
        b.next_id("PL", 6),
        a,
        z,
        voltage_kv=10.0,
        feeder_id=feeder,
        construction="cable" if rng.random() < 0.7 else "overhead",
        conductor="YJV22-3x240",
        install_year=int(rng.integers(1995, 2024)),
        status="in_service",
    )


def _feeder_node(b: _Builder, node_id: str, x: float, y: float, kind: str, **props: Any) -> str:
    return b.node(node_id, x, y, kind=kind, voltage_kv=10.0, **props)


def _feeder(
    b: _Builder, rng: np.random.Generator, cfg: DemoConfig, sub: str, fid: str, f: int
) -> str:
    """A radial feeder from the substation: a trunk of poles (every sixth a sectionalising
    switch) with laterals to distribution transformers. Returns the trunk's last pole."""
    sx, sy = b.xy[sub]
    theta = 2 * math.pi * f / cfg.feeders_per_substation + rng.uniform(-0.1, 0.1)
    prev = sub
    for p in range(1, cfg.feeder_length + 1):
        x = sx + p * _POLE_SPACING_M * math.cos(theta) + rng.uniform(-15, 15)
        y = sy + p * _POLE_SPACING_M * math.sin(theta) + rng.uniform(-15, 15)
        kind = "switch" if p % 6 == 0 else "junction"
        pole = _feeder_node(
            b, f"PN{fid}{p:03d}", x, y, kind, feeder_id=fid, normally_open=False, customers=0
        )
        _line(b, rng, prev, pole, fid)
        prev = pole
        if rng.random() < 0.45:
            _lateral(b, rng, fid, pole, p, theta)
    return prev


def _lateral(
    b: _Builder, rng: np.random.Generator, fid: str, pole: str, p: int, theta: float
) -> None:
    """Two to four transformers 80 m apart, square to the trunk, on one side of it."""
    x, y = b.xy[pole]
    bx, by = -math.sin(theta), math.cos(theta)
    side = 1 if rng.random() < 0.5 else -1
    prev = pole
    for q in range(1, int(rng.integers(2, 5)) + 1):
        transformer = _feeder_node(
            b,
            f"PT{fid}{p:03d}{q}",
            x + side * q * 80 * bx,
            y + side * q * 80 * by,
            "transformer",
            feeder_id=fid,
            normally_open=False,
            customers=int(rng.integers(40, 300)),
        )
        _line(b, rng, prev, transformer, fid)
        prev = transformer


def _feeder_ties(b: _Builder, rng: np.random.Generator, k: int, ends: list[str]) -> None:
    """Normally-open ties between neighbouring feeders' ends (restoration paths)."""
    for f, a in enumerate(ends):
        z = ends[(f + 1) % len(ends)]
        tie = _feeder_node(
            b,
            f"PW{k + 1:02d}{f + 1:02d}",
            *b.midpoint(a, z),
            "switch",
            feeder_id=None,
            normally_open=True,
            customers=0,
        )
        _line(b, rng, a, tie, None)
        _line(b, rng, tie, z, None)


def build_facilities(cfg: DemoConfig) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(cfg.seed + 3)
    cx, cy = _centre_m()
    extent = (cfg.grid_n - 1) * cfg.spacing_m / 2
    rows = []
    for kind, count, zh, en, cap in (
        ("hospital", cfg.hospitals, "示范医院", "Demo hospital", (200, 1500)),
        ("school", cfg.schools, "示范学校", "Demo school", (300, 3000)),
        ("fire_station", cfg.fire_stations, "示范消防站", "Demo fire station", (20, 80)),
        ("shelter", cfg.shelters, "示范应急避难场所", "Demo emergency shelter", (500, 20000)),
    ):
        for k in range(count):
            x = cx + rng.uniform(-extent, extent)
            y = cy + rng.uniform(-extent, extent)
            rows.append(
                {
                    "facility_id": f"{kind[:2].upper()}{k + 1:04d}",
                    "kind": kind,
                    "name_zh": f"{zh}{k + 1}",
                    "name_en": f"{en} {k + 1}",
                    "capacity": int(rng.integers(*cap)),
                    "demo": True,
                    "geometry": Point(x, y),
                }
            )
    return gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_SRID).to_crs(STORE_SRID)


def build_demo_city(cfg: DemoConfig | None = None) -> dict[str, gpd.GeoDataFrame]:
    """All demo layers, keyed by layer name, in EPSG:4326. Same config, same output."""
    cfg = cfg or DemoConfig()
    wn, wp = build_water(cfg)
    gn, gp = build_gas(cfg)
    pn, pl = build_power(cfg)
    return {
        "water_nodes": wn,
        "water_pipes": wp,
        "gas_nodes": gn,
        "gas_pipes": gp,
        "power_nodes": pn,
        "power_lines": pl,
        "facilities": build_facilities(cfg),
    }


def build_demo_sensors(
    frames: dict[str, gpd.GeoDataFrame], *, per_kind: int = 20, seed: int = 4
) -> list:  # list[sensors.catalogue.Sensor]
    """Demo sensors on demo assets: each sensor's ``asset_id`` is the node it sits on.

    Water pressure on junctions, water flow on the mains leaving the sources (on the source
    node), tank levels on tanks, bus monitors on feeder junctions next to substations,
    transformer monitors on transformers, gas pressure on regulators and gas detectors on
    junctions. Same frames and seed, same sensors.
    """
    from sensors.catalogue import SENSOR_TYPES, Sensor

    rng = np.random.default_rng(seed)
    picks: list[tuple[str, str, str, list[str]]] = []

    def ids(layer: str, kinds: tuple[str, ...]) -> list[str]:
        df = frames[layer]
        return sorted(df.loc[df["kind"].isin(kinds), "node_id"].tolist())

    power_first = sorted(n for n in ids("power_nodes", ("junction", "switch")) if n.endswith("001"))
    picks += [
        ("water_nodes", "water_pressure", "wp", ids("water_nodes", ("junction",))),
        ("water_nodes", "water_flow", "wf", ids("water_nodes", ("reservoir",))),
        ("water_nodes", "water_tank", "wt", ids("water_nodes", ("tank",))),
        ("power_nodes", "power_bus", "pb", power_first),
        ("power_nodes", "power_transformer", "px", ids("power_nodes", ("transformer",))),
        ("gas_nodes", "gas_pressure", "gp", ids("gas_nodes", ("regulator",))),
        ("gas_nodes", "gas_detector", "gd", ids("gas_nodes", ("junction",))),
    ]
    out = []
    for layer, type_id, prefix, candidates in picks:
        if not candidates:
            continue
        n = min(per_kind, len(candidates))
        chosen = sorted(rng.choice(candidates, size=n, replace=False).tolist())
        df = frames[layer].set_index("node_id")
        st = SENSOR_TYPES[type_id]
        for k, node in enumerate(chosen, start=1):
            p = df.loc[node, "geometry"]
            out.append(
                Sensor(
                    sensor_id=f"demo-{prefix}-{k:04d}",
                    utility=st.utility,
                    sensor_type=type_id,
                    name=f"{st.name_zh}{k}（示范）",
                    lon=round(float(p.x), 7),
                    lat=round(float(p.y), 7),
                    asset_id=str(node),
                )
            )
    return out
