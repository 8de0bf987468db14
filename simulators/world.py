"""A scenario's world: the network models placed in Chengdu, their sensors, and the truth.

``build_world`` loads the models a scenario names, checks every element, sensor and incident
against them (``ScenarioError`` with the file, line and field), places the networks in
Chengdu (EPSG:4544 metres, then longitude/latitude) and instruments them. ``World.truth(t)``
advances the physics and returns, per sensor, the noise-free values with the incidents and
without them (the baseline), from which a run tells which sensors each incident affects.

Every utility is built the same way (``Network.__init__``: load, check the incidents, place,
simulate with and without them); what differs is described once per utility, in
``WaterNetwork``, ``PowerNetwork`` and ``GasNetwork``: its model, its incidents, where an
incident or a place is, which sensors to put where (and the asset limits and metered areas to
register with them), and how its sensors read a solution.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sensors.catalogue import SENSOR_TYPES, Sensor
from simulators import gas as gasmod
from simulators import power as powermod
from simulators import water as watermod
from simulators.geo import metric_to_lonlat, place, project
from simulators.profiles import POWER_LOAD_PATTERN, WATER_DEMAND_PATTERN, pattern_at
from simulators.spec import IncidentSpec, NetworkSpec, Scenario

# The example grids' loads times the daily pattern (peak 1.30) put the evening peak slightly
# over the equipment ratings (a 10 kV cable at 610 A against 600 A, a transformer at 101 %):
# a healthy network is planned with headroom, so a normal day peaks at 85 % of that (about
# 86 % transformer loading) and only incidents push equipment over its limits.
POWER_PEAK_SHARE = 0.85
TANK_OVERFLOW_M = 0.1  # [m] overflow rim above a tank's top operating level
TANK_LOW_MARGIN_M = 0.5  # [m] low-level alarm above its bottom operating level
DAY_S = 86_400
# days without incidents that a model-derived pressure band covers: tanks on a network such as
# Net6 do not repeat their levels from one day to the next
BAND_DAYS = 2

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

Values = list[dict[str, float]]  # per sensor of the world, quantity -> noise-free value


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
    ref: tuple  # what it reads, per kind (see each network's ``read``)
    xy: tuple[float, float]  # EPSG:4544 [m]
    confinement: float = 1.0


@dataclass
class World:
    scenario: Scenario
    start_ms: int = 0
    sensors: list[SimSensor] = field(default_factory=list)
    # the scenario's networks in the order their physics is stepped (water, power, gas)
    networks: dict[str, Network] = field(default_factory=dict)
    incident_lonlat: dict[int, tuple[float, float]] = field(default_factory=dict)
    place_lonlat: dict[str, tuple[float, float]] = field(default_factory=dict)
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
    _ids: set[str] = field(default_factory=set)

    def add_sensor(
        self,
        stype: str,
        sid: str,
        ref: tuple,
        lon: float,
        lat: float,
        xy: Any,
        confinement: float = 1.0,
    ) -> bool:
        """Add a sensor of type ``stype`` at (``lon``, ``lat``), ``xy`` in EPSG:4544 [m];
        False if ``sid`` is already there (a name listed twice)."""
        if sid in self._ids:
            return False
        self._ids.add(sid)
        network = SENSOR_TYPES[stype].utility.value
        sensor = Sensor(
            sensor_id=sid,
            utility=SENSOR_TYPES[stype].utility,
            sensor_type=stype,
            name=f"{self.scenario.name} {stype} {sid}",
            lon=round(float(lon), 7),
            lat=round(float(lat), 7),
            asset_id=f"sim:{network}:{ref[-1] if isinstance(ref[-1], str) else ref[1]}",
        )
        self.sensors.append(
            SimSensor(sensor, network, ref, (float(xy[0]), float(xy[1])), confinement)
        )
        return True

    def truth(
        self, t_s: float, *, counterfactuals: bool = True
    ) -> tuple[Values, Values, dict[int, Values]]:
        """Noise-free values of every sensor at ``t_s``: with the incidents and, when
        ``counterfactuals``, without any (baseline) and per incident without that one.

        Without ``counterfactuals`` the baseline is returned as the values with incidents and
        the counterfactual water models are not advanced (they catch up when next asked,
        in one long step where the network has no tanks)."""
        ts_ms = self.start_ms + round(t_s * 1000)
        n = len(self.sensors)
        with_inc: Values = [{} for _ in range(n)]
        base: Values = [{} for _ in range(n)] if counterfactuals else with_inc
        without: dict[int, Values] = {}
        for net in self.networks.values():
            net.read(net.sim, t_s, ts_ms, with_inc, jump=False)
            if not counterfactuals:
                continue
            net.read(net.base, t_s, ts_ms, base, jump=True)
            for eid in net.event_ids:
                # with one incident, the baseline is its counterfactual
                without[eid] = base if len(net.event_ids) == 1 else [{} for _ in range(n)]
            for eid, sim in net.without.items():
                net.read(sim, t_s, ts_ms, without[eid], jump=True)
        return with_inc, base, without

    def close(self) -> None:
        for net in self.networks.values():
            net.close()


def build_world(scn: Scenario, *, start_ms: int) -> World:
    """Load, check and instrument the scenario's networks (ScenarioError on any mistake)."""
    world = World(scenario=scn, start_ms=start_ms)
    try:
        for utility, spec in scn.networks.named().items():
            incidents = [inc for inc in scn.incidents if inc.network == utility]
            world.networks[utility] = NETWORK_KINDS[utility](world, spec, incidents)
        for i, p in enumerate(scn.places):
            lonlat = world.networks[p.network].element_lonlat(p.element)
            if isinstance(lonlat, str):
                raise scn.fail(("places", i, "element"), lonlat)
            world.place_lonlat[p.name] = lonlat
    except BaseException:
        world.close()
        raise
    return world


