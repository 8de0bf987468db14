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

    def node(self, node_id: str, x: float, y: float, **props: Any) -> str:
        self.xy[node_id] = (x, y)
        self.nodes.append({"node_id": node_id, "geometry": Point(x, y), **props})
        return node_id

    def link(self, id_field: str, link_id: str, a: str, b: str, **props: Any) -> None:
        line = LineString([self.xy[a], self.xy[b]])
        self.links.append(
            {
                id_field: link_id,
                "from_node": a,
                "to_node": b,
                "length_m": round(line.length, 2),
                "geometry": line,
                **props,
            }
        )

    def frames(self) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
        nodes = gpd.GeoDataFrame(self.nodes, geometry="geometry", crs=METRIC_SRID)
        links = gpd.GeoDataFrame(self.links, geometry="geometry", crs=METRIC_SRID)
        return nodes.to_crs(STORE_SRID), links.to_crs(STORE_SRID)


def _material(year: int, rng: np.random.Generator) -> str:
    if year < 1990:
        return "cast_iron"
    if year < 2005:
        return str(rng.choice(["ductile_iron", "steel", "prestressed_concrete"]))
    return str(rng.choice(["ductile_iron", "pe", "steel"], p=[0.6, 0.3, 0.1]))


def build_water(cfg: DemoConfig) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    rng = np.random.default_rng(cfg.seed)
    cx, cy = _centre_m()
    n, s = cfg.grid_n, cfg.spacing_m
    half = (n - 1) * s / 2
    rmax = math.hypot(half, half)
    b = _Builder()
    jid = {}
    for i in range(n):
        for j in range(n):
            x = cx - half + i * s + rng.uniform(-25, 25)
            y = cy - half + j * s + rng.uniform(-25, 25)
            r = math.hypot(x - cx, y - cy)
            customers = int(20 + 120 * math.exp(-r / 3000) + rng.integers(0, 20))
            jid[i, j] = b.node(
                f"WJ{i:03d}{j:03d}",
                x,
                y,
                kind="junction",
                elevation_m=round(500 - 0.002 * (y - cy) + rng.uniform(-1, 1), 2),
                customers=customers,
                base_demand_lps=round(customers * 0.5 / 86.4, 4),
                status="open",
            )
    # valves and hydrants take their ground level from the junctions beside them
    elevation = {nd["node_id"]: nd["elevation_m"] for nd in b.nodes}
    pipe_no = 0

    def add_pipe(a: str, z: str, i_line: int, r: float) -> None:
        nonlocal pipe_no
        pipe_no += 1
        year = int(np.clip(1958 + 62 * (r / rmax) + rng.normal(0, 8), 1955, 2024))
        trunk = i_line % 8 == 0
        dia = 600.0 if trunk else (300.0 if i_line % 4 == 0 else float(rng.choice([150.0, 200.0])))
        b.link(
            "pipe_id",
            f"WP{pipe_no:06d}",
            a,
            z,
            link_kind="pipe",
            material=_material(year, rng),
            diameter_mm=dia,
            install_year=year,
            pressure_class="PN16" if dia > 300 else "PN10",
            roughness=100.0 if year < 1990 else 130.0,
            status="open",
        )

    valve_no = 0
    for i in range(n):
        for j in range(n):
            for di, dj, line in ((1, 0, j), (0, 1, i)):
                if i + di >= n or j + dj >= n:
                    continue
                a, z = jid[i, j], jid[i + di, j + dj]
                (xa, ya), (xz, yz) = b.xy[a], b.xy[z]
                r = math.hypot((xa + xz) / 2 - cx, (ya + yz) / 2 - cy)
                if rng.random() < 0.8:
                    valve_no += 1
                    t = 0.12
                    ea, ez = elevation[a], elevation[z]
                    v = b.node(
                        f"WV{valve_no:06d}",
                        xa + t * (xz - xa),
                        ya + t * (yz - ya),
                        kind="valve",
                        customers=0,
                        status="open",
                        elevation_m=round(ea + t * (ez - ea), 2),
                    )
                    add_pipe(a, v, line, r)
                    add_pipe(v, z, line, r)
                else:
                    add_pipe(a, z, line, r)
    hyd = 0
    for (i, j), node in jid.items():
        if (i + 2 * j) % 4 == 0:
            hyd += 1
            x, y = b.xy[node]
            h = b.node(
                f"WH{hyd:06d}",
                x + 15,
                y + 12,
                kind="hydrant",
                customers=0,
                status="open",
                elevation_m=elevation[node],
            )
            pipe_no += 1
            b.link(
                "pipe_id",
                f"WP{pipe_no:06d}",
                node,
                h,
                link_kind="pipe",
                material="ductile_iron",
                diameter_mm=100.0,
                install_year=2010,
                pressure_class="PN10",
                roughness=130.0,
                status="open",
            )
    # sources: a treatment works west of the grid, a tank east of it, each on a trunk main
    mid = (n // 8) * 8 if n > 8 else n // 2
    for sid, kind, (x, y), target in (
        ("WR001", "reservoir", (cx - half - 1500, cy - half + mid * s), jid[0, mid]),
        ("WT001", "tank", (cx + half + 800, cy - half + mid * s), jid[n - 1, mid]),
    ):
        b.node(sid, x, y, kind=kind, customers=0, status="open", elevation_m=540.0)
        pipe_no += 1
        b.link(
            "pipe_id",
            f"WP{pipe_no:06d}",
            sid,
            target,
            link_kind="pipe",
            material="steel",
            diameter_mm=1000.0,
            install_year=2008,
            pressure_class="PN16",
            roughness=140.0,
            status="open",
        )
    return b.frames()


def build_gas(cfg: DemoConfig) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    rng = np.random.default_rng(cfg.seed + 1)
    cx, cy = _centre_m()
    s = cfg.spacing_m * 2
    n = max(3, cfg.grid_n // 2)
    half = (n - 1) * s / 2
    b = _Builder()
    jid = {}
    for i in range(n):
        for j in range(n):
            reg = (i * 3 + j) % 5 == 0
            jid[i, j] = b.node(
                f"GJ{i:03d}{j:03d}",
                cx - half + i * s + rng.uniform(-30, 30),
                cy - half + j * s + rng.uniform(-30, 30),
                kind="regulator" if reg else "junction",
                pressure_class="medium_b",
                customers=0 if reg else int(rng.integers(30, 200)),
                status="open",
            )
    no = vno = 0
    for i in range(n):
        for j in range(n):
            for di, dj in ((1, 0), (0, 1)):
                if i + di >= n or j + dj >= n:
                    continue
                a, z = jid[i, j], jid[i + di, j + dj]
                year = int(rng.integers(1985, 2024))
                props = dict(
                    material="pe" if year > 2000 else "steel",
                    diameter_mm=float(rng.choice([110.0, 160.0, 200.0, 250.0])),
                    install_year=year,
                    pressure_class="medium_b",
                    status="open",
                )
                if rng.random() < 0.4:
                    vno += 1
                    (xa, ya), (xz, yz) = b.xy[a], b.xy[z]
                    v = b.node(
                        f"GV{vno:05d}",
                        xa + 0.1 * (xz - xa),
                        ya + 0.1 * (yz - ya),
                        kind="valve",
                        pressure_class="medium_b",
                        customers=0,
                        status="open",
                    )
                    no += 1
                    b.link("pipe_id", f"GP{no:06d}", a, v, **props)
                    no += 1
                    b.link("pipe_id", f"GP{no:06d}", v, z, **props)
                else:
                    no += 1
                    b.link("pipe_id", f"GP{no:06d}", a, z, **props)
    for sid, (x, y), target in (
        ("GS001", (cx - half - 900, cy - half - 900), jid[0, 0]),
        ("GS002", (cx + half + 900, cy + half + 900), jid[n - 1, n - 1]),
    ):
        b.node(sid, x, y, kind="source", pressure_class="sub_high_b", customers=0, status="open")
        no += 1
        b.link(
            "pipe_id",
            f"GP{no:06d}",
            sid,
            target,
            material="steel",
            diameter_mm=400.0,
            install_year=2006,
            pressure_class="sub_high_b",
            status="open",
        )
    return b.frames()


def build_power(cfg: DemoConfig) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    rng = np.random.default_rng(cfg.seed + 2)
    cx, cy = _centre_m()
    extent = (cfg.grid_n - 1) * cfg.spacing_m / 2
    b = _Builder()
    line_no = 0

    def line(a: str, z: str, feeder: str | None, kv: float = 10.0) -> None:
        nonlocal line_no
        line_no += 1
        b.link(
            "line_id",
            f"PL{line_no:06d}",
            a,
            z,
            voltage_kv=kv,
            feeder_id=feeder,
            construction="cable" if rng.random() < 0.7 else "overhead",
            conductor="YJV22-3x240" if kv == 10.0 else "LGJ-240",
            install_year=int(rng.integers(1995, 2024)),
            status="in_service",
        )

    spacing = 150.0
    for k in range(cfg.substations):
        ang0 = 2 * math.pi * k / cfg.substations
        sx = cx + 0.5 * extent * math.cos(ang0)
        sy = cy + 0.5 * extent * math.sin(ang0)
        sub = b.node(
            f"PS{k + 1:03d}",
            sx,
            sy,
            kind="substation",
            voltage_kv=110.0,
            normally_open=False,
            customers=0,
            name=f"示范{k + 1}号110kV变电站",
        )
        ends = []
        for f in range(cfg.feeders_per_substation):
            fid = f"F{k + 1:02d}{f + 1:02d}"
            theta = 2 * math.pi * f / cfg.feeders_per_substation + rng.uniform(-0.1, 0.1)
            prev = sub
            for p in range(1, cfg.feeder_length + 1):
                x = sx + p * spacing * math.cos(theta) + rng.uniform(-15, 15)
                y = sy + p * spacing * math.sin(theta) + rng.uniform(-15, 15)
                kind = "switch" if p % 6 == 0 else "junction"
                nid = b.node(
                    f"PN{fid}{p:03d}",
                    x,
                    y,
                    kind=kind,
                    voltage_kv=10.0,
                    feeder_id=fid,
                    normally_open=False,
                    customers=0,
                )
                line(prev, nid, fid)
                prev = nid
                if rng.random() < 0.45:  # a lateral to distribution transformers
                    bx, by = -math.sin(theta), math.cos(theta)
                    side = 1 if rng.random() < 0.5 else -1
                    lprev = nid
                    for q in range(1, int(rng.integers(2, 5)) + 1):
                        tid = b.node(
                            f"PT{fid}{p:03d}{q}",
                            x + side * q * 80 * bx,
                            y + side * q * 80 * by,
                            kind="transformer",
                            voltage_kv=10.0,
                            feeder_id=fid,
                            normally_open=False,
                            customers=int(rng.integers(40, 300)),
                        )
                        line(lprev, tid, fid)
                        lprev = tid
            ends.append(prev)
        # normally-open ties between neighbouring feeders' ends (restoration paths)
        for f in range(cfg.feeders_per_substation):
            a, z = ends[f], ends[(f + 1) % cfg.feeders_per_substation]
            (xa, ya), (xz, yz) = b.xy[a], b.xy[z]
            tie = b.node(
                f"PW{k + 1:02d}{f + 1:02d}",
                (xa + xz) / 2,
                (ya + yz) / 2,
                kind="switch",
                voltage_kv=10.0,
                feeder_id=None,
                normally_open=True,
                customers=0,
            )
            line(a, tie, None)
            line(tie, z, None)
    return b.frames()


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
