"""Fault location on a radial power feeder from what its sensors see (pure: no I/O).

Distribution automation places a permanent fault by the feeder's topology and the state its
monitors report (FLISR: fault location, isolation and service restoration): a fault on a line
de-energises everything the line feeds, so the fault lies in the *fault section*, between the
last monitor that still sees voltage (or has not seen fault current) and the first one that lost
it. This is the fault-indicator / loss-of-voltage section location of distribution automation
(M. Kezunovic, "Smart Fault Location for Smart Grids", IEEE Trans. Smart Grid 2(1), 2011,
11-22, which reviews it beside impedance-based methods; J. Zhu, D. L. Lubkeman and A. A. Girgis,
"Automated fault location and diagnosis on electric power distribution feeders", IEEE Trans.
Power Delivery 12(2), 1997, 801-809, who rank the candidate sections it leaves).

How it works:

1. **Orientation.** The feeder's normal state is a tree: each node is fed from the nearest open
   source (substation) along the shortest path through closed elements (normally-open tie
   switches stop it), as ``gis.network`` orients its traces. Each node gets its *parent link*;
   the links from a source to a node are its *supply path*.
2. **Loss of supply** (some sensors ``dead``). A fault on link ``e`` de-energises exactly the
   nodes downstream of ``e``. For each link, count the sensors that disagree with that
   hypothesis: dead sensors *not* downstream of ``e`` and live sensors downstream of it. The
   links with no disagreement are the fault section (downstream of the deepest live sensor on
   the dead sensors' common supply path, upstream of every dead one). Links are scored by a
   posterior ``P(e | states) ∝ length_e x eps^mismatches x (1 - eps)^agreements``: a fault rate
   per km (faults are proportional to exposure: Billinton & Allan, "Reliability Evaluation of
   Power Systems", 1996, ch. 7) times the chance of the states if each sensor errs
   independently with probability ``SENSOR_ERROR`` (a dead monitor that is really only silent,
   a stale reading). So a lone inconsistent sensor lowers a section's score rather than emptying
   it. Ties go to the link nearer the source (nearer the live boundary).
3. **Overload** (some sensors ``overloaded``, none dead). A bus monitor reports the largest
   current of the lines at its bus, which on a radial feeder is the line feeding it; a
   transformer monitor watches its transformer. The extra load lies below what the deepest
   over-current sensor watches (its current passes through every sensor upstream of it), and it
   pulls the voltage down most beyond itself: the first candidate is the line the deepest
   over-current sensor watches, then the lines below that sensor that have every ``low``-voltage
   sensor below it downstream (above their common supply path's end; a line that leaves some
   out ranks lower), nearest the over-current sensor first (live sensors below say nothing: the
   sag grows along the overloaded path, so those near its top stay within their limits); then
   the lines the other over-current sensors watch, deepest first. Low voltages under
   another substation than the over-current sensor's are a sag of the supply, not a line
   (FaultError).

A link of length 0 beside longer ones (a switch bay between a bus and its switch) is a
connection, not a line: it has no exposure and is never a candidate; the overload's "line a
sensor watches" is found past such bays.

Only one fault at a time is assumed (two simultaneous faults show as a section with
mismatches). Sensors on nodes no source reaches in the normal state are ignored.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from gis.network import Network, NetworkError

DEAD = "dead"  # voltage lost
LIVE = "live"  # voltage normal
OVERLOADED = "overloaded"  # over-current (a line or a transformer above its rating); live too
LOW = "low"  # voltage below its limit but not lost (live too): where an overload pulls it down
STATES = frozenset({DEAD, LIVE, OVERLOADED, LOW})
SENSOR_ERROR = 0.05  # [-] chance that one sensor's state is wrong
MIN_LENGTH_M = 1.0  # a line without a length still has some exposure (a layer without lengths)


class FaultError(NetworkError):
    """The observations place nothing (no dead or over-current sensor on the network)."""


def exposures(net: Network) -> dict[str, float]:
    """Each link's exposure to faults [m]: its length. A link of length 0 next to longer ones
    is a connection (a switch bay), not a line, and is never a candidate; in a layer with no
    lengths at all every link counts ``MIN_LENGTH_M``."""
    if any(lk.length_m > 0 for lk in net.links.values()):
        return {lid: max(lk.length_m, 0.0) for lid, lk in net.links.items()}
    return dict.fromkeys(net.links, MIN_LENGTH_M)


@dataclass(frozen=True, slots=True)
class FaultCandidate:
    line: str
    score: float  # fault: posterior share over the links; overload: 1 for the watched line
    node: str  # the line's downstream end
    kind: str  # fault | overload
    mismatches: int = 0  # sensors whose state this hypothesis does not explain


@dataclass(frozen=True, slots=True)
class FeederTree:
    """The network's normal state as a tree: each fed node's parent link and distance."""

    parent_link: dict[str, str]  # node -> the link that feeds it (sources have none)
    parent: dict[str, str]  # node -> the node that feeds it
    distance_m: dict[str, float]  # from its source along the supply path
    depth: dict[str, int]  # links from its source

    def supply_path(self, node: str) -> list[str]:
        """The links from the node's source down to ``node`` (source end first)."""
        path = []
        while node in self.parent_link:
            path.append(self.parent_link[node])
            node = self.parent[node]
        return path[::-1]

    def root(self, node: str) -> str:
        """The source that feeds ``node``."""
        while node in self.parent:
            node = self.parent[node]
        return node

    def children(self) -> dict[str, list[str]]:
        """Node -> the links it feeds (sorted)."""
        out: dict[str, list[str]] = {}
        for child, link in self.parent_link.items():
            out.setdefault(self.parent[child], []).append(link)
        return {k: sorted(v) for k, v in out.items()}


