"""Water network physics: an EPANET extended-period simulation advanced one step at a time.

The model is an EPANET ``.inp`` network (wntr's example networks such as Net3, or a utility's
own file), written once in SI units (flows [L/s], heads and pressures [m]) and driven through
the EPANET 2.2 toolkit (``wntr.epanet.toolkit``): one hydraulic solution per step, so an
incident can change the network between two steps without restarting the simulation. Demand is
pressure-driven (EPANET 2.2 PDD), so a burst that empties a zone does not produce absurd
negative pressures.

Incidents (all start at ``start_s`` seconds after the run's start, and end at ``end_s`` if set):

* ``leak``: an EPANET emitter that grows linearly to its full orifice area over ``ramp_s``
  (background leak, incipient failure);
* ``burst``: an emitter at full area at once (a main break);
* ``valve_closure``: a pipe or valve closed;
* ``pump_trip``: a pump stopped, and the controls that would restart it disabled.

A leak or burst on a pipe splits the pipe in the middle to create the leaking node. The emitter
coefficient is that of a sharp-edged orifice, ``C = Cd * A * sqrt(2 g)`` (Torricelli), so the
leak flow is ``C * sqrt(p)`` [L/s] for a pressure head ``p`` [m].

References: Rossman et al., EPANET 2.2 User Manual (EPA/600/R-20/133, 2020); Klise et al.,
"A software framework for assessing the resilience of drinking water systems to disasters with
an example earthquake case study", Environ. Model. Softw. 95 (2017) (WNTR).
"""

from __future__ import annotations

import ctypes
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

G = 9.80665  # [m/s2]
KPA_PER_M = G  # pressure head [m] of water -> [kPa]
ORIFICE_CD = 0.75  # discharge coefficient of a pipe break (Lambert 2001: 0.6-0.8)
LIBRARY_NETWORKS = ("Net1", "Net2", "Net3", "Net6", "ky4", "ky10")

WATER_INCIDENTS = ("leak", "burst", "valve_closure", "pump_trip")


@dataclass(frozen=True, slots=True)
class WaterIncident:
    kind: str  # one of WATER_INCIDENTS
    element: str  # junction or pipe (leak, burst), pipe or valve (valve_closure), pump
    start_s: float  # [s] after the run's start
    end_s: float | None = None  # [s]; None: until the end of the run
    area_cm2: float = 0.0  # [cm2] orifice area (leak, burst)
    ramp_s: float = 0.0  # [s] time for a leak to grow to its full area


def emitter_coefficient(area_cm2: float, cd: float = ORIFICE_CD) -> float:
    """EPANET emitter coefficient [L/s per m^0.5] of an orifice of ``area_cm2`` [cm2]."""
    return 1000.0 * cd * area_cm2 * 1e-4 * math.sqrt(2.0 * G)


def library_inp(name: str) -> Path:
    import wntr

    path = Path(wntr.__file__).parent / "library" / "networks" / f"{name}.inp"
    if not path.exists():
        raise FileNotFoundError(f"wntr has no example network {name!r}")
    return path


