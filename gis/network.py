"""Network topology: traces and valve isolation on the water, gas and power graphs (pure).

A network is nodes and links with ids that connect (``from_node``/``to_node``). Isolation devices
are valve nodes (water, gas), valve links (EPANET valves) and switches (power). Sources are
reservoirs and tanks (water), gate stations (gas) and substations (power).

Valve isolation follows the segment method used by utilities (Walski 1993, "Water distribution
valve topology for reliability analysis"; Jun & Loganathan 2007): starting from the broken link,
walk the graph and stop at every isolation device; the devices met are the valves to close, the
walked links and nodes are the segment. Because the walk continues round a loop until it meets a
valve on every path, a loop needs as many valves as it has paths into the segment. Supply loss is
then whatever is no longer connected to any source once the segment and those valves are shut:
the segment plus any downstream area that was fed only through it.

Upstream and downstream have no meaning in a looped network without a hydraulic solution, so
traces orient each link from the end nearer a source to the end farther from it (shortest path
length from the nearest source); on radial feeders this is the true direction of flow.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

# household size used to turn service connections into people: China's 2020 census average
PERSONS_PER_HOUSEHOLD = 2.62

SOURCE_KINDS = {
    "water": frozenset({"reservoir", "tank"}),
    "gas": frozenset({"source"}),
    "power": frozenset({"substation"}),
}
DEVICE_NODE_KINDS = {
    "water": frozenset({"valve"}),
    "gas": frozenset({"valve"}),
    "power": frozenset({"switch"}),
}
DEVICE_LINK_KINDS = {"water": frozenset({"valve"}), "gas": frozenset(), "power": frozenset()}


@dataclass(frozen=True, slots=True)
class Node:
    node_id: str
    kind: str
    closed: bool = False  # a valve normally closed, a switch normally open
    customers: int = 0


@dataclass(frozen=True, slots=True)
class Link:
    link_id: str
    from_node: str
    to_node: str
    kind: str = "pipe"
    closed: bool = False
    length_m: float = 0.0


class NetworkError(ValueError):
    """A question the network cannot answer (unknown id, no source)."""


@dataclass(slots=True)
class Network:
    """An undirected multigraph with per-element state; build once, query many times."""

    name: str
    nodes: dict[str, Node]
    links: dict[str, Link]
    adjacency: dict[str, list[str]] = field(default_factory=dict)  # node -> link ids
    _baseline: set[str] | None = None  # supplied with nothing closed (computed once)
    _sources: frozenset[str] | None = None  # open sources (computed once: every walk asks)
    _distances: dict[str, float] | None = None
    _hops: dict[str, int] | None = None

    @classmethod
    def build(cls, name: str, nodes: Iterable[Node], links: Iterable[Link]) -> Network:
        node_map = {n.node_id: n for n in nodes}
        link_map: dict[str, Link] = {}
        adj: dict[str, list[str]] = defaultdict(list)
        for lk in links:
            link_map[lk.link_id] = lk
            adj[lk.from_node].append(lk.link_id)
            adj[lk.to_node].append(lk.link_id)
            for end in (lk.from_node, lk.to_node):
                if end not in node_map:  # dangling id: keep the topology, note the node as plain
                    node_map[end] = Node(end, "junction")
        return cls(name, node_map, link_map, dict(adj))

    def sources(self) -> frozenset[str]:
        if self._sources is None:
            kinds = SOURCE_KINDS.get(self.name, frozenset())
            self._sources = frozenset(
                n.node_id for n in self.nodes.values() if n.kind in kinds and not n.closed
            )
        return self._sources

    def is_device_node(self, node_id: str) -> bool:
        return self.nodes[node_id].kind in DEVICE_NODE_KINDS.get(self.name, frozenset())

    def is_device_link(self, link_id: str) -> bool:
        return self.links[link_id].kind in DEVICE_LINK_KINDS.get(self.name, frozenset())

    def other_end(self, link_id: str, node_id: str) -> str:
        lk = self.links[link_id]
        return lk.to_node if lk.from_node == node_id else lk.from_node

    def ends(self, link_id: str) -> tuple[str, str]:
        lk = self.links[link_id]
        return lk.from_node, lk.to_node

    def neighbours(self, node_ids: Iterable[str]) -> set[str]:
        """The nodes one link away from any of ``node_ids`` (open or closed links)."""
        return {self.other_end(lid, n) for n in node_ids for lid in self.adjacency.get(n, ())}

    def open_steps(
        self, node_id: str, closed_links: set[str] | frozenset[str] = frozenset()
    ) -> Iterator[tuple[str, Link, str]]:
        """(link id, link, node at its other end) for each open link at ``node_id`` that is not
        in ``closed_links``: the one step every walk over the network takes."""
        for lid in self.adjacency.get(node_id, ()):
            lk = self.links[lid]
            if lk.closed or lid in closed_links:
                continue
            yield lid, lk, (lk.to_node if lk.from_node == node_id else lk.from_node)

    def baseline_supplied(self) -> set[str]:
        if self._baseline is None:
            self._baseline = set(self.hops())  # the same walk as supplied() with nothing shut
        return self._baseline

    def distances(self) -> dict[str, float]:
        """Shortest path length [m] from the nearest source (for traces); computed once."""
        if self._distances is None:
            self._distances = source_distances(self)
        return self._distances

    def hops(self) -> dict[str, int]:
        """Links from the nearest source (the search heuristic of ``cut_off``); computed once.
        Breadth-first: about a third of the cost of ``distances`` on a cold graph."""
        if self._hops is None:
            hops: dict[str, int] = {}
            frontier = sorted(self.sources())
            for s in frontier:
                hops[s] = 0
            depth = 0
            while frontier:
                depth += 1
                nxt = []
                for n in frontier:
                    for _, _, m in self.open_steps(n):
                        if m in hops or self.nodes[m].closed:
                            continue
                        hops[m] = depth
                        nxt.append(m)
                frontier = nxt
            self._hops = hops
        return self._hops

    def cut_off(
        self, closed_nodes: set[str], closed_links: set[str], starts: Iterable[str]
    ) -> set[str]:
        """Nodes among ``starts``' components that no longer reach an open source.

        A best-first search from each start, nearest-to-a-source first, so a component that
        still has a source finds it along a short path instead of walking the whole network.
        """
        dist = self.hops()
        inf = 1 << 30
        sources = self.sources()
        ok: set[str] = set()
        lost: set[str] = set()
        for start in starts:
            if start in ok or start in lost or start in closed_nodes:
                continue
            seen = {start}
            heap = [(dist.get(start, inf), start)]
            found = False
            while heap:
                _, n = heapq.heappop(heap)
                if n in sources or n in ok:
                    found = True
                    break
                for _, _, m in self.open_steps(n, closed_links):
                    if m in seen or m in closed_nodes or self.nodes[m].closed:
                        continue
                    seen.add(m)
                    heapq.heappush(heap, (dist.get(m, inf), m))
            (ok if found else lost).update(seen)
        return lost

    def supplied(
        self,
        *,
        closed_nodes: set[str] | frozenset[str] = frozenset(),
        closed_links: set[str] | frozenset[str] = frozenset(),
    ) -> set[str]:
        """Nodes connected to an open source through open elements."""
        seen: set[str] = set()
        stack = [s for s in self.sources() if s not in closed_nodes]
        seen.update(stack)
        while stack:
            n = stack.pop()
            for _, _, m in self.open_steps(n, closed_links):
                if m in seen or m in closed_nodes or self.nodes[m].closed:
                    continue
                seen.add(m)
                stack.append(m)
        return seen


@dataclass(frozen=True, slots=True)
class Isolation:
    """What closing valves around a link does."""

    link_id: str
    valves_to_close: tuple[str, ...]  # device node ids and device link ids, sorted
    segment_links: tuple[str, ...]  # links inside the closed segment (includes link_id)
    segment_nodes: tuple[str, ...]
    links_without_supply: tuple[str, ...]  # segment plus links cut off beyond it
    nodes_without_supply: tuple[str, ...]
    customers_without_supply: int
    population_without_supply: int  # customers x household size [persons]
    unavailable_valves: tuple[str, ...] = ()
    # sources the segment reaches directly: shut there (reservoir or tank outlet valve, gas
    # gate station outlet, the feeder's circuit breaker at the substation)
    sources_to_shut: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Shutdown:
    """What closing chosen devices (a planned shutdown) does: who loses supply."""

    devices: tuple[str, ...]  # the valves or switches closed, sorted
    nodes_without_supply: tuple[str, ...]
    links_without_supply: tuple[str, ...]
    customers_without_supply: int
    population_without_supply: int
    already_closed: tuple[str, ...] = ()  # named devices that were closed before: no change


def plan_shutdown(
    net: Network,
    devices: Iterable[str],
    *,
    persons_per_household: float = PERSONS_PER_HOUSEHOLD,
) -> Shutdown:
    """Close ``devices`` (valve nodes or links, power switches) and find what no longer reaches
    a source: the places and pipes that lose supply for the works. An enclosed source keeps
    its part supplied. Names that are not devices of this network are refused, so a mistyped
    pipe id is not silently "closed"."""
    chosen = sorted(set(devices))
    if not chosen:
        raise NetworkError("name at least one valve (or switch) to close")
    for d in chosen:
        if d not in net.nodes and d not in net.links:
            raise NetworkError(f"no {d!r} in the {net.name} network")
        is_device = net.is_device_node(d) if d in net.nodes else net.is_device_link(d)
        if not is_device:
            kind = net.nodes[d].kind if d in net.nodes else net.links[d].kind
            raise NetworkError(f"{d!r} is a {kind}, not a valve or switch: only devices close")
    already = {d for d in chosen if (net.nodes[d] if d in net.nodes else net.links[d]).closed}
    closed_nodes = {d for d in chosen if d in net.nodes}
    closed_links = {d for d in chosen if d in net.links}
    lost_nodes, dead = _lost_when_closed(net, closed_nodes, closed_links)
    lost_links = _links_lost(net, _Segment(), lost_nodes, dead) - closed_links
    customers = sum(net.nodes[n].customers for n in lost_nodes)
    return Shutdown(
        devices=tuple(chosen),
        nodes_without_supply=tuple(sorted(lost_nodes)),
        links_without_supply=tuple(sorted(lost_links)),
        customers_without_supply=customers,
        population_without_supply=round(customers * persons_per_household),
        already_closed=tuple(sorted(already)),
    )


@dataclass(slots=True)
class _Segment:
    """What the walk from a broken link meets: the devices and sources that bound it, and the
    links and nodes inside."""

    devices: set[str] = field(default_factory=set)  # device node ids and device link ids
    sources: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)


def _walk_segment(net: Network, link_id: str, unavailable: set[str]) -> _Segment:
    """From ``link_id`` out to the first operable device (or source) on every path."""
    seg = _Segment(links={link_id})
    source_ids = net.sources()
    stack = [link_id]
    while stack:
        lk = net.links[stack.pop()]
        for n in (lk.from_node, lk.to_node):
            if n in seg.nodes:
                continue
            node = net.nodes[n]
            if net.is_device_node(n) and n not in unavailable:
                if not node.closed:
                    seg.devices.add(n)
                continue
            if n in source_ids:  # shut at the source: outlet valve, gate station, feeder breaker
                seg.sources.add(n)
                continue
            if node.closed:  # a closed valve that cannot be operated still stops water
                continue
            seg.nodes.add(n)
            stack.extend(_segment_steps(net, n, seg, unavailable))
    return seg


def _segment_steps(net: Network, node_id: str, seg: _Segment, unavailable: set[str]) -> list[str]:
    """The open links at a segment node that carry the walk on (device links stop it and are
    added to the segment's devices); adds them to the segment."""
    steps = []
    for lid in net.adjacency.get(node_id, ()):
        if lid in seg.links or net.links[lid].closed:
            continue
        if net.is_device_link(lid) and lid not in unavailable:
            seg.devices.add(lid)
            continue
        seg.links.add(lid)
        steps.append(lid)
    return steps


def segment_isolations(
    net: Network,
    facilities: Mapping[str, int],
    *,
    persons_per_household: float = PERSONS_PER_HOUSEHOLD,
) -> dict[str, tuple[int, int]]:
    """Every open pipe's (people, critical facilities) without supply when its segment is
    isolated, as ``compute_isolation`` answers them, for the whole network in one pass.

    The segments are the vertices of a graph whose edges are the devices between them (and the
    sources, tied to one root). A device between two segments closes with either, so isolating a
    segment is removing its vertex, and what loses supply is what hangs below it in a depth-first
    tree from the root: the children whose subtree reaches no higher than it (articulation
    points, Hopcroft and Tarjan 1973), with their customers and facilities summed in one walk.
    A device between more than two segments (or joined to another device) closes with each of
    them and takes the others' connection along; the segments beside one are answered by
    ``compute_isolation`` itself. ``facilities`` counts critical facilities per node."""
    seg_of_link: dict[str, int] = {}
    seg_of_node: dict[str, int] = {}
    segments: list[_Segment] = []
    for lid, lk in net.links.items():
        if lid in seg_of_link or lk.closed or net.is_device_link(lid):
            continue
        seg = _walk_segment(net, lid, set())
        for x in seg.links:
            seg_of_link[x] = len(segments)
        for n in seg.nodes:
            seg_of_node[n] = len(segments)
        segments.append(seg)
    graph = _SegmentGraph(len(segments))
    for k, seg in enumerate(segments):
        graph.customers[k] = sum(net.nodes[n].customers for n in seg.nodes)
        graph.facilities[k] = sum(facilities.get(n, 0) for n in seg.nodes)
    sources = net.sources()
    source_vertex = {src: graph.add_vertex() for src in sorted(sources)}
    for v in source_vertex.values():
        graph.connect(graph.root, v)
    for k, seg in enumerate(segments):
        for src in seg.sources:
            graph.connect(k, source_vertex[src])
    complex_segments: set[int] = set()
    hubs: dict[str, int] = {}

    def side(node_id: str) -> int | None:
        """The vertex a device link reaches at ``node_id`` (None: a closed element)."""
        node = net.nodes[node_id]
        if node_id in sources:
            return source_vertex[node_id]
        if node.closed:
            return None
        if net.is_device_node(node_id):
            return hubs.setdefault(node_id, graph.add_vertex())
        if node_id not in seg_of_node:  # a place reached only through devices
            v = graph.add_vertex(customers=node.customers, facilities=facilities.get(node_id, 0))
            seg_of_node[node_id] = v
        return seg_of_node[node_id]

    for nid, node in net.nodes.items():
        if not net.is_device_node(nid) or node.closed:
            continue
        open_links = [x for x in net.adjacency.get(nid, ()) if not net.links[x].closed]
        piped = {seg_of_link[x] for x in open_links if x in seg_of_link}
        if len(piped) <= 2 and all(x in seg_of_link for x in open_links):
            if len(piped) == 2:
                graph.connect(*piped)
            continue
        hub = side(nid)  # closes with each segment beside it, cutting the others apart too
        assert hub is not None
        for k in piped:
            graph.connect(hub, k)
        complex_segments |= piped
    for lid, lk in net.links.items():
        if lk.closed or not net.is_device_link(lid):
            continue
        a, b = side(lk.from_node), side(lk.to_node)
        if a is not None and b is not None and a != b:
            graph.connect(a, b)
    lost_customers, lost_facilities = graph.lost_below_each_vertex()
    out: dict[str, tuple[int, int]] = {}
    for k, seg in enumerate(segments):
        if k in complex_segments:
            iso = compute_isolation(
                net, next(iter(seg.links)), persons_per_household=persons_per_household
            )
            answer = (
                iso.population_without_supply,
                sum(facilities.get(n, 0) for n in iso.nodes_without_supply),
            )
        else:
            answer = (round(lost_customers[k] * persons_per_household), lost_facilities[k])
        for x in seg.links:
            out[x] = answer
    return out


class _SegmentGraph:
    """Vertices 0.. (segments first), a root joined to every source, edges kept with ids (two
    devices between the same segments are two edges: closing one leaves the other)."""

    def __init__(self, segments: int) -> None:
        self.adjacency: list[list[tuple[int, int]]] = [[] for _ in range(segments)]
        self.customers: list[int] = [0] * segments
        self.facilities: list[int] = [0] * segments
        self.edges = 0
        self.root = self.add_vertex()

    def add_vertex(self, *, customers: int = 0, facilities: int = 0) -> int:
        self.adjacency.append([])
        self.customers.append(customers)
        self.facilities.append(facilities)
        return len(self.adjacency) - 1

    def connect(self, a: int, b: int) -> None:
        if a == b:
            return
        self.adjacency[a].append((b, self.edges))
        self.adjacency[b].append((a, self.edges))
        self.edges += 1

    def lost_below_each_vertex(self) -> tuple[list[int], list[int]]:
        """Per vertex: the customers and facilities cut off from the root when it is removed
        (its own included; 0 for a vertex the root does not reach). One iterative DFS."""
        n = len(self.adjacency)
        disc = [-1] * n
        low = [0] * n
        sub_c = list(self.customers)
        sub_f = list(self.facilities)
        lost_c = [0] * n
        lost_f = [0] * n
        root = self.root
        disc[root] = low[root] = 0
        counter = 1
        stack: list[tuple[int, int, int]] = [(root, -1, 0)]  # vertex, edge in, next neighbour
        while stack:
            v, via, i = stack[-1]
            if i < len(self.adjacency[v]):
                stack[-1] = (v, via, i + 1)
                w, edge = self.adjacency[v][i]
                if edge == via:
                    continue
                if disc[w] == -1:
                    disc[w] = low[w] = counter
                    counter += 1
                    stack.append((w, edge, 0))
                else:
                    low[v] = min(low[v], disc[w])
                continue
            stack.pop()
            lost_c[v] += self.customers[v]
            lost_f[v] += self.facilities[v]
            if stack:
                parent = stack[-1][0]
                low[parent] = min(low[parent], low[v])
                sub_c[parent] += sub_c[v]
                sub_f[parent] += sub_f[v]
                if low[v] >= disc[parent]:  # v's subtree hangs on the parent alone
                    lost_c[parent] += sub_c[v]
                    lost_f[parent] += sub_f[v]
        return lost_c, lost_f


def _lost_when_closed(
    net: Network,
    closed_nodes: set[str],
    closed_links: set[str],
    *,
    inside: Iterable[str] = (),
) -> tuple[set[str], set[str]]:
    """(the places that lose supply, every node dead) once ``closed_nodes`` and ``closed_links``
    are shut (``inside``: the nodes between them, lost whatever the search finds): the
    components beyond the closed elements that no longer reach a source, among the places
    supplied before. Devices and sources carry no customers: the places, not the fittings."""
    starts = {end for lid in closed_links for end in net.ends(lid)}
    starts = (starts | net.neighbours(closed_nodes)) - closed_nodes
    cut = net.cut_off(closed_nodes, closed_links, sorted(starts))
    sources = SOURCE_KINDS.get(net.name, frozenset())
    lost = {
        n
        for n in (cut | set(inside)) & net.baseline_supplied()
        if not net.is_device_node(n) and net.nodes[n].kind not in sources
    }
    return lost, cut | closed_nodes


def _links_lost(net: Network, seg: _Segment, lost_nodes: set[str], dead: set[str]) -> set[str]:
    """The segment's links and every open link between two dead nodes at a node that is lost."""
    lost_links = set(seg.links)
    for n in lost_nodes:
        for lid in net.adjacency.get(n, ()):
            lk = net.links[lid]
            if lid in lost_links or lk.closed:
                continue
            if lk.from_node in dead and lk.to_node in dead:
                lost_links.add(lid)
    return lost_links


def compute_isolation(
    net: Network,
    link_id: str,
    *,
    unavailable: Iterable[str] = (),
    persons_per_household: float = PERSONS_PER_HOUSEHOLD,
) -> Isolation:
    """The valves to close to isolate ``link_id`` and what loses supply when they are closed.

    ``unavailable`` names valves that cannot be operated (seized, buried): the segment grows
    through them to the next valves.
    """
    if link_id not in net.links:
        raise NetworkError(f"no link {link_id!r} in the {net.name} network")
    broken = set(unavailable)
    seg = _walk_segment(net, link_id, broken)
    # a shut source stays live for its other outlets: only the segment's own links are closed
    closed_nodes = {v for v in seg.devices if v in net.nodes} | seg.nodes
    closed_links = {v for v in seg.devices if v in net.links} | seg.links
    lost_nodes, dead = _lost_when_closed(net, closed_nodes, closed_links, inside=seg.nodes)
    lost_links = _links_lost(net, seg, lost_nodes, dead)
    customers = sum(net.nodes[n].customers for n in lost_nodes)
    return Isolation(
        link_id=link_id,
        valves_to_close=tuple(sorted(seg.devices)),
        segment_links=tuple(sorted(seg.links)),
        segment_nodes=tuple(sorted(seg.nodes)),
        links_without_supply=tuple(sorted(lost_links)),
        nodes_without_supply=tuple(sorted(lost_nodes)),
        customers_without_supply=customers,
        population_without_supply=round(customers * persons_per_household),
        unavailable_valves=tuple(sorted(broken)),
        sources_to_shut=tuple(sorted(seg.sources)),
    )


# --- advice proportionate to the event (issue 15 item 4; docs/decisions/0056) -------------------

# a leak at least this large [L/s], or a critical incident, is a burst: isolate it whatever it
# costs (a main burst floods streets and undermines the road within the hour)
BURST_LPS = 10.0
# a leak up to this size [L/s] can be clamped by a crew with the main live (repair couplings and
# clamps are rated for mains pressure); larger ones need the pressure brought down first
REPAIR_UNDER_PRESSURE_MAX_LPS = 5.0
# a small leak does not justify cutting off more customers than this to isolate it
MAX_CUSTOMERS_FOR_SMALL_LEAK = 500


SOURCE_WORDS_ZH = {"water": "水源", "gas": "气源", "power": "电源"}
OUTAGE_WORDS_ZH = {"water": "停水", "gas": "停气", "power": "停电"}


@dataclass(frozen=True, slots=True)
class Advice:
    """What to tell the crew: ``kind`` is ``isolate`` (close ``valves_to_close``, and shut
    ``sources_to_shut``), ``repair_under_pressure`` or ``reduce_pressure`` (nothing closed now:
    plan the shutdown). ``event`` is ``burst``, ``large_leak`` (as large as a burst but risen
    over hours, found by the night flow), ``small_leak`` or ``unknown`` (no size given: treated
    as a burst, the old behaviour)."""

    kind: str
    event: str
    valves_to_close: tuple[str, ...]
    sources_to_shut: tuple[str, ...]
    customers_without_supply: int
    reason_zh: str
    reason_en: str


def classify_event(
    *, leak_lps: float | None = None, severity: str | None = None, sudden: bool | None = None
) -> str:
    """``sudden`` False: the excess was found by the night flow, not as a sudden rise (the
    water balance's burst rule); a large excess that grew over hours floods no street within
    the hour, and its isolation is weighed like a small leak's."""
    if severity == "critical":
        return "burst"
    if leak_lps is not None and leak_lps >= BURST_LPS:
        return "large_leak" if sudden is False else "burst"
    if leak_lps is not None or severity in ("info", "warning", "major"):
        return "small_leak"
    return "unknown"


def advise_isolation(
    iso: Isolation,
    *,
    leak_lps: float | None = None,
    severity: str | None = None,
    sudden: bool | None = None,
    max_customers: int = MAX_CUSTOMERS_FOR_SMALL_LEAK,
    network: str = "water",
) -> Advice:
    """Isolation advice proportionate to the event (pure).

    A burst (or an event of unknown size) gets the full isolation. A small leak gets it only
    when it shuts no source and cuts off at most ``max_customers``. The segment method already
    gives the smallest valve set that isolates the pipe (the nearest valves on every path), and
    a source in the segment means a valve-free path from the pipe to that source: no set of
    valves isolates the pipe without shutting it. So otherwise the advice is a repair under
    pressure (a leak up to ``REPAIR_UNDER_PRESSURE_MAX_LPS``) or a pressure reduction, with a
    planned shutdown later.
    """
    event = classify_event(leak_lps=leak_lps, severity=severity, sudden=sudden)
    n = iso.customers_without_supply
    word = SOURCE_WORDS_ZH.get(network, "水源")
    cut = OUTAGE_WORDS_ZH.get(network, "停水")
    src = "、".join(iso.sources_to_shut)
    src_en = ", ".join(iso.sources_to_shut)

    def isolate(zh: str, en: str) -> Advice:
        return Advice("isolate", event, iso.valves_to_close, iso.sources_to_shut, n, zh, en)

    if event == "burst":
        return isolate(
            f"爆管：立即隔离，关闭 {len(iso.valves_to_close)} 个阀门"
            + (f"并关停{word} {src}" if src else "")
            + f"，{n} 户{cut}。",
            f"Burst: isolate now, closing {len(iso.valves_to_close)} valves"
            + (f" and shutting source {src_en}" if src_en else "")
            + f"; {n} customers lose supply.",
        )
    if event == "unknown":
        return isolate(
            f"未给出漏损规模，按爆管处理：关闭 {len(iso.valves_to_close)} 个阀门"
            + (f"并关停{word} {src}" if src else "")
            + f"，{n} 户{cut}。",
            f"Size of the event not given, treated as a burst: close "
            f"{len(iso.valves_to_close)} valves"
            + (f" and shut source {src_en}" if src_en else "")
            + f"; {n} customers lose supply.",
        )
    size_zh = f"{leak_lps:.1f} L/s 的" if leak_lps is not None else ""
    size_en = f"{leak_lps:.1f} L/s " if leak_lps is not None else ""
    small = event == "small_leak"
    label_zh, label_en = ("小漏损", "Small") if small else ("较大漏损", "Large")
    if not iso.sources_to_shut and n <= max_customers:
        return isolate(
            f"{size_zh}{label_zh}：关闭 {len(iso.valves_to_close)} 个阀门隔离该管段，"
            f"{n} 户{cut}（不超过 {max_customers} 户），不关停{word}。",
            f"{label_en} {size_en}leak: close {len(iso.valves_to_close)} valves to isolate the "
            f"segment; {n} customers lose supply (at most {max_customers}), no source shut.",
        )
    why_zh = (
        f"隔离需关停{word} {src}" if src else f"隔离将使 {n} 户{cut}（超过 {max_customers} 户）"
    )
    why_en = (
        f"isolating it would shut source {src_en}"
        if src_en
        else f"isolating it would cut off {n} customers (more than {max_customers})"
    )
    if leak_lps is not None and leak_lps <= REPAIR_UNDER_PRESSURE_MAX_LPS:
        return Advice(
            "repair_under_pressure",
            event,
            (),
            (),
            0,
            f"{size_zh}小漏损：{why_zh}，不宜{cut}；建议带压抢修（管卡/修补节），不关阀门，"
            f"另行安排计划{cut}。",
            f"Small {size_en}leak: {why_en}, out of proportion; repair under pressure "
            "(clamp or repair coupling) with no valve closed, and plan a shutdown later.",
        )
    return Advice(
        "reduce_pressure",
        event,
        (),
        (),
        0,
        f"{size_zh}漏损：{why_zh}，不宜{cut}；建议降低该区域供水压力以减少漏失，"
        f"再安排计划{cut}抢修。",
        f"A {size_en}leak: {why_en}, out of proportion; reduce the supply "
        "pressure in the area to limit the loss, then plan a shutdown for the repair.",
    )


def source_distances(net: Network) -> dict[str, float]:
    """Shortest path length [m] from the nearest open source to each reachable node."""
    dist: dict[str, float] = {}
    heap = [(0.0, s) for s in sorted(net.sources())]
    heapq.heapify(heap)
    while heap:
        d, n = heapq.heappop(heap)
        if n in dist:
            continue
        dist[n] = d
        for _, lk, m in net.open_steps(n):
            if m in dist or net.nodes[m].closed:
                continue
            heapq.heappush(heap, (d + max(lk.length_m, 1e-3), m))
    return dist


@dataclass(frozen=True, slots=True)
class Trace:
    start: str
    direction: str  # upstream | downstream
    nodes: tuple[str, ...]
    links: tuple[str, ...]
    customers: int


def compute_trace(
    net: Network,
    start: str,
    direction: str,
    *,
    distances: Mapping[str, float] | None = None,
) -> Trace:
    """Nodes and links upstream (towards the sources) or downstream of a node or link id."""
    if direction not in ("upstream", "downstream"):
        raise NetworkError("direction must be upstream or downstream")
    dist = distances if distances is not None else net.distances()
    inf = float("inf")
    start_links: set[str] = set()
    if start in net.links:
        lk = net.links[start]
        a, b = lk.from_node, lk.to_node
        near, far = (a, b) if dist.get(a, inf) <= dist.get(b, inf) else (b, a)
        frontier = [far] if direction == "downstream" else [near]
        start_links.add(start)
    elif start in net.nodes:
        frontier = [start]
    else:
        raise NetworkError(f"no node or link {start!r} in the {net.name} network")
    nodes = set(frontier)
    links = set(start_links)
    while frontier:
        n = frontier.pop()
        dn = dist.get(n, inf)
        for lid, _, m in net.open_steps(n, links):
            dm = dist.get(m, inf)
            if direction == "downstream" and not dm > dn:
                continue
            if direction == "upstream" and not dm < dn:
                continue
            links.add(lid)
            if m not in nodes and not net.nodes[m].closed:
                nodes.add(m)
                frontier.append(m)
    return Trace(
        start=start,
        direction=direction,
        nodes=tuple(sorted(nodes)),
        links=tuple(sorted(links)),
        customers=sum(net.nodes[n].customers for n in nodes),
    )


@dataclass(frozen=True, slots=True)
class Restoration:
    """Closing a normally-open device (a tie switch, a closed boundary valve) to feed again part
    of what an isolation cut off."""

    device: str
    nodes_restored: tuple[str, ...]
    customers_restored: int


def compute_restoration(net: Network, iso: Isolation) -> tuple[Restoration, ...]:
    """Normally-open devices next to the cut-off area whose closing re-feeds part of it from
    another source path (the segment itself stays shut), best first."""
    seg = set(iso.segment_nodes)
    lost = set(iso.nodes_without_supply) - seg
    if not lost:
        return ()
    closed_nodes = seg | {v for v in iso.valves_to_close if v in net.nodes}
    closed_links = set(iso.segment_links) | {v for v in iso.valves_to_close if v in net.links}
    # everything cut off, devices included (the walk must cross lost valves too)
    candidates = sorted(
        n
        for n in net.neighbours(lost)
        if n not in closed_nodes and net.nodes[n].closed and net.is_device_node(n)
    )
    out = []
    for dev in candidates:
        # is the device's other side still fed? (a best-first search finds a source quickly)
        fed_sides = [
            m
            for lid in net.adjacency.get(dev, ())
            if not net.links[lid].closed and lid not in closed_links
            for m in (net.other_end(lid, dev),)
            if m not in lost
            and m not in closed_nodes
            and not net.nodes[m].closed
            and not net.cut_off(closed_nodes, closed_links, [m])
        ]
        if not fed_sides:
            continue
        # the part of the cut-off area the device would feed: walk from it through lost nodes
        # and the open fittings among them
        seen = {dev}
        stack = [dev]
        while stack:
            n = stack.pop()
            for _, _, m in net.open_steps(n, closed_links):
                if m in seen or m in closed_nodes or net.nodes[m].closed:
                    continue
                if m in lost or (net.is_device_node(m) and m not in fed_sides):
                    seen.add(m)
                    stack.append(m)
        restored = tuple(sorted(seen & lost))
        if restored:
            out.append(Restoration(dev, restored, sum(net.nodes[n].customers for n in restored)))
    return tuple(sorted(out, key=lambda r: (-r.customers_restored, r.device)))