def feeder_tree(net: Network) -> FeederTree:
    """Each node fed along the shortest path from the nearest open source, through open links
    and nodes that are not open devices (normally-open switches stop the walk); ties go to the
    smaller ids, so the tree is the same at every call."""
    dist: dict[str, float] = {}
    depth: dict[str, int] = {}
    parent: dict[str, str] = {}
    parent_link: dict[str, str] = {}
    heap: list[tuple[float, str, str, str]] = [(0.0, s, "", "") for s in sorted(net.sources())]
    heapq.heapify(heap)
    while heap:
        d, n, via, frm = heapq.heappop(heap)
        if n in dist:
            continue
        dist[n] = d
        depth[n] = depth[frm] + 1 if via else 0
        if via:
            parent[n], parent_link[n] = frm, via
        if net.nodes[n].closed and via:
            continue  # an open switch is reached but feeds nothing beyond it
        for lid, lk, m in sorted(net.open_steps(n), key=lambda s: s[0]):
            if m in dist:
                continue
            heapq.heappush(heap, (d + max(lk.length_m, MIN_LENGTH_M), m, lid, n))
    return FeederTree(parent_link, parent, dist, depth)


def locate_fault(
    net: Network,
    observations: Mapping[str, str],
    *,
    tree: FeederTree | None = None,
    top: int = 10,
    sensor_error: float = SENSOR_ERROR,
) -> list[FaultCandidate]:
    """Candidate lines for a fault, best first (the module's docstring): ``observations`` maps
    network node ids to ``dead``, ``live``, ``overloaded`` or ``low``. A loss of supply when
    any sensor is dead, else an overload (``low`` sensors narrow it down); FaultError when
    neither is seen on a node the sources reach, or no line could be the cause."""
    bad = {s for s in observations.values() if s not in STATES}
    if bad:
        raise ValueError(f"unknown sensor states {sorted(bad)} (use {sorted(STATES)})")
    t = tree if tree is not None else feeder_tree(net)
    fed = {n: s for n, s in observations.items() if n in t.distance_m}
    dead = sorted(n for n, s in fed.items() if s == DEAD)
    over = sorted(n for n, s in fed.items() if s == OVERLOADED)
    if dead:
        live = sorted(n for n, s in fed.items() if s != DEAD)
        got = _loss_of_supply(t, exposures(net), dead, live, top, sensor_error)
    elif over:
        got = _overload(t, exposures(net), over, fed, top, sensor_error)
    else:
        raise FaultError("no dead or over-current sensor on a node the sources feed")
    if not got:  # only sources (substations) dead or overloaded, with no line below them
        raise FaultError("no line leads to the sensors that saw it: the source itself")
    return got


