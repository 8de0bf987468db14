"""A scenario's world: the network models placed in Chengdu, their sensors, and the truth.

``build_world`` loads the models a scenario names, checks every element, sensor and incident
against them (``ScenarioError`` with the file, line and field), places the networks in
Chengdu (EPSG:4544 metres, then longitude/latitude) and instruments them. ``World.truth(t)``
advances the physics and returns, per sensor, the noise-free values with the incidents and
without them (the baseline), from which a run tells which sensors each incident affects.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sensors.catalogue import SENSOR_TYPES, Sensor
from sensors.quantities import Utility
from simulators import gas as gasmod
from simulators import power as powermod
from simulators import water as watermod
from simulators.geo import place, project
from simulators.profiles import POWER_LOAD_PATTERN, WATER_DEMAND_PATTERN, pattern_at
from simulators.spec import IncidentSpec, Scenario, ScenarioError

# The example grids' loads times the daily pattern (peak 1.30) put the evening peak slightly
# over the equipment ratings (a 10 kV cable at 610 A against 600 A, a transformer at 101 %):
# a healthy network is planned with headroom, so a normal day peaks at 85 % of that (about
# 86 % transformer loading) and only incidents push equipment over its limits.
POWER_PEAK_SHARE = 0.85
TANK_OVERFLOW_M = 0.1  # [m] overflow rim above a tank's top operating level
TANK_LOW_MARGIN_M = 0.5  # [m] low-level alarm above its bottom operating level

# a sensor counts as affected by an incident when its noise-free value departs from the
# no-incident baseline by more than this [canonical unit]
AFFECTED_THRESHOLD = {
    ("water", "pressure"): 2.0,
    ("water", "flow"): 1.0,
    ("water", "level"): 0.05,
    ("power", "voltage"): 100.0,
    ("power", "current"): 5.0,
    ("power", "loading"): 2.0,
    ("power", "temperature"): 1.0,
    ("gas", "pressure"): 1.0,
    ("gas", "gas_concentration"): 1.0,
}
GAS_BACKGROUND_LEL = 0.2  # [%LEL] what a clean detector reads


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", str(name).lower()).strip("-") or "x"


def spread(xy: np.ndarray, candidates: list[int], n: int) -> list[int]:
    """``n`` of ``candidates`` (row indices of ``xy``) spread out: farthest-point sampling from
    the candidate nearest the centroid (deterministic)."""
    if n >= len(candidates):
        return list(candidates)
    pts = xy[candidates]
    first = int(np.argmin(((pts - pts.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    d = ((pts - pts[first]) ** 2).sum(axis=1)
    while len(chosen) < n:
        nxt = int(np.argmax(d))
        chosen.append(nxt)
        d = np.minimum(d, ((pts - pts[nxt]) ** 2).sum(axis=1))
    return [candidates[i] for i in chosen]


@dataclass
class SimSensor:
    sensor: Sensor
    network: str
    ref: tuple  # what it reads, per kind (see World.truth)
    xy: tuple[float, float]  # EPSG:4544 [m]
    confinement: float = 1.0


@dataclass
class World:
    scenario: Scenario
    sensors: list[SimSensor] = field(default_factory=list)
    sensor_ids: set[str] = field(default_factory=set)
    start_ms: int = 0
    water: watermod.WaterSim | None = None
    water_base: watermod.WaterSim | None = None
    power: powermod.PowerSim | None = None
    power_base: powermod.PowerSim | None = None
    gas: gasmod.GasSim | None = None
    gas_base: gasmod.GasSim | None = None
    water_lonlat: dict[str, tuple[float, float]] = field(default_factory=dict)
    water_xy: dict[str, tuple[float, float]] = field(default_factory=dict)
    power_lonlat: np.ndarray | None = None
    power_xy: np.ndarray | None = None
    gas_lonlat: np.ndarray | None = None
    gas_xy: np.ndarray | None = None
    incident_lonlat: dict[int, tuple[float, float]] = field(default_factory=dict)
    place_lonlat: dict[str, tuple[float, float]] = field(default_factory=dict)
    _water_idx: dict[str, list[int]] = field(default_factory=dict)
    _tmp: tempfile.TemporaryDirectory | None = None
    # per incident, the network simulated with every other incident but that one (only where
    # a network has several incidents; with one, the baseline is that counterfactual)
    water_without: dict[int, watermod.WaterSim] = field(default_factory=dict)
    power_without: dict[int, powermod.PowerSim] = field(default_factory=dict)
    gas_without: dict[int, gasmod.GasSim] = field(default_factory=dict)
    incidents_by_network: dict[str, list[int]] = field(default_factory=dict)
    # sensor -> quantity -> (alarm_low, alarm_high, why): limits of the asset a sensor watches,
    # from the network model (the asset register), where they differ from its type's defaults
    asset_limits: dict[str, dict[str, tuple[float | None, float | None, str]]] = field(
        default_factory=dict
    )
    # metered areas: area id -> (name, [(flow sensor id, +1 if its positive flow enters)],
    # [the meters on service reservoirs (tanks) rather than sources])
    metered_areas: dict[str, tuple[str, list[tuple[str, int]], list[str]]] = field(
        default_factory=dict
    )

    # -- truth ------------------------------------------------------------------------------
    def truth(
        self, t_s: float, *, counterfactuals: bool = True
    ) -> tuple[list[dict[str, float]], list[dict[str, float]], dict[int, list[dict[str, float]]]]:
        """Noise-free values of every sensor at ``t_s``: with the incidents and, when
        ``counterfactuals``, without any (baseline) and per incident without that one.

        Without ``counterfactuals`` the baseline is returned as the values with incidents and
        the counterfactual water models are not advanced (they catch up when next asked,
        in one long step where the network has no tanks)."""
        ts_ms = self.start_ms + round(t_s * 1000)
        n = len(self.sensors)
        with_inc: list[dict[str, float]] = [{} for _ in range(n)]
        base: list[dict[str, float]] = [{} for _ in range(n)] if counterfactuals else with_inc
        without: dict[int, list[dict[str, float]]] = {}
        if counterfactuals:
            for eids in self.incidents_by_network.values():
                for eid in eids:
                    without[eid] = base if len(eids) == 1 else [{} for _ in range(n)]
        if self.water is not None:
            self._water_truth(t_s, self.water, with_inc)
            if counterfactuals:
                self._water_truth(t_s, self.water_base, base, jump=True)
                for eid, sim in self.water_without.items():
                    self._water_truth(t_s, sim, without[eid], jump=True)
        if self.power is not None and self.power_base is not None:
            load = POWER_PEAK_SHARE * pattern_at(POWER_LOAD_PATTERN, ts_ms)
            self._power_truth(self.power.solve(t_s, load), with_inc)
            if counterfactuals:
                self._power_truth(self.power_base.solve(t_s, load), base)
                for eid, psim in self.power_without.items():
                    self._power_truth(psim.solve(t_s, load), without[eid])
        if self.gas is not None and self.gas_base is not None:
            demand = pattern_at(WATER_DEMAND_PATTERN, ts_ms)
            self._gas_truth(self.gas.solve(t_s, demand), with_inc)
            if counterfactuals:
                self._gas_truth(self.gas_base.solve(t_s, demand), base)
                for eid, gsim in self.gas_without.items():
                    self._gas_truth(gsim.solve(t_s, demand), without[eid])
        return with_inc, base, without

    def _water_truth(self, t_s: float, sim, dest: list[dict], *, jump: bool = False) -> None:
        if True:
            sim.advance_to(t_s, jump=jump)
            p = sim.pressures_kpa(self._water_idx["p_nodes"])
            q = sim.flows_lps(self._water_idx["f_links"])
            lv = sim.levels_m(self._water_idx["t_nodes"])
            for i, k in enumerate(self._water_idx["p_pos"]):
                dest[k]["pressure"] = float(p[i])
            for i, k in enumerate(self._water_idx["f_pos"]):
                dest[k]["flow"] = float(q[i])
                dest[k]["pressure"] = float(p[self._water_idx["f_pidx"][i]])
            for i, k in enumerate(self._water_idx["t_pos"]):
                dest[k]["level"] = float(lv[i])

    def _power_truth(self, st: powermod.PowerState, dest: list[dict]) -> None:
        for k, s in enumerate(self.sensors):
            if s.network != "power":
                continue
            kind, pos = s.ref
            if kind == "bus":
                dest[k]["voltage"] = float(st.bus_voltage_v[pos])
                dest[k]["current"] = float(st.bus_current_a[pos])
                dest[k]["frequency"] = float(st.frequency_hz) if st.bus_voltage_v[pos] > 0 else 0.0
            else:
                loading = float(st.trafo_loading_pct[pos])
                dest[k]["loading"] = loading
                dest[k]["temperature"] = 25.0 + 0.5 * loading  # steady state, oil-immersed

    def _gas_truth(self, st: gasmod.GasState, dest: list[dict]) -> None:
        assert self.gas_xy is not None
        leaks_xy = self.gas_xy[list(st.leak_junctions)] if st.leak_junctions else np.zeros((0, 2))
        spec = self.scenario.networks["gas"]
        det_k = [k for k, s in enumerate(self.sensors) if s.ref[0] == "detector"]
        if det_k:
            conc = np.zeros(len(det_k))
            if len(leaks_xy):
                for j, k in enumerate(det_k):
                    conc[j] = concentration_one(leaks_xy, st.leak_kg_s, self.sensors[k], spec)
            for j, k in enumerate(det_k):
                dest[k]["gas_concentration"] = GAS_BACKGROUND_LEL + float(conc[j])
        for k, s in enumerate(self.sensors):
            if s.ref[0] == "gas_node":
                dest[k]["pressure"] = float(st.junction_p_kpa[s.ref[1]])

    def close(self) -> None:
        for sim in (self.water, self.water_base, *self.water_without.values()):
            if sim is not None:
                sim.close()
        if self._tmp is not None:
            self._tmp.cleanup()


def concentration_one(leaks_xy, leak_kg_s, s: SimSensor, spec) -> float:
    return float(
        gasmod.concentration_lel(
            leaks_xy,
            np.asarray(leak_kg_s),
            np.array([s.xy]),
            wind_speed_m_s=spec.wind_speed_m_s,
            wind_from_deg=spec.wind_from_deg,
            confinement=s.confinement,
        )[0]
    )


# -- building -------------------------------------------------------------------------------
def _err(scn: Scenario, where, field_suffix: str, problem: str) -> ScenarioError:
    path = f"{where.field}.{field_suffix}" if field_suffix else where.field
    line = where.line_of(field_suffix) if field_suffix else where.line
    return ScenarioError(scn.source, line, path, problem)


def _add(world: World, stype: str, sid: str, network: str, ref: tuple, lon, lat, xy, conf=1.0):
    if sid in world.sensor_ids:
        return
    world.sensor_ids.add(sid)
    sensor = Sensor(
        sensor_id=sid,
        utility=SENSOR_TYPES[stype].utility,
        sensor_type=stype,
        name=f"{world.scenario.name} {stype} {sid}",
        lon=round(float(lon), 7),
        lat=round(float(lat), 7),
        asset_id=f"sim:{network}:{ref[-1] if isinstance(ref[-1], str) else ref[1]}",
    )
    world.sensors.append(SimSensor(sensor, network, ref, (float(xy[0]), float(xy[1])), conf))


def build_world(scn: Scenario, *, start_ms: int) -> World:
    """Load, check and instrument the scenario's networks (ScenarioError on any mistake)."""
    world = World(scenario=scn, start_ms=start_ms)
    by_net: dict[str, list[IncidentSpec]] = {}
    for inc in scn.incidents:
        by_net.setdefault(inc.network, []).append(inc)
    if "water" in scn.networks:
        _build_water(world, by_net.get("water", []))
    if "power" in scn.networks:
        _build_power(world, by_net.get("power", []))
    if "gas" in scn.networks:
        _build_gas(world, by_net.get("gas", []))
    for p in scn.places:
        world.place_lonlat[p.name] = _element_lonlat(world, p.network, p.element, p.where)
    return world