class Network:
    """One utility's network in a run: its model checked against the scenario, placed in
    Chengdu and instrumented, and simulated three ways: with every incident (``sim``), with
    none (``base``) and, where it has several incidents, per incident with every other one
    (``without``, the counterfactual that tells which sensors that incident affected)."""

    physics: Any  # its module: load_network(name), check_incident(model, incident)
    physics_incident: ClassVar[Callable[..., Any]]  # the module's incident dataclass
    simulation: ClassVar[Callable[..., Any]]  # the module's simulation: (model, incidents, cache)
    param_names: ClassVar[dict[str, str]] = {"ramp": "ramp_s"}  # scenario -> physics

    sim: Any = None
    base: Any = None

    def __init__(self, world: World, spec: NetworkSpec, incidents: list[IncidentSpec]) -> None:
        self.spec = spec
        self.without: dict[int, Any] = {}  # event id -> simulation without that incident
        try:
            self._build(world, incidents)
        except BaseException:
            self.close()
            raise

    def _build(self, world: World, incidents: list[IncidentSpec]) -> None:
        scn, spec = world.scenario, self.spec
        model = self.load(scn)
        physics = []
        for inc in incidents:
            params = {self.param_names.get(k, k): float(v) for k, v in inc.params.items()}
            m = type(self).physics_incident(
                kind=inc.type, element=inc.element, start_s=inc.start_s, end_s=inc.end_s, **params
            )
            problem = self.check(model, m)
            if problem:
                raise scn.fail((*inc.loc, "element"), problem)
            physics.append(m)
        self.model = self.prepare(model, physics)
        xy = self.coordinates()
        if spec.crs:
            lon, lat, metric = project(xy, spec.crs)
        else:
            lon, lat, metric = place(
                xy, scale_m=spec.scale_m, anchor_lon=spec.anchor[0], anchor_lat=spec.anchor[1]
            )
        self.lonlat = np.column_stack([lon, lat])  # per model row (node, bus, junction)
        self.xy = metric  # EPSG:4544 [m]
        new_sim = self.simulator(world)
        self.sim = new_sim(tuple(physics))
        self.base = new_sim(())
        if len(physics) > 1:
            for inc, m in zip(incidents, physics, strict=True):
                self.without[inc.event_id] = new_sim(tuple(x for x in physics if x is not m))
        self.event_ids = [inc.event_id for inc in incidents]
        for inc, m in zip(incidents, physics, strict=True):
            world.incident_lonlat[inc.event_id] = self.incident_lonlat(m)
        self.instrument(world)

    def at(self, row: int) -> tuple[float, float, Any]:
        """lon, lat and EPSG:4544 xy of a model row."""
        return self.lonlat[row, 0], self.lonlat[row, 1], self.xy[row]

    def between(self, a: int, b: int) -> tuple[float, float, Any]:
        """lon, lat and xy half-way between two rows (a link's middle)."""
        return (
            (self.lonlat[a, 0] + self.lonlat[b, 0]) / 2,
            (self.lonlat[a, 1] + self.lonlat[b, 1]) / 2,
            (self.xy[a] + self.xy[b]) / 2,
        )

    # -- what each utility describes ------------------------------------------------------------
    def load(self, scn: Scenario) -> Any:
        """The network model named by the scenario."""
        return self.physics.load_network(self.spec.model)

    def check(self, model: Any, incident: Any) -> str | None:
        """Why ``incident`` cannot happen in ``model`` (None: it can)."""
        return self.physics.check_incident(model, incident)

    def prepare(self, model: Any, incidents: list[Any]) -> Any:
        """The model ready for these incidents."""
        return model

    def coordinates(self) -> np.ndarray:
        """The model's coordinates, n x 2, one row per node, bus or junction."""
        raise NotImplementedError

    def simulator(self, world: World) -> Callable[[tuple], Any]:
        """Makes one simulation of the model with the incidents given: each on a copy of the
        model, their solutions cached together (the same active incidents solve once)."""
        cache: OrderedDict = OrderedDict()
        return lambda incidents: self.simulation(copy.deepcopy(self.model), incidents, cache=cache)

    def incident_lonlat(self, incident: Any) -> tuple[float, float]:
        raise NotImplementedError

    def element_lonlat(self, element: str) -> tuple[float, float] | str:
        """Where an element is, or why it is not in the network."""
        raise NotImplementedError

    def instrument(self, world: World) -> None:
        """Add the scenario's sensors on this network (with their asset limits and areas)."""
        raise NotImplementedError

    def read(self, sim: Any, t_s: float, ts_ms: int, dest: Values, *, jump: bool) -> None:
        """Advance ``sim`` to ``t_s`` (``ts_ms``: the wall time it stands for) and put what
        this network's sensors read into ``dest``. ``jump``: no need to see the steps between."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the simulations hold (files, libraries)."""
        for sim in (self.sim, self.base, *self.without.values()):
            if sim is not None and hasattr(sim, "close"):
                sim.close()


