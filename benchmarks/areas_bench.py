"""Metered-area derivation benchmark: `cityops gis areas derive`'s pure part on a 10,000-pipe
network.

The synthetic grid of simulators.water (71 x 72 junctions, 10,081 pipes, one reservoir), or an
EPANET model (``--inp``), is cut into ``--blocks`` x ``--blocks`` blocks of its extent by a flow
meter on every link crossing a block edge and on every link of a reservoir or tank; gis/areas.py then finds the areas (graph cut, signs,
pressure sensors inside) and draws their polygons (buffered pipes, EPSG:4544 to 4326). Printed:
areas found, the time of each step and the total against the ceiling of decision 0055 (10 s;
the command is run by hand when the network or its meters change, not on the hot path).

    .venv/bin/python benchmarks/areas_bench.py [--rows 71 --cols 72 --blocks 6 --repeat 3]
    .venv/bin/python benchmarks/areas_bench.py --inp .venv/lib/python3.11/site-packages/wntr/library/networks/Net6.inp
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.machine import describe_machine  # noqa: E402
from gis.areas import derive_areas, with_boundaries  # noqa: E402
from gis.areas_db import metric_to_lonlat  # noqa: E402
from gis.epanet import auto_scale  # noqa: E402
from gis.network import Link, Network, Node  # noqa: E402
from simulators.water import grid_network  # noqa: E402

CEILING_S = 10.0
ORIGIN_M = (500_000.0, 3_390_000.0)  # near Chengdu in EPSG:4544


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=71)
    ap.add_argument("--cols", type=int, default=72)
    ap.add_argument("--blocks", type=int, default=6, help="blocks per side of the extent")
    ap.add_argument("--inp", type=Path, help="an EPANET model instead of the grid (e.g. Net6)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    for k, v in describe_machine().items():
        print(f"{k}: {v}")

    if args.inp:
        import wntr

        wn = wntr.network.WaterNetworkModel(str(args.inp))
    else:
        wn = grid_network(args.rows, args.cols)
    kinds = {"Junction": "junction", "Tank": "tank", "Reservoir": "reservoir"}
    nodes = [Node(n, kinds[o.node_type]) for n, o in wn.nodes()]
    # an abstract model's units scaled to its pipe lengths, as `import-epanet --origin` does
    scale = auto_scale(wn) if args.inp else 1.0
    links = [Link(n, o.start_node_name, o.end_node_name) for n, o in wn.links()]
    net = Network.build("water", nodes, links)
    xy = {n: (o.coordinates[0] * scale, o.coordinates[1] * scale) for n, o in wn.nodes()}
    x0, x1 = min(c[0] for c in xy.values()), max(c[0] for c in xy.values())
    y0, y1 = min(c[1] for c in xy.values()), max(c[1] for c in xy.values())
    k = args.blocks

    def block(n: str) -> tuple[int, int]:
        x, y = xy[n]
        return (
            min(k - 1, int(k * (x - x0) / ((x1 - x0) or 1))),
            min(k - 1, int(k * (y - y0) / ((y1 - y0) or 1))),
        )

    sources = {n.node_id for n in nodes if n.kind in ("reservoir", "tank")}
    meters = {
        f"wf-{lk.link_id}": lk.link_id
        for lk in links
        if lk.from_node in sources
        or lk.to_node in sources
        or block(lk.from_node) != block(lk.to_node)
    }
    pressure = {f"wp-{n}": n for i, n in enumerate(sorted(xy)) if i % 97 == 0}
    lines = {
        lk.link_id: [
            (ORIGIN_M[0] + xy[lk.from_node][0], ORIGIN_M[1] + xy[lk.from_node][1]),
            (ORIGIN_M[0] + xy[lk.to_node][0], ORIGIN_M[1] + xy[lk.to_node][1]),
        ]
        for lk in links
    }
    to_lonlat = metric_to_lonlat()
    print(f"network: {len(nodes)} nodes, {len(links)} links; {len(meters)} flow meters")

    cut_s, poly_s = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        areas, skipped = derive_areas(net, meters, members_at=pressure)
        t1 = time.perf_counter()
        areas = with_boundaries(areas, lines, to_lonlat=to_lonlat)
        t2 = time.perf_counter()
        cut_s.append(t1 - t0)
        poly_s.append(t2 - t1)
    total = statistics.median(cut_s) + statistics.median(poly_s)
    print(
        f"areas: {len(areas)} (skipped {len(skipped)}), sizes "
        f"{min((len(a.pipes) for a in areas), default=0)}"
        f"-{max((len(a.pipes) for a in areas), default=0)} links, "
        f"{sum(len(a.members) for a in areas)} pressure sensors placed"
    )
    print(f"graph cut, signs, members: median {statistics.median(cut_s):.3f} s")
    print(f"polygons: median {statistics.median(poly_s):.3f} s")
    verdict = "within" if total <= CEILING_S else "OVER"
    print(f"derive total: {total:.3f} s (ceiling {CEILING_S:.0f} s): {verdict}")


if __name__ == "__main__":
    main()