def load_network(source: str):
    """A wntr WaterNetworkModel from a library name (``Net3``), ``grid-<rows>x<cols>`` (a
    synthetic benchmark grid) or an ``.inp`` path."""
    import re

    import wntr

    grid = re.match(GRID_RE, source)
    if grid:
        return grid_network(int(grid.group(1)), int(grid.group(2)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = library_inp(source) if source in LIBRARY_NETWORKS else Path(source)
        return wntr.network.WaterNetworkModel(str(path))


def leak_node_name(element: str) -> str:
    return f"{element}-leak"


def prepare_network(wn, incidents: list[WaterIncident]):
    """Split the pipes that leak or burst so that each has a node to carry its emitter."""
    import wntr

    for inc in incidents:
        if inc.kind in ("leak", "burst") and inc.element in wn.pipe_name_list:
            node = leak_node_name(inc.element)
            if node not in wn.node_name_list:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    wn = wntr.morph.split_pipe(wn, inc.element, f"{inc.element}-b", node)
    return wn


def incident_node(wn, inc: WaterIncident) -> str:
    if inc.element in wn.pipe_name_list:
        return leak_node_name(inc.element)
    return inc.element


def check_incident(wn, inc: WaterIncident) -> str | None:
    """Why ``inc`` cannot apply to network ``wn`` (None if it can)."""
    if inc.kind not in WATER_INCIDENTS:
        return f"unknown water incident type {inc.kind!r} (one of {', '.join(WATER_INCIDENTS)})"
    if inc.kind in ("leak", "burst"):
        if inc.element not in wn.junction_name_list and inc.element not in wn.pipe_name_list:
            return f"no junction or pipe {inc.element!r} in the water network"
        if inc.area_cm2 <= 0:
            return "area_cm2 must be > 0"
    elif inc.kind == "valve_closure":
        if inc.element not in wn.pipe_name_list and inc.element not in wn.valve_name_list:
            return f"no pipe or valve {inc.element!r} in the water network"
    elif inc.kind == "pump_trip" and inc.element not in wn.pump_name_list:
        return f"no pump {inc.element!r} in the water network"
    return None


def write_model(wn, path: Path, *, step_s: int, duration_s: int, start_clock_s: int = 0) -> Path:
    """Write ``wn`` as EPANET input for a run: SI units, pressure-driven demand, ``step_s``
    hydraulic steps for ``duration_s``, patterns aligned on the local time of day."""
    import wntr

    opts = wn.options
    opts.time.hydraulic_timestep = int(step_s)
    # EPANET never steps past a reporting time: reports are not used, so one an hour lets a
    # model that is not needed catch up in long steps (patterns are hourly anyway)
    opts.time.report_timestep = max(3600, int(step_s))
    opts.time.duration = int(duration_s) + int(step_s)
    # patterns and clock controls follow local time of day at the run's start
    opts.time.pattern_start = int(start_clock_s) % 86_400
    opts.time.start_clocktime = int(start_clock_s) % 86_400
    opts.hydraulic.inpfile_units = "LPS"
    opts.hydraulic.demand_model = "PDD"
    opts.hydraulic.required_pressure = 15.0  # [m] full demand above this
    opts.hydraulic.minimum_pressure = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wntr.network.io.write_inpfile(wn, str(path), units="LPS")
    return path


class WaterSim:
    """One EPANET extended-period run, advanced with ``advance_to(t_s)``."""

    def __init__(
        self,
        wn,
        *,
        step_s: int,
        duration_s: int,
        start_clock_s: int = 0,
        incidents: tuple[WaterIncident, ...] = (),
        workdir: Path | None = None,
        inp: Path | None = None,
    ) -> None:
        """``inp``: the model already written by ``write_model`` with these times (several
        sims of one network share it); otherwise ``wn`` is written here."""
        from wntr.epanet import toolkit
        from wntr.epanet.util import EN

        self._EN = EN
        self.incidents = incidents
        self._tmp = tempfile.TemporaryDirectory(prefix="cityops-water-", dir=workdir)
        out = Path(self._tmp.name) / "model"
        if inp is None:
            inp = write_model(
                wn,
                Path(self._tmp.name) / "model.inp",
                step_s=step_s,
                duration_s=duration_s,
                start_clock_s=start_clock_s,
            )
        self._en = toolkit.ENepanet(version=2.2)
        self._en.ENopen(str(inp), str(out.with_suffix(".rpt")), str(out.with_suffix(".bin")))
        self._en.ENopenH()
        self._en.ENinitH(0)
        self.step_s = int(step_s)
        self.stateless = not wn.tank_name_list and not wn.control_name_list
        self.t: int | None = None
        self._node_index = {
            self._en.ENgetnodeid(i): i for i in range(1, self._en.ENgetcount(EN.NODECOUNT) + 1)
        }
        self._link_index = {name: self._en.ENgetlinkindex(name) for name in wn.link_name_list}
        self._sources = [self._node_index[n] for n in (*wn.reservoir_name_list, *wn.tank_name_list)]
        self._controls = [
            self._en.ENgetcontrol(i) for i in range(1, self._en.ENgetcount(EN.CONTROLCOUNT) + 1)
        ]
        # links' initial status (1 open, 0 closed), to restore when an incident on them ends
        self._initial_status = {
            idx: float(self._en.ENgetlinkvalue(idx, EN.INITSTATUS))
            for idx in self._link_index.values()
        }
        self._state: dict[tuple[str, str], float] = {}
        self._emitter_nodes = {
            inc: self._node_index[incident_node(wn, inc)]
            for inc in incidents
            if inc.kind in ("leak", "burst")
        }

    def node_index(self, name: str) -> int:
        return self._node_index[name]

    def link_index(self, name: str) -> int:
        return self._link_index[name]

    # -- incidents ------------------------------------------------------------------------
    def _target_state(self, t: float) -> dict[tuple[str, str], float]:
        """What each incident sets at time ``t``: emitter coefficients and link statuses."""
        state: dict[tuple[str, str], float] = {}
        for inc in self.incidents:
            active = inc.start_s <= t and (inc.end_s is None or t < inc.end_s)
            if inc.kind in ("leak", "burst"):
                frac = 0.0
                if active:
                    frac = (
                        1.0
                        if inc.kind == "burst" or inc.ramp_s <= 0
                        else min(1.0, max(0.0, (t - inc.start_s) / inc.ramp_s))
                    )
                key = ("emitter", str(self._emitter_nodes[inc]))
                state[key] = state.get(key, 0.0) + frac * emitter_coefficient(inc.area_cm2)
            elif inc.kind == "valve_closure":
                key = ("closed", inc.element)
                state[key] = max(state.get(key, 0.0), 1.0 if active else 0.0)
            elif inc.kind == "pump_trip":
                key = ("tripped", inc.element)
                state[key] = max(state.get(key, 0.0), 1.0 if active else 0.0)
        return state

    def _scheduled_status(self, link: int, t: float) -> float:
        """The status a link's own timer controls give it at ``t`` (the last timer before
        ``t``), or its initial status: what a link returns to when an incident on it ends."""
        EN = self._EN
        timers = [c for c in self._controls if c["linkindex"] == link and c["type"] == EN.TIMER]
        before = [c for c in timers if c["level"] <= t]
        if before:
            return float(max(before, key=lambda c: c["level"])["setting"])
        return float(self._initial_status.get(link, 1.0))

    def _apply(self, t: float) -> None:
        EN = self._EN
        for key, value in self._target_state(t).items():
            if key not in self._state and value == 0.0:
                # an incident not yet begun leaves the model as it is (its own statuses and
                # schedules: Net3's Lake pump is off until its 01:00 timer)
                self._state[key] = value
                continue
            if self._state.get(key, 0.0) == value and key in self._state:
                continue
            kind, name = key
            if kind == "emitter":
                # EPANET 2.2 keeps the last emitter flow when the coefficient is set to 0: a
                # negligible coefficient switches the leak off (its flow halves each hydraulic
                # step, under 0.01 L/s within ten 1-minute steps of a burst)
                self._en.ENsetnodevalue(int(name), EN.EMITTER, max(value, 1e-9))
            elif kind == "closed":
                idx = self._link_index[name]
                self._en.ENsetlinkvalue(
                    idx, EN.STATUS, 0.0 if value else self._scheduled_status(idx, t)
                )
            elif kind == "tripped":
                idx = self._link_index[name]
                for c in self._controls:
                    if c["linkindex"] == idx:
                        self._en.ENsetcontrol(
                            c["index"],
                            c["type"],
                            0 if value else idx,  # link index 0 disables a control
                            c["setting"],
                            c["nodeindex"],
                            c["level"],
                        )
                self._en.ENsetlinkvalue(
                    idx, EN.STATUS, 0.0 if value else self._scheduled_status(idx, t)
                )
            self._state[key] = value

    # -- stepping -------------------------------------------------------------------------
    def advance_to(self, t_s: float, *, jump: bool = False) -> None:
        """Solve the hydraulics up to time ``t_s`` [s after the start] (not backwards).

        ``jump``: in a network without tanks (no state between steps) go straight to
        ``t_s`` with one long hydraulic step, skipping the solutions in between (EPANET still
        stops at pattern and control times); ignored where there are tanks."""
        if self.t is None:
            self._apply(0)
            self.t = self._en.ENrunH()
        long_step = jump and self.stateless and t_s - self.t > self.step_s
        if long_step:
            self._en.ENsettimeparam(self._EN.HYDSTEP, int(t_s - self.t))
        try:
            self._advance(t_s)
        finally:
            if long_step:
                self._en.ENsettimeparam(self._EN.HYDSTEP, self.step_s)

    def _advance(self, t_s: float) -> None:
        assert self.t is not None
        while self.t < t_s:
            tstep = self._en.ENnextH()
            if tstep <= 0:
                raise RuntimeError(f"water model ended at {self.t} s before {t_s} s")
            self._apply(self.t + tstep)
            self.t = self._en.ENrunH()

    # -- results at the current time -------------------------------------------------------
    def _values(self, getter: str, indices: list[int], code: int) -> np.ndarray:
        # straight to the EPANET library: wntr's wrapper costs 4-5 us a value, which is most
        # of a step when thousands of sensors are read
        fn = getattr(self._en.ENlib, getter)
        project = self._en._project
        out = np.empty(len(indices))
        val = ctypes.c_double()
        ref = ctypes.byref(val)
        for k, i in enumerate(indices):
            if fn(project, i, code, ref):
                raise RuntimeError(f"EPANET {getter} error for index {i}")
            out[k] = val.value
        return out

    def pressures_kpa(self, indices: list[int]) -> np.ndarray:
        """Gauge pressure [kPa] at junctions (or water depth x g at tanks)."""
        return self._values("EN_getnodevalue", indices, self._EN.PRESSURE) * KPA_PER_M

    def levels_m(self, indices: list[int]) -> np.ndarray:
        """Water level [m] in tanks."""
        return self._values("EN_getnodevalue", indices, self._EN.PRESSURE)

    def flows_lps(self, indices: list[int]) -> np.ndarray:
        """Flow [L/s] in links, positive from start node to end node."""
        return self._values("EN_getlinkvalue", indices, self._EN.FLOW)

    def supply_lps(self) -> float:
        """Total flow out of reservoirs and tanks [L/s]: consumption plus leakage."""
        get, D = self._en.ENgetnodevalue, self._EN.DEMAND
        return -float(sum(get(i, D) for i in self._sources))

    def demand_lps(self, index: int) -> float:
        """Outflow at a node [L/s], demand plus emitter (leak) flow."""
        return float(self._en.ENgetnodevalue(index, self._EN.DEMAND))

    def close(self) -> None:
        try:
            self._en.ENcloseH()
            self._en.ENclose()
        finally:
            self._tmp.cleanup()


GRID_RE = r"^grid-(\d{1,3})x(\d{1,3})$"


def grid_inp(rows: int, cols: int, *, spacing_m: float = 150.0, seed: int = 7) -> str:
    """EPANET input (SI units) of a synthetic looped distribution grid for benchmarks:
    ``rows x cols`` junctions, pipes along both axes (``2 rows cols - rows - cols`` of them;
    71 x 71 gives 9,940), fed by a reservoir 70 m above datum through two 600 mm mains.
    Trunk rows and columns are 300 mm, the rest 150 mm; demands of 0.05-0.3 L/s per junction
    follow the daily demand pattern. Written as text: building it through wntr's API is
    ten times slower."""
    from simulators.gisnet import inp_text

    rng = np.random.default_rng(seed)
    demand = rng.uniform(0.05, 0.3, rows * cols)
    elev = rng.uniform(0.0, 10.0, rows * cols)
    j = ["[JUNCTIONS]"]
    xy = ["[COORDINATES]"]
    for r in range(rows):
        for c in range(cols):
            k = r * cols + c
            j.append(f"j{r}-{c} {elev[k]:.2f} {demand[k]:.4f} diurnal")
            xy.append(f"j{r}-{c} {c * spacing_m:.1f} {r * spacing_m:.1f}")
    xy.append(f"source {-spacing_m:.1f} {-spacing_m:.1f}")
    p = ["[PIPES]"]
    for r in range(rows):
        for c in range(cols):
            for dr, dc, tag in ((0, 1, "e"), (1, 0, "n")):
                r2, c2 = r + dr, c + dc
                if r2 < rows and c2 < cols:
                    trunk = r in (0, rows // 2) or c in (0, cols // 2)
                    d = 300 if trunk else 150
                    p.append(f"p{r}-{c}-{tag} j{r}-{c} j{r2}-{c2} {spacing_m} {d} 110 0 Open")
    p.append("main source j0-0 200 600 120 0 Open")
    p.append(f"main-2 source j{rows // 2}-0 {200 + rows * spacing_m / 2:.0f} 600 120 0 Open")
    return inp_text(
        f"cityops synthetic grid {rows}x{cols}", [*j, "[RESERVOIRS]", "source 70", *p], xy
    )


def grid_network(rows: int, cols: int, *, spacing_m: float = 150.0, seed: int = 7):
    """The grid of ``grid_inp`` as a wntr model."""
    import wntr

    with tempfile.TemporaryDirectory(prefix="cityops-grid-") as d:
        path = Path(d) / "grid.inp"
        path.write_text(grid_inp(rows, cols, spacing_m=spacing_m, seed=seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return wntr.network.WaterNetworkModel(str(path))
