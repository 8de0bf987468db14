"""Power distribution physics: AC power flow on a medium-voltage network (pandapower).

The model is one of pandapower's example grids (``mv_oberrhein``: 179 buses, 181 lines, two
HV/MV transformers, six normally-open switches; or ``cigre_mv``). They are 20 kV European
grids; cityops reports them as Chengdu 10 kV distribution: bus voltages are ``vm_pu x 10 kV``
and line currents are scaled by ``vn_kv / 10 kV`` so that the per-unit solution, and therefore
every power, loading and topology result, is unchanged.

Loads follow the daily load pattern (simulators/profiles.py, Chengdu time). Frequency is not
part of a power flow: it is modelled as the primary-control droop of a large interconnection,
``f = 50 Hz - 0.1 Hz x (P - P_ref) / P_ref``, which keeps normal variation within +/- 0.05 Hz.

Incidents:

* ``line_outage``: a line out of service; buses left without a path to a supply
  (``pandapower.topology.unsupplied_buses``) read 0 V and their lines 0 A;
* ``switch_close`` / ``switch_open``: a switch operated (closing a normally-open tie switch
  restores an outaged feeder: reconfiguration);
* ``overload``: the loads fed through a line (the buses its outage would cut off) scaled by
  ``factor``;
* ``voltage_sag``: the HV supply (external grids) set to ``vm_pu``.

References: Thurner et al., "pandapower - an Open Source Python Tool for Convenient Modeling,
Analysis and Optimization of Electric Power Systems", IEEE Trans. Power Syst. 33(6), 2018;
GB/T 12325-2008 (supply voltage deviation, +/- 7 % at 10 kV).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

REPORT_KV = 10.0  # [kV] nominal of Chengdu's distribution buses
POWER_NETWORKS = ("mv_oberrhein", "cigre_mv")
POWER_INCIDENTS = ("line_outage", "switch_close", "switch_open", "overload", "voltage_sag")
F_NOMINAL_HZ = 50.0
DROOP_HZ = 0.1  # [Hz] frequency deviation per 100 % load deviation (interconnection droop)


@dataclass(frozen=True, slots=True)
class PowerIncident:
    kind: str  # one of POWER_INCIDENTS
    element: str  # line index (line_outage, overload), switch index, or "grid" (voltage_sag)
    start_s: float
    end_s: float | None = None
    factor: float = 1.0  # overload: load multiplier
    vm_pu: float = 1.0  # voltage_sag: supply voltage [p.u.]


def load_network(name: str):
    import pandapower.networks as pn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "mv_oberrhein":
            return pn.mv_oberrhein()
        if name == "cigre_mv":
            return pn.create_cigre_network_mv(with_der=False)
    raise ValueError(f"unknown power network {name!r} (one of {', '.join(POWER_NETWORKS)})")


def bus_xy(net) -> np.ndarray:
    """Bus coordinates in metres (UTM 32N for the German example grids), n x 2."""
    import json

    from pyproj import Transformer

    lonlat = np.array([json.loads(g)["coordinates"][:2] for g in net.bus.geo])
    to_m = Transformer.from_crs("EPSG:4326", "EPSG:25832", always_xy=True)
    x, y = to_m.transform(lonlat[:, 0], lonlat[:, 1])
    return np.column_stack([x, y])


def check_incident(net, inc: PowerIncident) -> str | None:
    if inc.kind not in POWER_INCIDENTS:
        return f"unknown power incident type {inc.kind!r} (one of {', '.join(POWER_INCIDENTS)})"
    if inc.kind in ("line_outage", "overload"):
        if not inc.element.isdigit() or int(inc.element) not in net.line.index:
            return f"no line {inc.element!r} in the power network"
        if inc.kind == "overload" and inc.factor <= 0:
            return "factor must be > 0"
    elif inc.kind in ("switch_close", "switch_open"):
        if not inc.element.isdigit() or int(inc.element) not in net.switch.index:
            return f"no switch {inc.element!r} in the power network"
    elif inc.kind == "voltage_sag" and not 0.5 <= inc.vm_pu <= 1.2:
        return "vm_pu must be within 0.5-1.2"
    return None


def downstream_buses(net, line: int) -> set[int]:
    """Buses cut off from every supply if ``line`` were out of service."""
    import pandapower.topology as top

    was = bool(net.line.at[line, "in_service"])
    net.line.at[line, "in_service"] = False
    try:
        return {int(b) for b in top.unsupplied_buses(net)}
    finally:
        net.line.at[line, "in_service"] = was


@dataclass(frozen=True, slots=True)
class PowerState:
    """One power-flow solution in reporting units."""

    bus_voltage_v: np.ndarray  # per bus index order of net.bus, 0 where unsupplied
    bus_current_a: np.ndarray  # largest current of the lines at each bus [A]
    line_current_a: np.ndarray
    line_loading_pct: np.ndarray
    trafo_loading_pct: np.ndarray
    frequency_hz: float
    unsupplied: frozenset[int]


class PowerSim:
    """Power flows of one network under load multipliers and incidents, cached by state."""

    def __init__(
        self,
        net,
        incidents: tuple[PowerIncident, ...] = (),
        *,
        cache: OrderedDict[tuple, PowerState] | None = None,
    ) -> None:
        """``cache``: shared by sims of the same network, so that states with the same active
        incidents (none, typically) are solved once."""
        self.net = net
        self.incidents = incidents
        self._base_scaling = net.load.scaling.to_numpy().copy()
        self._base_line = net.line.in_service.to_numpy().copy()
        self._base_switch = net.switch.closed.to_numpy().copy()
        self._base_vm = net.ext_grid.vm_pu.to_numpy().copy()
        self._bus_pos = {int(b): i for i, b in enumerate(net.bus.index)}
        self._line_pos = {int(b): i for i, b in enumerate(net.line.index)}
        self._p_ref = float((net.load.p_mw * net.load.scaling).sum())
        self._feeder: dict[int, set[int]] = {}
        for inc in incidents:
            if inc.kind == "overload":
                self._feeder[int(inc.element)] = downstream_buses(net, int(inc.element))
        self._cache: OrderedDict[tuple, PowerState] = OrderedDict() if cache is None else cache
        # line -> its buses, to report the current at a bus
        self._line_buses = (
            net.line.from_bus.map(self._bus_pos).to_numpy(),
            net.line.to_bus.map(self._bus_pos).to_numpy(),
        )

    def active(self, t_s: float) -> tuple[PowerIncident, ...]:
        return tuple(
            inc
            for inc in self.incidents
            if inc.start_s <= t_s and (inc.end_s is None or t_s < inc.end_s)
        )

    def solve(self, t_s: float, load_mult: float) -> PowerState:
        """The network at ``t_s`` with loads at ``load_mult`` x their base (quantised to 2 %)."""
        active = self.active(t_s)
        load_mult = round(load_mult / 0.02) * 0.02  # 2 % load steps: a power flow is 30 ms
        key = (round(load_mult, 2), active)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        state = self._run(round(load_mult, 2), active)
        self._cache[key] = state
        if len(self._cache) > 2048:
            self._cache.popitem(last=False)
        return state

    def _run(self, load_mult: float, active: tuple[PowerIncident, ...]) -> PowerState:
        import pandapower as pp
        import pandapower.topology as top

        net = self.net
        scaling = self._base_scaling * load_mult
        line_ok = self._base_line.copy()
        closed = self._base_switch.copy()
        vm = self._base_vm.copy()
        load_bus = net.load.bus.to_numpy()
        for inc in active:
            if inc.kind == "line_outage":
                line_ok[net.line.index.get_loc(int(inc.element))] = False
            elif inc.kind in ("switch_close", "switch_open"):
                closed[net.switch.index.get_loc(int(inc.element))] = inc.kind == "switch_close"
            elif inc.kind == "overload":
                feeder = self._feeder[int(inc.element)]
                scaling = scaling * np.where(np.isin(load_bus, list(feeder)), inc.factor, 1.0)
            elif inc.kind == "voltage_sag":
                vm[:] = inc.vm_pu
        net.load["scaling"] = scaling
        net.line["in_service"] = line_ok
        net.switch["closed"] = closed
        net.ext_grid["vm_pu"] = vm
        unsupplied = frozenset(int(b) for b in top.unsupplied_buses(net))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, numba=False, init="auto")
        vn = net.bus.vn_kv.to_numpy()
        vm_pu = np.nan_to_num(net.res_bus.vm_pu.to_numpy(), nan=0.0)
        line_vn = net.bus.vn_kv.loc[net.line.from_bus].to_numpy()
        i_a = np.nan_to_num(net.res_line.i_ka.to_numpy(), nan=0.0) * 1000.0 * line_vn / REPORT_KV
        bus_i = np.zeros(len(vn))
        fb, tb = self._line_buses
        np.maximum.at(bus_i, fb, i_a)
        np.maximum.at(bus_i, tb, i_a)
        p_load = float((net.load.p_mw * net.load.scaling)[~net.load.bus.isin(unsupplied)].sum())
        freq = F_NOMINAL_HZ - DROOP_HZ * (p_load - self._p_ref) / self._p_ref
        return PowerState(
            bus_voltage_v=vm_pu * REPORT_KV * 1000.0,
            bus_current_a=bus_i,
            line_current_a=i_a,
            line_loading_pct=np.nan_to_num(net.res_line.loading_percent.to_numpy(), nan=0.0),
            trafo_loading_pct=np.nan_to_num(net.res_trafo.loading_percent.to_numpy(), nan=0.0),
            frequency_hz=freq,
            unsupplied=unsupplied,
        )

    def bus_position(self, bus: int) -> int:
        return self._bus_pos[bus]

    def line_position(self, line: int) -> int:
        return self._line_pos[line]
