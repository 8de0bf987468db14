"""Leak and closure localisation on the hydraulic model (pure: a wntr model and readings in,
ranked candidate pipes out).

Method (model-based sensitivity matching, after Pérez et al. 2011, "Leak localization in water
networks: a model-based methodology using pressure sensors applied to a real network in
Barcelona", and the BattLeDIM 2020 entries, Vrachimis et al. 2022):

1. the model is solved once at the incident's time of day (wntr, EPANET) for its base flows;
2. each link's conductance ``g = dq/dh`` at its base flow (Hazen-Williams: ``1 / (1.852 r
   |q|^0.852)``) gives the weighted Laplacian ``L`` of the network with the fixed-head nodes
   (reservoirs, tanks) removed: a small demand ``d`` at the free nodes changes their heads by
   ``dh = -L^-1 d``;
3. ``L`` is factorised once (sparse LU); ``L`` is symmetric, so the row of ``L^-1`` that an
   observation reads (a pressure: its node; a flow: ``g (e_i - e_j)`` of its link) is one solve
   per observation, not one per candidate: 10,000 pipes and 30 sensors take 30 solves;
4. a leak at node ``k`` explains the observed residual ``r`` (observed minus expected) by
   ``r = -s S[:, k]`` with a non-negative size ``s``; a leak on a pipe by the mean of its two
   ends' columns; a closed link ``(i, j)`` carrying ``q`` by ``q (S[:, i] - S[:, j])``. Each
   candidate is scored by the cosine between ``r`` and its signature (the share of ``|r|^2``
   its least-squares fit with ``s >= 0`` explains is its square); a wrong sign scores 0.

Observations are weighted by their noise (``sigma``) so that metres of head and litres per
second compare. Pumps and valves carry no curve here and are stiff links (a large
conductance); a network part with no path to a fixed head keeps a small regularisation so the
factorisation exists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

HW_EXPONENT = 1.852
MIN_FLOW_M3S = 1e-4  # floor on |q| in the conductance: a stagnant pipe is not infinitely stiff
STIFF_FACTOR = 100.0  # pumps and valves: this many times the median pipe conductance
REGULARISE = 1e-9  # relative diagonal for parts with no fixed head
CLOSURE_MIN_SCALE = 0.5
MAX_LEAK_M3S = 1.0  # a fitted leak above this (1,000 L/s) is not a leak: another cause
CENTRE = True
PRESSURE_SIGMA_M = 0.5  # [m] noise of a pressure residual
FLOW_SIGMA_M3S = 0.5e-3  # [m3/s] noise of a flow residual (0.5 L/s)


class LocaliseError(ValueError):
    """The model or the observations cannot be used for localisation."""


@dataclass(frozen=True, slots=True)
class Observation:
    """One residual: a pressure at ``node`` (head [m]) or a flow on ``link`` [m3/s, positive
    in the link's direction], observed minus expected."""

    kind: str  # pressure | flow
    element: str
    residual: float
    sigma: float | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    pipe: str
    score: float
    node: str  # the end of the pipe whose own signature fits best
    kind: str  # leak | closure
    size: float  # fitted leak size [m3/s] (leak) or closure scale (closure)


@dataclass
class HydraulicState:
    """A model linearised at one base state: its free nodes, links and conductances, and the
    factorised reduced Laplacian."""

    nodes: list[str]  # free nodes, in Laplacian order
    node_index: dict[str, int]
    links: list[str]
    ends: np.ndarray  # len(links) x 2, index into ``nodes`` or -1 for a fixed-head node
    end_names: list[tuple[str, str]]
    g: np.ndarray  # conductance [m3/s per m]
    q: np.ndarray  # base flow [m3/s]
    pipes: frozenset[str]
    coords: dict[str, tuple[float, float]]
    _lu: Any = field(repr=False, default=None)
    _rows: dict[tuple[str, str], np.ndarray] = field(repr=False, default_factory=dict)

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        return np.asarray(self._lu.solve(rhs))

    def row(self, kind: str, element: str) -> np.ndarray:
        """The observation's row of ``L^-1`` (over free nodes), cached."""
        key = (kind, element)
        got = self._rows.get(key)
        if got is not None:
            return got
        c = np.zeros(len(self.nodes))
        if kind == "pressure":
            if element not in self.node_index:
                raise LocaliseError(f"no free node {element!r} in the model")
            c[self.node_index[element]] = 1.0
        elif kind == "flow":
            try:
                k = self.links.index(element)
            except ValueError:
                raise LocaliseError(f"no link {element!r} in the model") from None
            i, j = self.ends[k]
            if i >= 0:
                c[i] += self.g[k]
            if j >= 0:
                c[j] -= self.g[k]
        else:
            raise LocaliseError(f"unknown observation kind {kind!r}")
        got = self.solve(c)
        self._rows[key] = got
        return got


def linearise(
    names: Sequence[str],
    fixed: Iterable[str],
    links: Sequence[tuple[str, str, str, str]],
    g: np.ndarray,
    q: np.ndarray,
    coords: Mapping[str, tuple[float, float]] | None = None,
) -> HydraulicState:
    """The state from plain arrays: node ``names``, the ``fixed`` head ones, ``links`` as
    (id, kind, from, to) with their conductances ``g`` and base flows ``q``."""
    fixed_set = set(fixed)
    free = [n for n in names if n not in fixed_set]
    if not free:
        raise LocaliseError("the model has no free (junction) nodes")
    index = {n: i for i, n in enumerate(free)}
    ends = np.array([[index.get(a, -1), index.get(b, -1)] for _, _, a, b in links], int)
    n = len(free)
    gi = np.asarray(g, float)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    for k, (i, j) in enumerate(ends):
        w = gi[k]
        if w <= 0:
            continue
        if i >= 0:
            diag[i] += w
        if j >= 0:
            diag[j] += w
        if i >= 0 and j >= 0:
            rows += [i, j]
            cols += [j, i]
            vals += [-w, -w]
    scale = float(np.median(gi[gi > 0])) if np.any(gi > 0) else 1.0
    diag += REGULARISE * scale
    lap = sp.csc_matrix(
        (
            np.concatenate([vals, diag]),
            (
                np.concatenate([rows, np.arange(n)]).astype(int),
                np.concatenate([cols, np.arange(n)]).astype(int),
            ),
        ),
        shape=(n, n),
    )
    lu = spla.splu(lap)
    return HydraulicState(
        nodes=free,
        node_index=index,
        links=[lk[0] for lk in links],
        ends=ends,
        end_names=[(a, b) for _, _, a, b in links],
        g=gi,
        q=np.asarray(q, float),
        pipes=frozenset(lk[0] for lk in links if lk[1] == "pipe"),
        coords=dict(coords or {}),
        _lu=lu,
    )


def solve_base(wn, clock_s: float = 0.0):  # -> (heads [m] by node, flows [m3/s] by link)
    """One EPANET solve of ``wn`` at local time of day ``clock_s`` (demands follow their
    patterns), on a copy: the caller's model is left as it was (gis/hydraulics.py: nothing
    written outside a temporary directory)."""
    from gis.hydraulics import run_hydraulics

    hyd = run_hydraulics(wn, clock_s=clock_s)
    return hyd.head.iloc[0].to_dict(), hyd.flowrate.iloc[0].to_dict()


def model_state(wn, clock_s: float = 0.0) -> HydraulicState:
    """Linearise a wntr model at its solution for local time of day ``clock_s`` [s]."""
    heads, flows = solve_base(wn, clock_s)
    return state_from_solution(wn, flows, heads)


def hazen_williams_conductance(length_m: float, diameter_m: float, c: float, q: float) -> float:
    r = 10.667 * length_m / (c**HW_EXPONENT * diameter_m**4.871)
    return 1.0 / (HW_EXPONENT * r * max(abs(q), MIN_FLOW_M3S) ** (HW_EXPONENT - 1.0))


def state_from_solution(
    wn, flows: Mapping[str, float], heads: Mapping[str, float] | None = None
) -> HydraulicState:
    names = list(wn.node_name_list)
    fixed = list(wn.reservoir_name_list) + list(wn.tank_name_list)
    links: list[tuple[str, str, str, str]] = []
    g: list[float] = []
    q: list[float] = []
    stiff: list[int] = []
    for name in wn.link_name_list:
        link = wn.get_link(name)
        flow = float(flows.get(name, 0.0))
        closed = str(link.initial_status).upper() in ("CLOSED", "0", "LINKSTATUS.CLOSED")
        kind = "pipe" if link.link_type == "Pipe" else link.link_type.lower()
        links.append((name, kind, link.start_node_name, link.end_node_name))
        q.append(flow)
        if closed:
            g.append(0.0)
        elif kind == "pipe":
            g.append(
                hazen_williams_conductance(
                    float(link.length), float(link.diameter), float(link.roughness), flow
                )
            )
        elif kind == "pump" and getattr(link, "pump_type", "") == "HEAD":
            # head curve H = A - B q^C: dq/dh = 1 / (B C q^(C-1)) at the base flow
            _, bb, cc = link.get_head_curve_coefficients()
            slope = float(bb) * float(cc) * max(abs(flow), MIN_FLOW_M3S) ** (float(cc) - 1.0)
            g.append(1.0 / slope if abs(flow) > MIN_FLOW_M3S and slope > 0 else 0.0)
        elif kind == "pump" and getattr(link, "pump_type", "") == "POWER" and heads:
            # constant power P = rho g q H: dH/dq = -H/q, so dq/dh = q/H at the base state
            gain = float(heads.get(link.end_node_name, 0.0)) - float(
                heads.get(link.start_node_name, 0.0)
            )
            g.append(abs(flow) / gain if abs(flow) > MIN_FLOW_M3S and gain > 0 else 0.0)
        else:
            g.append(0.0)
            stiff.append(len(g) - 1)
    garr = np.asarray(g)
    if stiff:
        med = float(np.median(garr[garr > 0])) if np.any(garr > 0) else 1.0
        garr[stiff] = STIFF_FACTOR * med
    coords = {n: tuple(map(float, wn.get_node(n).coordinates)) for n in names}
    return linearise(names, fixed, links, garr, np.asarray(q), coords)  # type: ignore[arg-type]


def _sigma(o: Observation) -> float:
    if o.sigma is not None and o.sigma > 0:
        return o.sigma
    return PRESSURE_SIGMA_M if o.kind == "pressure" else FLOW_SIGMA_M3S


def signatures(
    state: HydraulicState, observations: Sequence[Observation]
) -> tuple[np.ndarray, np.ndarray]:
    """(weighted residual vector r, weighted S: observations x free nodes)."""
    if not observations:
        raise LocaliseError("no observations")
    w = np.array([1.0 / _sigma(o) for o in observations])
    r = np.array([o.residual for o in observations], float) * w
    S = np.vstack([state.row(o.kind, o.element) for o in observations]) * w[:, None]
    return r, S


def _cosine(r: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine of r with each column of sig (sign kept) and the least-squares scale."""
    norms = np.linalg.norm(sig, axis=0)
    rn = float(np.linalg.norm(r))
    dots = r @ sig
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / (norms * max(rn, 1e-300)), 0.0)
        scale = np.where(norms > 0, dots / np.maximum(norms**2, 1e-300), 0.0)
    return cos, scale


def rank(
    state: HydraulicState,
    observations: Sequence[Observation],
    *,
    area_nodes: Iterable[str] | None = None,
    top: int = 10,
    closures: bool = True,
    max_leak_m3s: float = MAX_LEAK_M3S,
    centre: bool = CENTRE,
) -> list[Candidate]:
    """Candidate pipes best first. ``area_nodes``: only pipes with an end in these nodes (the
    metered area that saw the imbalance)."""
    r, S = signatures(state, observations)
    if not np.any(r):
        raise LocaliseError("the observations show no change")
    if centre and len(r) > 2:
        # a change common to every pressure sensor (a source's or a tank's head moving with
        # the extra demand, which the fixed-head model does not see) says nothing about where;
        # a common head change moves no flow, so flows are not centred
        u = np.array([1.0 / _sigma(o) if o.kind == "pressure" else 0.0 for o in observations])
        if np.any(u):
            u = u / np.linalg.norm(u)
            r = r - u * (u @ r)
            S = S - np.outer(u, u @ S)
    pipe_idx = np.array([k for k, name in enumerate(state.links) if name in state.pipes], int)
    if area_nodes is not None:
        allowed = {state.node_index[n] for n in area_nodes if n in state.node_index}
        pipe_idx = np.array(
            [k for k in pipe_idx if state.ends[k][0] in allowed or state.ends[k][1] in allowed],
            int,
        )
    if pipe_idx.size == 0:
        raise LocaliseError("no candidate pipes")
    zero = np.zeros((S.shape[0], 1))
    Sx = np.hstack([S, zero])  # column -1: a fixed-head node (no head change)
    ends = state.ends[pipe_idx]
    a, b = Sx[:, ends[:, 0]], Sx[:, ends[:, 1]]
    # a leak (demand s >= 0) lowers heads: r = -s * sig, so fit -r
    leak_cos, leak_s = _cosine(-r, 0.5 * (a + b))
    node_cos_a, _ = _cosine(-r, a)
    node_cos_b, _ = _cosine(-r, b)
    best_end = np.where(node_cos_a >= node_cos_b, ends[:, 0], ends[:, 1])
    scores = np.where(leak_s <= max_leak_m3s, np.clip(leak_cos, 0.0, None), 0.0)
    kinds = np.array(["leak"] * len(pipe_idx), object)
    sizes = leak_s
    if closures:
        # closing a link that carried q from i to j: injection +q at i, demand +q at j
        qk = state.q[pipe_idx]
        sig = (a - b) * qk[None, :]
        cl_cos, cl_s = _cosine(r, sig)
        # closing a link changes heads by at least its linearised signature (Sherman-Morrison
        # amplifies it, >= 1): a fit far smaller is noise matched by a pipe's shape, not a closure
        # (a bridge's closure amplifies without bound: no upper limit)
        cl_cos = np.where(cl_s >= CLOSURE_MIN_SCALE, cl_cos, 0.0)
        better = np.clip(cl_cos, 0.0, None) > scores
        scores = np.where(better, np.clip(cl_cos, 0.0, None), scores)
        kinds = np.where(better, "closure", kinds)
        sizes = np.where(better, cl_s, sizes)
    order = np.lexsort((-np.abs(sizes), -np.round(scores, 9)))[: max(1, top)]
    out = []
    for o in order:
        k = pipe_idx[o]
        end = best_end[o]
        node = state.nodes[end] if end >= 0 else state.end_names[k][0]
        out.append(
            Candidate(state.links[k], float(scores[o]), node, str(kinds[o]), float(sizes[o]))
        )
    return out


def pipe_midpoint(state: HydraulicState, pipe: str) -> tuple[float, float] | None:
    try:
        k = state.links.index(pipe)
    except ValueError:
        return None
    a, b = state.end_names[k]
    if a not in state.coords or b not in state.coords:
        return None
    (x1, y1), (x2, y2) = state.coords[a], state.coords[b]
    return (x1 + x2) / 2, (y1 + y2) / 2


def search_area(
    state: HydraulicState, candidates: Sequence[Candidate], *, buffer_m: float = 50.0
) -> dict[str, Any] | None:
    """The hull of the candidates' pipes, buffered by ``buffer_m``, as a GeoJSON geometry in
    the model's coordinates (metres)."""
    from shapely.geometry import MultiPoint, mapping

    pts = []
    for c in candidates:
        try:
            k = state.links.index(c.pipe)
        except ValueError:
            continue
        pts += [state.coords[n] for n in state.end_names[k] if n in state.coords]
    if not pts:
        return None
    return dict(mapping(MultiPoint(pts).convex_hull.buffer(buffer_m, 16)))


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])