def _element_lonlat(world: World, network: str, element: str, where) -> tuple[float, float]:
    scn = world.scenario
    if network == "water":
        if element not in world.water_lonlat:
            raise _err(scn, where, "element", f"no node {element!r} in the water network")
        return world.water_lonlat[element]
    if network == "power":
        assert world.power is not None and world.power_lonlat is not None
        net = world.power.net
        if not element.isdigit() or int(element) not in net.bus.index:
            raise _err(scn, where, "element", f"no bus {element!r} in the power network")
        return tuple(world.power_lonlat[world.power.bus_position(int(element))])
    assert world.gas is not None and world.gas_lonlat is not None
    names = world.gas._by_name
    if element not in names:
        raise _err(scn, where, "element", f"no junction {element!r} in the gas network")
    return tuple(world.gas_lonlat[world.gas.position(names[element])])


def _build_water(world: World, incs: list[IncidentSpec]) -> None:
    scn = world.scenario
    spec = scn.networks["water"]
    try:
        wn = watermod.load_network(spec.model)
    except Exception as exc:  # wntr raises its own errors for a malformed .inp
        raise ScenarioError(
            scn.source, None, "networks.water.model", f"cannot load {spec.model!r}: {exc}"
        ) from None
    models = []
    for inc in incs:
        p = inc.params
        m = watermod.WaterIncident(
            kind=inc.type,
            element=inc.element,
            start_s=inc.start_s,
            end_s=inc.end_s,
            area_cm2=float(p.get("area_cm2", 0.0)),
            ramp_s=float(p.get("ramp", 0.0)),
        )
        problem = watermod.check_incident(wn, m)
        if problem:
            raise _err(scn, inc.where, "element", problem)
        models.append(m)
    wn = watermod.prepare_network(wn, models)
    names = list(wn.node_name_list)
    name_pos = {n: i for i, n in enumerate(names)}
    xy = np.array([wn.get_node(n).coordinates for n in names], float)
    if spec.crs:
        lon, lat, metric = project(xy, spec.crs)
    else:
        lon, lat, metric = place(
            xy, scale_m=spec.scale_m, anchor_lon=spec.anchor_lon, anchor_lat=spec.anchor_lat
        )
    world.water_lonlat = {n: (float(lon[i]), float(lat[i])) for i, n in enumerate(names)}
    world.water_xy = {n: (float(metric[i, 0]), float(metric[i, 1])) for i, n in enumerate(names)}
    duration = int(scn.duration_s) + int(scn.step_s)
    start_clock = (start_ms_local_s(world.start_ms)) % 86_400
    step = int(scn.step_s)
    world._tmp = tempfile.TemporaryDirectory(prefix="cityops-world-")
    inp = watermod.write_model(
        wn,
        Path(world._tmp.name) / "water.inp",
        step_s=step,
        duration_s=duration,
        start_clock_s=start_clock,
    )

    def new_sim(incidents: tuple = ()) -> watermod.WaterSim:
        return watermod.WaterSim(wn, step_s=step, duration_s=duration, incidents=incidents, inp=inp)

    world.water = new_sim(tuple(models))
    world.water_base = new_sim()
    if len(models) > 1:
        for inc, m in zip(incs, models, strict=True):
            world.water_without[inc.event_id] = new_sim(tuple(x for x in models if x is not m))
    world.incidents_by_network["water"] = [inc.event_id for inc in incs]
    for inc, m in zip(incs, models, strict=True):
        node = watermod.incident_node(wn, m) if m.kind in ("leak", "burst") else None
        if node is None and m.element in wn.link_name_list:
            link = wn.get_link(m.element)
            a, b = world.water_lonlat[link.start_node_name], world.water_lonlat[link.end_node_name]
            world.incident_lonlat[inc.event_id] = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        else:
            world.incident_lonlat[inc.event_id] = world.water_lonlat[node or m.element]
    # sensors
    plan = scn.sensors
    prefix = scn.id_prefix
    world.water_base.advance_to(0)
    junctions = [name_pos[j] for j in wn.junction_name_list if not j.endswith("-leak")]
    if isinstance(plan.water_pressure, int):
        p0 = world.water_base.pressures_kpa(
            [world.water_base.node_index(names[i]) for i in junctions]
        )
        ok = [
            j
            for j, p in zip(junctions, p0, strict=True)
            if 250.0 <= p <= 650.0 and wn.get_node(names[j]).base_demand > 0
        ]
        chosen = [names[i] for i in spread(metric, ok, plan.water_pressure)]
    else:
        chosen = list(plan.water_pressure)
        for n in chosen:
            if n not in wn.junction_name_list:
                raise _err(
                    scn, plan.where["water.pressure"], "", f"no junction {n!r} in the water network"
                )
    for n in chosen:
        i = name_pos[n]
        _add(
            world,
            "water_pressure",
            f"{prefix}-wp-{slug(n)}",
            "water",
            ("w_node", n),
            lon[i],
            lat[i],
            metric[i],
        )
    for link_name in plan.water_flow:
        if link_name not in wn.link_name_list:
            raise _err(
                scn, plan.where["water.flow"], "", f"no link {link_name!r} in the water network"
            )
        link = wn.get_link(link_name)
        i, j = name_pos[link.start_node_name], name_pos[link.end_node_name]
        node = (
            link.start_node_name
            if link.start_node_name in wn.junction_name_list
            else link.end_node_name
        )
        _add(
            world,
            "water_flow",
            f"{prefix}-wf-{slug(link_name)}",
            "water",
            ("w_link", link_name, node),
            (lon[i] + lon[j]) / 2,
            (lat[i] + lat[j]) / 2,
            (metric[i] + metric[j]) / 2,
        )
    if plan.water_inlets:
        # the network as one metered area: meters on every link out of a reservoir or tank
        # (treatment works, pumping stations, service reservoirs), signed so that a positive
        # flow into the network counts as supply
        sources = set(wn.reservoir_name_list) | set(wn.tank_name_list)
        meters: list[tuple[str, int]] = []
        storage: list[str] = []
        for link_name in wn.link_name_list:
            link = wn.get_link(link_name)
            a, b = link.start_node_name, link.end_node_name
            if (a in sources) == (b in sources):
                continue
            i, j = name_pos[a], name_pos[b]
            sid = f"{prefix}-wi-{slug(link_name)}"
            _add(
                world,
                "water_flow",
                sid,
                "water",
                ("w_link", link_name, b if a in sources else a),
                (lon[i] + lon[j]) / 2,
                (lat[i] + lat[j]) / 2,
                (metric[i] + metric[j]) / 2,
            )
            meters.append((sid, 1 if a in sources else -1))
            if (a if a in sources else b) in wn.tank_name_list:
                storage.append(sid)
            # a supply meter at a works or a reservoir outlet: its flow is judged by the water
            # balance of its area, and the outlet's pressure is no customer's service pressure
            why = f"supply meter on link {link_name} of {spec.model}: judged by the water balance"
            world.asset_limits[sid] = {"flow": (None, None, why), "pressure": (None, None, why)}
        world.metered_areas[f"{prefix}-water"] = (f"{scn.name} {spec.model}", meters, storage)
    tanks = wn.tank_name_list if plan.water_tanks == "all" else list(plan.water_tanks)
    for n in tanks:
        if n not in wn.tank_name_list:
            raise _err(scn, plan.where["water.tanks"], "", f"no tank {n!r} in the water network")
        i = name_pos[n]
        sid = f"{prefix}-wt-{slug(n)}"
        _add(world, "water_tank", sid, "water", ("w_tank", n), lon[i], lat[i], metric[i])
        tank = wn.get_node(n)
        # a tank that fills to its top operating level is full, not overflowing: the high
        # alarm sits at the overflow, TANK_OVERFLOW_M above it; low: just above the drain level
        world.asset_limits.setdefault(sid, {})["level"] = (
            round(max(float(tank.min_level), 0.0) + TANK_LOW_MARGIN_M, 2),
            round(float(tank.max_level) + TANK_OVERFLOW_M, 2),
            f"tank {n} levels {tank.min_level:.2f}-{tank.max_level:.2f} m in {spec.model}",
        )
    sim = world.water
    idx: dict[str, list[int]] = {
        k: [] for k in ("p_nodes", "p_pos", "f_links", "f_pos", "f_pidx", "t_nodes", "t_pos")
    }
    for k, s in enumerate(world.sensors):
        if s.network != "water":
            continue
        if s.ref[0] == "w_node":
            idx["p_nodes"].append(sim.node_index(s.ref[1]))
            idx["p_pos"].append(k)
    for k, s in enumerate(world.sensors):
        if s.network == "water" and s.ref[0] == "w_link":
            idx["f_links"].append(sim.link_index(s.ref[1]))
            idx["f_pos"].append(k)
            idx["f_pidx"].append(len(idx["p_nodes"]))
            idx["p_nodes"].append(sim.node_index(s.ref[2]))
        elif s.network == "water" and s.ref[0] == "w_tank":
            idx["t_nodes"].append(sim.node_index(s.ref[1]))
            idx["t_pos"].append(k)
    world._water_idx = idx


