"""Gas distribution physics: steady pipe flow (pandapipes) with leaks, and gas near the leaks.

The model is pandapipes' ``schutterwald`` network (a real town's distribution: 2,559
junctions and pipes, 1,506 consumers), its supply raised to 1.8 bar gauge (180 kPa, the
medium-pressure B network of Chengdu downstream of the regulators). Consumer demand follows the
daily demand pattern (simulators/profiles.py).

pandapipes has no leak element: a leak is a sink whose mass flow is solved against the
orifice equation at the pressure the pipe flow gives there (a bracketed secant over a few
pipeflows, ``GasSim._solve_leaks``); a break larger than the pipes can feed is limited by them. At these pressures the outflow is choked (p_abs / p_atm > 1.85 for methane), so

    m = Cd * A * p_abs * sqrt(k / (R T) * (2 / (k + 1)) ** ((k + 1) / (k - 1)))   [kg/s]

and subsonic flow, ``m = Cd * A * sqrt(2 rho dp)``, is used below that ratio.

Gas near a leak (detectors, %LEL): a ground-level Gaussian plume (Briggs urban dispersion
coefficients, neutral class D) carried by the wind, plus isotropic near-field diffusion
``Q / (2 pi K r)`` that reaches upwind detectors, times a confinement factor for detectors in
manholes, basements or kitchens where gas accumulates. Concentration falls with distance from
the leak and is highest downwind.

Incidents: ``leak`` (area growing over ``ramp_s``), ``pipe_break`` (the pipe's full bore),
``regulator_fault`` (supply pressure set to ``p_bar``).

References: Lohmeier et al., "Pandapipes: An Open-Source Piping Grid Calculation Package for
Multi-Energy Grid Simulations", Sustainability 12(23) 2020; Briggs (1973) via Hanna, Briggs &
Hosker, Handbook on Atmospheric Diffusion (1982); GB 15322 (20 %LEL first alarm level).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

GAS_NETWORKS = ("schutterwald",)
GAS_INCIDENTS = ("leak", "pipe_break", "regulator_fault")
SUPPLY_BAR = 1.8  # [bar gauge]
P_ATM_PA = 101_325.0
CD = 0.6
K_CH4 = 1.31  # heat capacity ratio of methane
R_CH4 = 518.3  # [J/(kg K)]
T_GAS_K = 283.15
RHO_CH4_AIR_KG_M3 = 0.68  # methane at ambient conditions
LEL_VOL_FRACTION = 0.05  # methane lower explosive limit, 5 vol %
K_DIFF_M2_S = 1.0  # near-ground eddy diffusivity for the near field [m2/s]


@dataclass(frozen=True, slots=True)
class GasIncident:
    kind: str  # one of GAS_INCIDENTS
    element: str  # junction name (leak), pipe index (pipe_break), "supply" (regulator_fault)
    start_s: float
    end_s: float | None = None
    area_cm2: float = 0.0  # [cm2] leak orifice
    ramp_s: float = 0.0  # [s] growth of a leak to its full area
    p_bar: float = SUPPLY_BAR  # regulator_fault: the supply pressure it gives [bar gauge]


def load_network(name: str):
    import pandapipes.networks as pin

    if name != "schutterwald":
        raise ValueError(f"unknown gas network {name!r} (one of {', '.join(GAS_NETWORKS)})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = pin.schutterwald()
    net.ext_grid["p_bar"] = SUPPLY_BAR
    return net


def junction_xy(net) -> np.ndarray:
    """Junction coordinates [m] (Gauss-Kruger zone 3 in the example), n x 2."""
    return net.junction_geodata.loc[net.junction.index, ["x", "y"]].to_numpy(float)


def orifice_mass_flow(p_gauge_bar: float, area_cm2: float, cd: float = CD) -> float:
    """Mass flow [kg/s] of methane out of a hole of ``area_cm2`` at ``p_gauge_bar``."""
    if area_cm2 <= 0 or p_gauge_bar <= 0:
        return 0.0
    a = area_cm2 * 1e-4
    p_abs = p_gauge_bar * 1e5 + P_ATM_PA
    critical = ((K_CH4 + 1) / 2) ** (K_CH4 / (K_CH4 - 1))
    if p_abs / P_ATM_PA >= critical:
        psi = math.sqrt(
            K_CH4 / (R_CH4 * T_GAS_K) * (2 / (K_CH4 + 1)) ** ((K_CH4 + 1) / (K_CH4 - 1))
        )
        return cd * a * p_abs * psi
    rho = p_abs / (R_CH4 * T_GAS_K)
    return cd * a * math.sqrt(2 * rho * (p_abs - P_ATM_PA))


def concentration_lel(
    leak_xy: np.ndarray,
    q_kg_s: np.ndarray,
    detector_xy: np.ndarray,
    *,
    wind_speed_m_s: float,
    wind_from_deg: float,
    confinement: float = 1.0,
) -> np.ndarray:
    """Gas concentration [%LEL] at detectors from leaks of ``q_kg_s`` [kg/s] (pure).

    ``wind_from_deg``: meteorological direction the wind blows from, clockwise from north.
    """
    det = np.atleast_2d(np.asarray(detector_xy, float))
    out = np.zeros(len(det))
    u = max(wind_speed_m_s, 0.5)
    to = math.radians(wind_from_deg + 180.0)
    down = np.array([math.sin(to), math.cos(to)])
    cross = np.array([down[1], -down[0]])
    for (lx, ly), q in zip(np.atleast_2d(leak_xy), np.atleast_1d(q_kg_s), strict=True):
        if q <= 0:
            continue
        d = det - np.array([lx, ly])
        x = d @ down
        y = d @ cross
        r = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1.0)
        xp = np.maximum(x, 1.0)
        sy = 0.16 * xp / np.sqrt(1 + 0.0004 * xp)
        sz = 0.14 * xp / np.sqrt(1 + 0.0003 * xp)
        plume = np.where(x > 0, q / (math.pi * u * sy * sz) * np.exp(-(y**2) / (2 * sy**2)), 0.0)
        near = q / (2 * math.pi * K_DIFF_M2_S * r) * np.exp(-r / 50.0)
        out += (plume + near) * confinement
    vol_fraction = out / RHO_CH4_AIR_KG_M3
    return np.minimum(vol_fraction / LEL_VOL_FRACTION * 100.0, 100.0)


def check_incident(net, inc: GasIncident) -> str | None:
    if inc.kind not in GAS_INCIDENTS:
        return f"unknown gas incident type {inc.kind!r} (one of {', '.join(GAS_INCIDENTS)})"
    if inc.kind == "leak":
        if inc.element not in set(net.junction.name):
            return f"no junction {inc.element!r} in the gas network"
        if inc.area_cm2 <= 0:
            return "area_cm2 must be > 0"
    elif inc.kind == "pipe_break":
        if not inc.element.isdigit() or int(inc.element) not in net.pipe.index:
            return f"no pipe {inc.element!r} in the gas network"
    elif inc.kind == "regulator_fault" and not 0.0 <= inc.p_bar <= 10.0:
        return "p_bar must be within 0-10 bar"
    return None


@dataclass(frozen=True, slots=True)
class GasState:
    junction_p_kpa: np.ndarray  # gauge [kPa] per junction (order of net.junction)
    leak_junctions: tuple[int, ...]  # positions of leaking junctions
    leak_kg_s: tuple[float, ...]
    supply_kg_s: float


class GasSim:
    """Pipe flows of one gas network under demand multipliers and incidents, cached by state."""

    def __init__(
        self,
        net,
        incidents: tuple[GasIncident, ...] = (),
        *,
        cache: OrderedDict[tuple, GasState] | None = None,
    ) -> None:
        """``cache``: shared by sims of the same network (see PowerSim)."""
        import pandapipes as ppi

        self.net = net
        self.incidents = incidents
        self._pos = {int(j): i for i, j in enumerate(net.junction.index)}
        self._by_name = {
            str(n): int(j) for j, n in zip(net.junction.index, net.junction.name, strict=True)
        }
        self._base_scaling = net.sink.scaling.to_numpy().copy()
        self._base_p = float(net.ext_grid.p_bar.iloc[0])
        self._leak_sink: dict[GasIncident, int] = {}
        self._leak_junction: dict[GasIncident, int] = {}
        for inc in incidents:
            if inc.kind in ("leak", "pipe_break"):
                j = self.leak_junction(inc)
                self._leak_junction[inc] = j
                self._leak_sink[inc] = ppi.create_sink(net, j, mdot_kg_per_s=0.0, name="leak")
        self._leak_rows = list(self._leak_sink.values())
        self._base_scaling = net.sink.scaling.to_numpy().copy()  # leak sinks included
        self._cache: OrderedDict[tuple, GasState] = OrderedDict() if cache is None else cache
        self._last_s = 0.95  # leak flow over its flow at supply pressure, last solution

    def leak_junction(self, inc: GasIncident) -> int:
        if inc.kind == "leak":
            return self._by_name[inc.element]
        return int(self.net.pipe.from_junction.at[int(inc.element)])

    def leak_area_cm2(self, inc: GasIncident, t_s: float) -> float:
        if not (inc.start_s <= t_s and (inc.end_s is None or t_s < inc.end_s)):
            return 0.0
        if inc.kind == "pipe_break":
            d_mm = float(self.net.pipe.inner_diameter_mm.at[int(inc.element)])
            return math.pi * (d_mm / 20.0) ** 2  # the full bore [cm2]
        if inc.ramp_s > 0:
            return inc.area_cm2 * min(1.0, (t_s - inc.start_s) / inc.ramp_s)
        return inc.area_cm2

    def solve(self, t_s: float, demand_mult: float) -> GasState:
        areas = tuple(round(self.leak_area_cm2(inc, t_s), 2) for inc in self._leak_sink)
        supply = self._base_p
        for inc in self.incidents:
            if (
                inc.kind == "regulator_fault"
                and inc.start_s <= t_s
                and (inc.end_s is None or t_s < inc.end_s)
            ):
                supply = inc.p_bar
        demand_mult = round(demand_mult / 0.02) * 0.02  # 2 % steps: a pipeflow is 40-150 ms
        leaking = tuple(
            (self._leak_junction[inc], a)
            for inc, a in zip(self._leak_sink, areas, strict=True)
            if a > 0
        )
        key = (round(demand_mult, 2), leaking, supply)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        state = self._run(round(demand_mult, 2), areas, supply)
        self._cache[key] = state
        if len(self._cache) > 1024:
            self._cache.popitem(last=False)
        return state

    def _pipeflow(self) -> None:
        import pandapipes as ppi

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ppi.pipeflow(self.net)

    def _run(self, demand_mult: float, areas: tuple[float, ...], supply_bar: float) -> GasState:
        net = self.net
        consumers = np.ones(len(net.sink), bool)
        consumers[[net.sink.index.get_loc(r) for r in self._leak_rows]] = False
        scaling = net.sink.scaling.to_numpy().copy()
        scaling[consumers] = self._base_scaling[consumers] * demand_mult
        net.sink["scaling"] = scaling
        net.ext_grid["p_bar"] = supply_bar
        juncs = [self._pos[self._leak_junction[inc]] for inc in self._leak_sink]
        m_max = np.array([orifice_mass_flow(supply_bar, a) for a in areas])
        m = self._solve_leaks(juncs, areas, m_max)
        if len(m):
            self._last_s = float(m.sum() / max(m_max.sum(), 1e-12))
        p_kpa = net.res_junction.p_bar.to_numpy() * 100.0
        live = [i for i, a in enumerate(areas) if a > 0]
        return GasState(
            junction_p_kpa=np.nan_to_num(p_kpa, nan=0.0),
            leak_junctions=tuple(juncs[i] for i in live),
            leak_kg_s=tuple(float(m[i]) for i in live),
            supply_kg_s=float(-net.res_ext_grid.mdot_kg_per_s.sum()),
        )

    # long: the bracketed secant reads best as one loop with its bracket updates side by side
    def _solve_leaks(
        self, juncs: list[int], areas: tuple[float, ...], m_max: np.ndarray
    ) -> np.ndarray:
        """Leak flows where the sinks equal the orifice flow at the pressure they leave.

        The leaks scale together, ``m = s * m_max`` (``m_max``: orifice flow at supply
        pressure), and ``g(s) = sum(s m_max) - sum(orifice(p(s)))`` rises with ``s`` from
        below zero at 0 to at least zero at 1: a bracketed secant (Illinois) finds the root
        in a few pipe flows. A state the network cannot deliver (no convergence, or
        a pressure below zero at a leak) counts as too much flow.
        """
        net = self.net
        rows = self._leak_rows

        def flow(sv: float) -> float | None:
            for row, mi in zip(rows, sv * m_max, strict=True):
                net.sink.at[row, "mdot_kg_per_s"] = float(mi)
            try:
                self._pipeflow()
            except Exception as exc:  # PipeflowNotConverged
                if "converge" not in str(exc):
                    raise
                return None
            p = net.res_junction.p_bar.to_numpy()[juncs]
            if np.any(p < 0):
                return None
            out = sum(orifice_mass_flow(pi, a) for pi, a in zip(p, areas, strict=True))
            return float(sv * m_max.sum() - out)

        if not len(m_max) or m_max.sum() <= 0:
            net.sink.loc[rows, "mdot_kg_per_s"] = 0.0
            self._pipeflow()
            return np.zeros(len(m_max))
        tol = 0.005 * m_max.sum()
        lo, g_lo = 0.0, -m_max.sum()  # no leak flow: the orifice gives at most m_max
        hi, g_hi = 1.0, None
        s = min(max(self._last_s, 0.02), 0.999)
        side = 0
        for _ in range(30):
            g = flow(s)
            if g is not None and abs(g) <= tol:
                return s * m_max
            if g is None or g > 0:
                hi, g_hi = s, g
                if side == 1 and g_lo is not None:
                    g_lo /= 2  # Illinois: stop the retained end from stalling the secant
                side = 1
            else:
                lo, g_lo = s, g
                if side == -1 and g_hi is not None:
                    g_hi /= 2
                side = -1
            if hi - lo < 1e-4:
                break
            if g_hi is None:  # the upper end is infeasible: bisect
                s = (lo + hi) / 2
            else:
                s = lo - g_lo * (hi - lo) / (g_hi - g_lo)
                if not lo < s < hi:
                    s = (lo + hi) / 2
        g = flow(lo)  # the feasible end, so that the results match the flows returned
        if g is None:
            raise RuntimeError("gas pipe flow did not converge even with the leaks reduced")
        return lo * m_max

    def position(self, junction: int) -> int:
        return self._pos[junction]

    def junction_by_name(self, name: str) -> int:
        return self._by_name[name]