class WaterNetwork(Network):
    """EPANET: junctions with pressure sensors, links with flow meters, tanks with level
    sensors, and supply meters on every link out of a source as the network's metered area."""

    physics = watermod
    physics_incident = watermod.WaterIncident
    _tmp: tempfile.TemporaryDirectory | None = None  # the model as written for EPANET

    def load(self, scn: Scenario) -> Any:
        try:
            return super().load(scn)
        except Exception as exc:  # wntr raises its own errors for a malformed .inp
            raise scn.fail(
                ("networks", "water", "model"), f"cannot load {self.spec.model!r}: {exc}"
            ) from None

    def prepare(self, model: Any, incidents: list[Any]) -> Any:
        wn = watermod.prepare_network(model, incidents)
        self.names = list(wn.node_name_list)
        self.row = {n: i for i, n in enumerate(self.names)}
        return wn

    def coordinates(self) -> np.ndarray:
        return np.array([self.model.get_node(n).coordinates for n in self.names], float)

    def simulator(self, world: World) -> Callable[[tuple], Any]:
        scn = world.scenario
        step = int(scn.step_s)
        duration = int(scn.duration_s) + step
        self._tmp = tempfile.TemporaryDirectory(prefix="cityops-world-")
        # written once: every simulation of the run opens the same file
        inp = watermod.write_model(
            self.model,
            Path(self._tmp.name) / "water.inp",
            step_s=step,
            duration_s=duration,
            start_clock_s=(world.start_ms // 1000 + 8 * 3600) % 86_400,  # Chengdu time of day
        )
        return lambda incidents: watermod.WaterSim(
            self.model, step_s=step, duration_s=duration, incidents=incidents, inp=inp
        )

    def incident_lonlat(self, incident: Any) -> tuple[float, float]:
        wn = self.model
        node = watermod.incident_node(wn, incident) if incident.kind in ("leak", "burst") else None
        if node is None and incident.element in wn.link_name_list:
            link = wn.get_link(incident.element)
            a = self._node_lonlat(link.start_node_name)
            b = self._node_lonlat(link.end_node_name)
            return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
        return self._node_lonlat(node or incident.element)

    def _node_lonlat(self, name: str) -> tuple[float, float]:
        lon, lat, _ = self.at(self.row[name])
        return float(lon), float(lat)

    def element_lonlat(self, element: str) -> tuple[float, float] | str:
        if element not in self.row:
            return f"no node {element!r} in the water network"
        return self._node_lonlat(element)

    def instrument(self, world: World) -> None:
        plan = world.scenario.sensors.water
        self._pressure_sensors(world, plan.pressure)
        prefix = world.scenario.id_prefix
        for link_name in plan.flow:
            if link_name not in self.model.link_name_list:
                raise world.scenario.fail(
                    ("sensors", "water", "flow"), f"no link {link_name!r} in the water network"
                )
            link = self.model.get_link(link_name)
            a, b = link.start_node_name, link.end_node_name
            node = a if a in self.model.junction_name_list else b
            self._flow_meter(world, f"{prefix}-wf-{slug(link_name)}", link_name, node)
        if plan.inlets:
            self._metered_area(world)
        self._tank_sensors(world, plan.tanks)
        self._index_sensors(world)

    def _pressure_sensors(self, world: World, plan: int | tuple[str, ...]) -> None:
        wn = self.model
        self.base.advance_to(0)
        if isinstance(plan, int):
            # a count: spread over the junctions that serve customers at a normal pressure
            junctions = [self.row[j] for j in wn.junction_name_list if not j.endswith("-leak")]
            p0 = self.base.pressures_kpa([self.base.node_index(self.names[i]) for i in junctions])
            ok = [
                j
                for j, p in zip(junctions, p0, strict=True)
                if 250.0 <= p <= 650.0 and wn.get_node(self.names[j]).base_demand > 0
            ]
            chosen = [self.names[i] for i in spread(self.xy, ok, plan)]
        else:
            chosen = list(plan)
            for n in chosen:
                if n not in wn.junction_name_list:
                    raise world.scenario.fail(
                        ("sensors", "water", "pressure"), f"no junction {n!r} in the water network"
                    )
        bands = (
            self._model_bands(world, chosen)
            if world.scenario.sensors.water.limits == "model"
            else {}
        )
        for n in chosen:
            sid = f"{world.scenario.id_prefix}-wp-{slug(n)}"
            world.add_sensor("water_pressure", sid, ("w_node", n), *self.at(self.row[n]))
            if n in bands:
                world.asset_limits[sid] = {"pressure": bands[n]}

    def _model_bands(
        self, world: World, nodes: list[str]
    ) -> dict[str, tuple[float | None, float | None, str]]:
        """Each node's pressure alarm band round its range over the run's first ``BAND_DAYS``
        days without incidents (``gis.epanet.model_band``, as `cityops sensors limits --from-model`)."""
        from gis.epanet import model_band

        step = 600
        sim = watermod.WaterSim(
            self.model,
            step_s=step,
            duration_s=BAND_DAYS * DAY_S,
            start_clock_s=(world.start_ms // 1000 + 8 * 3600) % DAY_S,
        )
        try:
            idx = [sim.node_index(n) for n in nodes]
            rows = []
            for t in range(0, BAND_DAYS * DAY_S, step):
                sim.advance_to(t)
                rows.append(sim.pressures_kpa(idx))
            seen = np.array(rows)
        finally:
            sim.close()
        why = f"derived from the network model ({self.spec.model}, two days without incidents)"
        out: dict[str, tuple[float | None, float | None, str]] = {}
        for k, n in enumerate(nodes):
            low, high, _dead = model_band(
                "pressure", float(seen[:, k].min()), float(seen[:, k].max())
            )
            out[n] = (round(low, 1), round(high, 1), why)
        return out

    def _flow_meter(self, world: World, sid: str, link_name: str, node: str) -> None:
        """A flow meter in the middle of a link that also reads the pressure at ``node``."""
        link = self.model.get_link(link_name)
        a, b = self.row[link.start_node_name], self.row[link.end_node_name]
        world.add_sensor("water_flow", sid, ("w_link", link_name, node), *self.between(a, b))

    def _metered_area(self, world: World) -> None:
        """The network as one metered area: meters on every link out of a reservoir or tank
        (treatment works, pumping stations, service reservoirs), signed so that a positive flow
        into the network counts as supply."""
        scn, wn = world.scenario, self.model
        sources = set(wn.reservoir_name_list) | set(wn.tank_name_list)
        meters: list[tuple[str, int]] = []
        storage: list[str] = []
        for link_name in wn.link_name_list:
            link = wn.get_link(link_name)
            a, b = link.start_node_name, link.end_node_name
            if (a in sources) == (b in sources):
                continue
            sid = f"{scn.id_prefix}-wi-{slug(link_name)}"
            self._flow_meter(world, sid, link_name, b if a in sources else a)
            meters.append((sid, 1 if a in sources else -1))
            if (a if a in sources else b) in wn.tank_name_list:
                storage.append(sid)
            # a supply meter at a works or a reservoir outlet: its flow is judged by the water
            # balance of its area, and the outlet's pressure is no customer's service pressure
            why = f"supply meter on link {link_name} of {self.spec.model}: judged by the water balance"
            world.asset_limits[sid] = {"flow": (None, None, why), "pressure": (None, None, why)}
        world.metered_areas[f"{scn.id_prefix}-water"] = (
            f"{scn.name} {self.spec.model}",
            meters,
            storage,
        )

    def _tank_sensors(self, world: World, plan: str | tuple[str, ...]) -> None:
        wn = self.model
        for n in wn.tank_name_list if plan == "all" else list(plan):
            if n not in wn.tank_name_list:
                raise world.scenario.fail(
                    ("sensors", "water", "tanks"), f"no tank {n!r} in the water network"
                )
            sid = f"{world.scenario.id_prefix}-wt-{slug(n)}"
            world.add_sensor("water_tank", sid, ("w_tank", n), *self.at(self.row[n]))
            tank = wn.get_node(n)
            # a tank that fills to its top operating level is full, not overflowing: the high
            # alarm sits at the overflow, TANK_OVERFLOW_M above it; low: just above the drain
            world.asset_limits.setdefault(sid, {})["level"] = (
                round(max(float(tank.min_level), 0.0) + TANK_LOW_MARGIN_M, 2),
                round(float(tank.max_level) + TANK_OVERFLOW_M, 2),
                f"tank {n} levels {tank.min_level:.2f}-{tank.max_level:.2f} m in {self.spec.model}",
            )

    def _index_sensors(self, world: World) -> None:
        """EPANET indices of what the sensors read, and where each reading goes: pressures
        first, then each flow meter's link and its node's pressure, then tank levels."""
        sim = self.sim
        idx: dict[str, list[int]] = {
            k: [] for k in ("p_nodes", "p_pos", "f_links", "f_pos", "f_pidx", "t_nodes", "t_pos")
        }
        mine = [(k, s.ref) for k, s in enumerate(world.sensors) if s.network == "water"]
        for k, ref in mine:
            if ref[0] == "w_node":
                idx["p_nodes"].append(sim.node_index(ref[1]))
                idx["p_pos"].append(k)
        for k, ref in mine:
            if ref[0] == "w_link":
                idx["f_links"].append(sim.link_index(ref[1]))
                idx["f_pos"].append(k)
                idx["f_pidx"].append(len(idx["p_nodes"]))
                idx["p_nodes"].append(sim.node_index(ref[2]))
            elif ref[0] == "w_tank":
                idx["t_nodes"].append(sim.node_index(ref[1]))
                idx["t_pos"].append(k)
        self._idx = idx

    def read(self, sim: Any, t_s: float, ts_ms: int, dest: Values, *, jump: bool) -> None:
        idx = self._idx
        sim.advance_to(t_s, jump=jump)
        p = sim.pressures_kpa(idx["p_nodes"])
        q = sim.flows_lps(idx["f_links"])
        lv = sim.levels_m(idx["t_nodes"])
        for i, k in enumerate(idx["p_pos"]):
            dest[k]["pressure"] = float(p[i])
        for i, k in enumerate(idx["f_pos"]):
            dest[k]["flow"] = float(q[i])
            dest[k]["pressure"] = float(p[idx["f_pidx"][i]])
        for i, k in enumerate(idx["t_pos"]):
            dest[k]["level"] = float(lv[i])

    def close(self) -> None:
        super().close()
        if self._tmp is not None:
            self._tmp.cleanup()


class PowerNetwork(Network):
    """pandapower: bus monitors (voltage, the largest line current, frequency) alarmed at the
    strongest line's rating, and transformer monitors (loading, oil temperature)."""

    physics = powermod
    physics_incident = powermod.PowerIncident
    simulation = powermod.PowerSim

    def coordinates(self) -> np.ndarray:
        return powermod.bus_xy(self.model)

    def _bus_lonlat(self, bus: int) -> tuple[float, float]:
        lon, lat, _ = self.at(self.sim.bus_position(bus))
        return lon, lat

    def incident_lonlat(self, incident: Any) -> tuple[float, float]:
        net = self.model
        if incident.kind in ("line_outage", "overload"):
            row = net.line.loc[int(incident.element)]
            lon, lat, _ = self.between(
                self.sim.bus_position(int(row.from_bus)), self.sim.bus_position(int(row.to_bus))
            )
            return lon, lat
        if incident.kind in ("switch_close", "switch_open"):
            return self._bus_lonlat(int(net.switch.bus.at[int(incident.element)]))
        return self._bus_lonlat(int(net.ext_grid.bus.iloc[0]))  # the supply

    def element_lonlat(self, element: str) -> tuple[float, float] | str:
        if not element.isdigit() or int(element) not in self.model.bus.index:
            return f"no bus {element!r} in the power network"
        return self._bus_lonlat(int(element))

    def instrument(self, world: World) -> None:
        scn, net = world.scenario, self.model
        plan = scn.sensors.power
        if isinstance(plan.buses, int):
            mv = [i for i, b in enumerate(net.bus.index) if net.bus.vn_kv.at[b] <= 30.0]
            buses = [int(net.bus.index[i]) for i in spread(self.xy, mv, plan.buses)]
        else:
            buses = [self._element(scn, "buses", "bus", net.bus.index, b) for b in plan.buses]
        for b in buses:
            sid = f"{scn.id_prefix}-pb-{b}"
            i = self.sim.bus_position(b)
            world.add_sensor("power_bus", sid, ("bus", i), *self.at(i))
            # the monitor reports the largest current of the lines at the bus: alarm above the
            # rating of the strongest of them (reported at 10 kV like the currents, power.py)
            at_bus = net.line[(net.line.from_bus == b) | (net.line.to_bus == b)]
            if len(at_bus):
                vn_kv = float(net.bus.vn_kv.at[b])
                rating_a = float(at_bus.max_i_ka.max()) * 1000.0 * vn_kv / powermod.REPORT_KV
                world.asset_limits.setdefault(sid, {})["current"] = (
                    None,
                    round(rating_a, 1),
                    f"line rating {rating_a:.0f} A at bus {b} in {self.spec.model}",
                )
        trafos: Any = net.trafo.index if plan.transformers == "all" else plan.transformers
        for name in trafos:
            t = self._element(scn, "transformers", "transformer", net.trafo.index, name)
            i = self.sim.bus_position(int(net.trafo.lv_bus.at[t]))
            ref = ("trafo", net.trafo.index.get_loc(t))
            world.add_sensor("power_transformer", f"{scn.id_prefix}-pt-{t}", ref, *self.at(i))
        self._refs = [(k, s.ref) for k, s in enumerate(world.sensors) if s.network == "power"]

    @staticmethod
    def _element(scn: Scenario, key: str, what: str, index: Any, name: Any) -> int:
        """The index of a bus or transformer the scenario names."""
        if not str(name).isdigit() or int(name) not in index:
            raise scn.fail(("sensors", "power", key), f"no {what} {name!r} in the power network")
        return int(name)

    def read(self, sim: Any, t_s: float, ts_ms: int, dest: Values, *, jump: bool) -> None:
        st = sim.solve(t_s, POWER_PEAK_SHARE * pattern_at(POWER_LOAD_PATTERN, ts_ms))
        for k, (kind, pos) in self._refs:
            if kind == "bus":
                dest[k]["voltage"] = float(st.bus_voltage_v[pos])
                dest[k]["current"] = float(st.bus_current_a[pos])
                dest[k]["frequency"] = float(st.frequency_hz) if st.bus_voltage_v[pos] > 0 else 0.0
            else:
                loading = float(st.trafo_loading_pct[pos])
                dest[k]["loading"] = loading
                dest[k]["temperature"] = 25.0 + 0.5 * loading  # steady state, oil-immersed


class GasNetwork(Network):
    """pandapipes: pressure sensors on junctions, and methane detectors in rings around named
    junctions (in basements or manholes: ``confinement``) or spread as a background."""

    physics = gasmod
    physics_incident = gasmod.GasIncident
    simulation = gasmod.GasSim

    def coordinates(self) -> np.ndarray:
        return gasmod.junction_xy(self.model)

    def _position(self, name: str) -> int | None:
        """The row of the junction called ``name`` (None: no such junction)."""
        j = self.sim._by_name.get(name)
        return None if j is None else self.sim.position(j)

    def incident_lonlat(self, incident: Any) -> tuple[float, float]:
        if incident.kind == "regulator_fault":
            j = int(self.model.ext_grid.junction.iloc[0])
        else:
            j = self.sim.leak_junction(incident)
        lon, lat, _ = self.at(self.sim.position(j))
        return lon, lat

    def element_lonlat(self, element: str) -> tuple[float, float] | str:
        row = self._position(element)
        if row is None:
            return f"no junction {element!r} in the gas network"
        lon, lat, _ = self.at(row)
        return lon, lat

    def instrument(self, world: World) -> None:
        scn = world.scenario
        plan = scn.sensors.gas
        names = [str(n) for n in self.model.junction.name]
        every = list(range(len(names)))
        if isinstance(plan.pressure, int):
            chosen = spread(self.xy, every, plan.pressure)
        else:
            chosen = []
            for n in plan.pressure:
                row = self._position(n)
                if row is None:
                    raise scn.fail(
                        ("sensors", "gas", "pressure"), f"no junction {n!r} in the gas network"
                    )
                chosen.append(row)
        for i in chosen:
            sid = f"{scn.id_prefix}-gp-{slug(names[i])}"
            world.add_sensor("gas_pressure", sid, ("gas_node", i), *self.at(i))
        detectors: list[tuple[str, Any, float]] = []  # (label, xy, confinement)
        for r, ring in enumerate(plan.detectors):
            row = self._position(ring.near)
            if row is None:
                loc = ("sensors", "gas", "detectors", r, "near")
                raise scn.fail(loc, f"no junction {ring.near!r} in the gas network")
            for k in range(ring.count):
                a = 2 * np.pi * k / ring.count + 0.3
                p = self.xy[row] + ring.radius_m * np.array([np.sin(a), np.cos(a)])
                detectors.append((f"{ring.near}:{k}", p, ring.confinement))
        for i in spread(self.xy, every, plan.background_detectors):
            detectors.append((names[i], self.xy[i] + np.array([5.0, 0.0]), 1.0))
        for number, (label, p, confinement) in enumerate(detectors, start=1):
            (lon,), (lat,) = metric_to_lonlat(np.array([p[0]]), np.array([p[1]]))
            sid = f"{scn.id_prefix}-gd-{number}"
            world.add_sensor("gas_detector", sid, ("detector", label), lon, lat, p, confinement)
        self._mine = [(k, s) for k, s in enumerate(world.sensors) if s.network == "gas"]

    def read(self, sim: Any, t_s: float, ts_ms: int, dest: Values, *, jump: bool) -> None:
        st = sim.solve(t_s, pattern_at(WATER_DEMAND_PATTERN, ts_ms))
        leaks_xy = self.xy[list(st.leak_junctions)] if st.leak_junctions else np.zeros((0, 2))
        wind = self.spec.wind
        for k, s in self._mine:
            if s.ref[0] != "detector":
                continue
            lel = 0.0
            if len(leaks_xy):
                lel = gasmod.concentration_lel(
                    leaks_xy,
                    np.asarray(st.leak_kg_s),
                    np.array([s.xy]),
                    wind_speed_m_s=wind.speed_m_s,
                    wind_from_deg=wind.from_deg,
                    confinement=s.confinement,
                )[0]
            dest[k]["gas_concentration"] = GAS_BACKGROUND_LEL + float(lel)
        for k, s in self._mine:
            if s.ref[0] == "gas_node":
                dest[k]["pressure"] = float(st.junction_p_kpa[s.ref[1]])


NETWORK_KINDS: dict[str, type[Network]] = {
    "water": WaterNetwork,
    "power": PowerNetwork,
    "gas": GasNetwork,
}