def start_ms_local_s(start_ms: int) -> int:
    return (start_ms // 1000 + 8 * 3600) % 86_400


def _build_power(world: World, incs: list[IncidentSpec]) -> None:
    scn = world.scenario
    spec = scn.networks["power"]
    net = powermod.load_network(spec.model)
    models = []
    for inc in incs:
        m = powermod.PowerIncident(
            kind=inc.type,
            element=inc.element,
            start_s=inc.start_s,
            end_s=inc.end_s,
            factor=float(inc.params.get("factor", 1.0)),
            vm_pu=float(inc.params.get("vm_pu", 1.0)),
        )
        problem = powermod.check_incident(net, m)
        if problem:
            raise _err(scn, inc.where, "element", problem)
        models.append(m)
    xy = powermod.bus_xy(net)
    lon, lat, metric = place(
        xy, scale_m=spec.scale_m, anchor_lon=spec.anchor_lon, anchor_lat=spec.anchor_lat
    )
    world.power_lonlat = np.column_stack([lon, lat])
    world.power_xy = metric
    cache: OrderedDict = OrderedDict()
    world.power_base = powermod.PowerSim(copy.deepcopy(net), cache=cache)
    if len(models) > 1:
        for inc, m in zip(incs, models, strict=True):
            others = tuple(x for x in models if x is not m)
            world.power_without[inc.event_id] = powermod.PowerSim(
                copy.deepcopy(net), others, cache=cache
            )
    world.incidents_by_network["power"] = [inc.event_id for inc in incs]
    world.power = powermod.PowerSim(net, tuple(models), cache=cache)
    for inc, m in zip(incs, models, strict=True):
        if m.kind in ("line_outage", "overload"):
            row = net.line.loc[int(m.element)]
            a, b = (
                world.power.bus_position(int(row.from_bus)),
                world.power.bus_position(int(row.to_bus)),
            )
            world.incident_lonlat[inc.event_id] = tuple(
                (world.power_lonlat[a] + world.power_lonlat[b]) / 2
            )
        elif m.kind in ("switch_close", "switch_open"):
            bus = int(net.switch.bus.at[int(m.element)])
            world.incident_lonlat[inc.event_id] = tuple(
                world.power_lonlat[world.power.bus_position(bus)]
            )
        else:
            bus = int(net.ext_grid.bus.iloc[0])
            world.incident_lonlat[inc.event_id] = tuple(
                world.power_lonlat[world.power.bus_position(bus)]
            )
    plan = scn.sensors
    prefix = scn.id_prefix
    mv = [i for i, b in enumerate(net.bus.index) if net.bus.vn_kv.at[b] <= 30.0]
    if isinstance(plan.power_buses, int):
        buses = [int(net.bus.index[i]) for i in spread(metric, mv, plan.power_buses)]
    else:
        buses = []
        for bus_name in plan.power_buses:
            if not str(bus_name).isdigit() or int(bus_name) not in net.bus.index:
                raise _err(
                    scn, plan.where["power.buses"], "", f"no bus {bus_name!r} in the power network"
                )
            buses.append(int(bus_name))
    for b in buses:
        i = world.power.bus_position(b)
        sid = f"{prefix}-pb-{b}"
        _add(world, "power_bus", sid, "power", ("bus", i), lon[i], lat[i], metric[i])
        # the monitor reports the largest current of the lines at the bus: alarm above the
        # rating of the strongest of them (reported at 10 kV like the currents, power.py)
        at_bus = net.line[(net.line.from_bus == b) | (net.line.to_bus == b)]
        if len(at_bus):
            vn_kv = float(net.bus.vn_kv.at[b])
            rating_a = float(at_bus.max_i_ka.max()) * 1000.0 * vn_kv / powermod.REPORT_KV
            world.asset_limits.setdefault(sid, {})["current"] = (
                None,
                round(rating_a, 1),
                f"line rating {rating_a:.0f} A at bus {b} in {spec.model}",
            )
    trafos = (
        list(net.trafo.index) if plan.power_transformers == "all" else list(plan.power_transformers)
    )
    for tname in trafos:
        if not str(tname).isdigit() or int(tname) not in net.trafo.index:
            raise _err(
                scn,
                plan.where["power.transformers"],
                "",
                f"no transformer {tname!r} in the power network",
            )
        t = int(tname)
        i = world.power.bus_position(int(net.trafo.lv_bus.at[t]))
        _add(
            world,
            "power_transformer",
            f"{prefix}-pt-{t}",
            "power",
            ("trafo", net.trafo.index.get_loc(t)),
            lon[i],
            lat[i],
            metric[i],
        )


def _build_gas(world: World, incs: list[IncidentSpec]) -> None:
    scn = world.scenario
    spec = scn.networks["gas"]
    net = gasmod.load_network(spec.model)
    models = []
    for inc in incs:
        m = gasmod.GasIncident(
            kind=inc.type,
            element=inc.element,
            start_s=inc.start_s,
            end_s=inc.end_s,
            area_cm2=float(inc.params.get("area_cm2", 0.0)),
            ramp_s=float(inc.params.get("ramp", 0.0)),
            p_bar=float(inc.params.get("p_bar", gasmod.SUPPLY_BAR)),
        )
        problem = gasmod.check_incident(net, m)
        if problem:
            raise _err(scn, inc.where, "element", problem)
        models.append(m)
    xy = gasmod.junction_xy(net)
    lon, lat, metric = place(
        xy, scale_m=spec.scale_m, anchor_lon=spec.anchor_lon, anchor_lat=spec.anchor_lat
    )
    world.gas_lonlat = np.column_stack([lon, lat])
    world.gas_xy = metric
    gcache: OrderedDict = OrderedDict()
    world.gas_base = gasmod.GasSim(copy.deepcopy(net), cache=gcache)
    if len(models) > 1:
        for inc, m in zip(incs, models, strict=True):
            others = tuple(x for x in models if x is not m)
            world.gas_without[inc.event_id] = gasmod.GasSim(
                copy.deepcopy(net), others, cache=gcache
            )
    world.incidents_by_network["gas"] = [inc.event_id for inc in incs]
    world.gas = gasmod.GasSim(net, tuple(models), cache=gcache)
    for inc, m in zip(incs, models, strict=True):
        if m.kind == "regulator_fault":
            j = int(net.ext_grid.junction.iloc[0])
        else:
            j = world.gas.leak_junction(m)
        world.incident_lonlat[inc.event_id] = tuple(world.gas_lonlat[world.gas.position(j)])
    plan = scn.sensors
    prefix = scn.id_prefix
    names = [str(n) for n in net.junction.name]
    all_pos = list(range(len(names)))
    if isinstance(plan.gas_pressure, int):
        chosen = spread(metric, all_pos, plan.gas_pressure)
    else:
        chosen = []
        for n in plan.gas_pressure:
            if n not in world.gas._by_name:
                raise _err(
                    scn, plan.where["gas.pressure"], "", f"no junction {n!r} in the gas network"
                )
            chosen.append(world.gas.position(world.gas._by_name[n]))
    for i in chosen:
        _add(
            world,
            "gas_pressure",
            f"{prefix}-gp-{slug(names[i])}",
            "gas",
            ("gas_node", i),
            lon[i],
            lat[i],
            metric[i],
        )
    n_det = 0
    for ring in plan.gas_detectors:
        if ring.near not in world.gas._by_name:
            raise _err(scn, ring.where, "near", f"no junction {ring.near!r} in the gas network")
        c = metric[world.gas.position(world.gas._by_name[ring.near])]
        for k in range(ring.count):
            a = 2 * np.pi * k / ring.count + 0.3
            p = c + ring.radius_m * np.array([np.sin(a), np.cos(a)])
            (dlon,), (dlat,) = _to_lonlat(p)
            n_det += 1
            _add(
                world,
                "gas_detector",
                f"{prefix}-gd-{n_det}",
                "gas",
                ("detector", f"{ring.near}:{k}"),
                dlon,
                dlat,
                p,
                ring.confinement,
            )
    for i in spread(metric, all_pos, plan.gas_background_detectors):
        p = metric[i] + np.array([5.0, 0.0])
        (dlon,), (dlat,) = _to_lonlat(p)
        n_det += 1
        _add(
            world,
            "gas_detector",
            f"{prefix}-gd-{n_det}",
            "gas",
            ("detector", names[i]),
            dlon,
            dlat,
            p,
            1.0,
        )


def _to_lonlat(p: np.ndarray):
    from simulators.geo import metric_to_lonlat

    return metric_to_lonlat(np.array([p[0]]), np.array([p[1]]))


def sensor_utility(s: SimSensor) -> Utility:
    return s.sensor.utility