def _loss_of_supply(
    t: FeederTree,
    exposure: Mapping[str, float],
    dead: list[str],
    live: list[str],
    top: int,
    eps: float,
) -> list[FaultCandidate]:
    dead_below: dict[str, int] = {}  # link -> dead sensors downstream of it
    live_below: dict[str, int] = {}
    for n in dead:
        for lid in t.supply_path(n):
            dead_below[lid] = dead_below.get(lid, 0) + 1
    for n in live:
        for lid in t.supply_path(n):
            live_below[lid] = live_below.get(lid, 0) + 1
    n_sensors = len(dead) + len(live)
    child = {lid: node for node, lid in t.parent_link.items()}
    weights: dict[str, tuple[float, int]] = {}
    for lid in dead_below:  # a link no dead sensor is below of explains none of them
        if exposure[lid] <= 0:
            continue
        mism = (len(dead) - dead_below[lid]) + live_below.get(lid, 0)
        length = exposure[lid]
        weights[lid] = (length * eps**mism * (1 - eps) ** (n_sensors - mism), mism)
    total = sum(w for w, _ in weights.values())
    ranked = sorted(
        weights,
        key=lambda lid: (-weights[lid][0], t.distance_m[child[lid]], lid),
    )
    return [
        FaultCandidate(lid, weights[lid][0] / total, child[lid], "fault", weights[lid][1])
        for lid in ranked[:top]
    ]


def _overload(
    t: FeederTree,
    exposure: Mapping[str, float],
    over: list[str],
    fed: Mapping[str, str],
    top: int,
    eps: float,
) -> list[FaultCandidate]:
    deepest_first = sorted(over, key=lambda n: (-t.depth[n], n))
    source = t.root(deepest_first[0])
    if any(t.root(n) != source for n, state in fed.items() if state == LOW):
        # one feeder's extra load does not pull down the buses another substation feeds
        raise FaultError("low voltage under more than one substation: a sag of the supply")
    feeds = t.children()
    child = {lid: node for node, lid in t.parent_link.items()}
    out: list[FaultCandidate] = []
    seen: set[str] = set()

    def add(lid: str, score: float, mismatches: int = 0) -> None:
        if lid not in seen:
            seen.add(lid)
            out.append(FaultCandidate(lid, score, child[lid], "overload", mismatches))

    def feeding(n: str) -> str | None:
        """The line that feeds ``n``: its parent link, or above it past switch bays."""
        while n in t.parent_link:
            if exposure[t.parent_link[n]] > 0:
                return t.parent_link[n]
            n = t.parent[n]
        return None

    def fed_by(n: str) -> list[str]:
        """The lines ``n`` feeds, past switch bays."""
        out, stack = [], list(feeds.get(n, []))
        while stack:
            lid = stack.pop()
            if exposure[lid] > 0:
                out.append(lid)
            else:
                stack.extend(feeds.get(child[lid], []))
        return sorted(out)

    deepest = deepest_first[0]
    watched = feeding(deepest)
    if watched is not None:  # a bus: the line that feeds it
        add(watched, 1.0)
    heads = fed_by(deepest)
    for lid, score, mism in _below(t, exposure, deepest, fed, eps) or [
        (lid, 1.0 / len(heads), 0) for lid in heads
    ]:
        add(lid, 0.5 * score, mism)
    for k, n in enumerate(deepest_first[1:], start=1):
        up = feeding(n)
        if up is not None:
            add(up, 0.5 / (k + 1) ** 2)
    return out[:top]


def _below(
    t: FeederTree, exposure: Mapping[str, float], node: str, fed: Mapping[str, str], eps: float
) -> list[tuple[str, float, int]]:
    """(link, score, mismatches) for the links below ``node`` with low sensors downstream: the
    fewer low sensors a link leaves out (mismatches) the better, then the nearer to ``node``;
    [] without a low sensor below ``node``. Live sensors below say nothing: the sag grows
    along the overloaded path, so the sensors at its top stay within their limits."""
    sub = {n for n in t.parent if _passes(t, n, node)}
    low = [n for n in sorted(sub) if fed.get(n) == LOW]
    if not low:
        return []
    child = {lid: n for n, lid in t.parent_link.items()}
    low_below: dict[str, int] = {}
    for n in low:
        for lid in t.supply_path(n):
            if child[lid] in sub:
                low_below[lid] = low_below.get(lid, 0) + 1
    weights: dict[str, tuple[float, int]] = {}
    for lid, c in low_below.items():
        if exposure[lid] <= 0:
            continue
        mism = len(low) - c
        weights[lid] = (eps**mism * (1 - eps) ** c, mism)
    total = sum(w for w, _ in weights.values())
    ranked = sorted(weights, key=lambda lid: (weights[lid][1], t.depth[child[lid]], lid))
    return [(lid, weights[lid][0] / total, weights[lid][1]) for lid in ranked]


def _passes(t: FeederTree, n: str, ancestor: str) -> bool:
    while n in t.parent:
        n = t.parent[n]
        if n == ancestor:
            return True
    return False
