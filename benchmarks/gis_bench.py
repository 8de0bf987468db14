"""GIS benchmark: planner queries, valve isolation and OGC API items pages on a city-sized demo.

Builds (or reuses with --reuse) a database with Chengdu's districts, H3 cells at resolutions 7 and
8 for the whole city, the demo networks at grid_n=60 (> 10,000 water pipes), facilities, 2,000
sensors on assets and 20,000 alerts, then times each question many times and prints p50/p95.

    .venv/bin/python benchmarks/gis_bench.py            # private stack under var/bench-stack-gis
    CITYOPS_DATABASE_URL=postgresql://... .venv/bin/python benchmarks/gis_bench.py
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import psycopg.sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityops.shell.database import prepare_database  # noqa: E402
from gis.analysis import NetworkCache, fetch_isolation  # noqa: E402
from gis.demo import DemoConfig, build_demo_city  # noqa: E402
from gis.filters import AlertHistory, NearLayer, PlannerQuery, parse_filter  # noqa: E402
from gis.grid import build_grid_cells  # noqa: E402
from gis.planner import fetch_planner_query  # noqa: E402
from gis.postgis import (  # noqa: E402
    fetch_districts_frame,
    write_districts,
    write_grid_cells,
    write_layers,
)

BENCH_DB = "cityops_gis_bench"


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def timed(fn: Callable[[], object], n: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def line(name: str, ms: list[float], target: float | None = None) -> None:
    p95 = pct(ms, 95)
    verdict = "" if target is None else ("  OK" if p95 < target else "  OVER TARGET")
    print(
        f"  {name:<58} n={len(ms):<4} p50={statistics.median(ms):7.1f} ms  p95={p95:7.1f} ms"
        f"  max={max(ms):7.1f} ms{verdict}"
    )


def build(url: str, grid_n: int) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        prepare_database(conn)
        doc = json.loads((ROOT / "data" / "chengdu_districts.geojson").read_text(encoding="utf-8"))
        write_districts(conn, doc)
        t = time.perf_counter()
        cells = write_grid_cells(conn, build_grid_cells(fetch_districts_frame(conn), (7, 8)))
        print(f"  grid cells: {cells} in {time.perf_counter() - t:.1f} s")
        cfg = DemoConfig(
            grid_n=grid_n,
            substations=6,
            feeders_per_substation=8,
            feeder_length=40,
            hospitals=60,
            schools=600,
            fire_stations=40,
            shelters=150,
        )
        t = time.perf_counter()
        frames = build_demo_city(cfg)
        counts = write_layers(conn, frames, demo=True)
        print(f"  demo city: {counts} in {time.perf_counter() - t:.1f} s")
        # 2,000 sensors on water nodes and gas nodes, 20,000 alerts over the last two years
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, asset_id, district_adcode, geom)"
            " SELECT 'b-wp-' || row_number() OVER (), 'water', 'water_pressure', node_id, node_id,"
            " district_adcode, geom FROM (SELECT * FROM water_nodes WHERE kind = 'junction'"
            " ORDER BY md5(node_id) LIMIT 1500) j"
        )
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, asset_id, district_adcode, geom)"
            " SELECT 'b-gp-' || row_number() OVER (), 'gas', 'gas_pressure', node_id, node_id,"
            " district_adcode, geom FROM (SELECT * FROM gas_nodes WHERE kind = 'junction'"
            " ORDER BY md5(node_id) LIMIT 500) j"
        )
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state, raised_at,"
            " cleared_at, value, message_zh, message_en)"
            " SELECT s.sensor_id, s.utility, 'pressure', 'threshold_low', 'major', 'closed',"
            " now() - (g * interval '53 minutes'), now() - (g * interval '53 minutes') + interval '5 minutes',"
            " 150, '低压', 'low pressure'"
            " FROM generate_series(1, 20000) g"
            " JOIN LATERAL (SELECT sensor_id, utility FROM sensors ORDER BY md5(sensor_id || (g % 300)::text)"
            " LIMIT 1) s ON true"
        )
        conn.execute("ANALYZE")
        conn.commit()
        total = conn.execute(
            "SELECT (SELECT count(*) FROM districts) + (SELECT count(*) FROM grid_cells)"
            " + (SELECT count(*) FROM water_nodes) + (SELECT count(*) FROM water_pipes)"
            " + (SELECT count(*) FROM gas_nodes) + (SELECT count(*) FROM gas_pipes)"
            " + (SELECT count(*) FROM power_nodes) + (SELECT count(*) FROM power_lines)"
            " + (SELECT count(*) FROM facilities) + (SELECT count(*) FROM sensors)"
        ).fetchone()[0]
        return {"features": total, **counts}


def bench_planner(url: str, n: int) -> None:
    rnd = random.Random(1)
    with psycopg.connect(url, autocommit=True) as conn:
        pipes = [r[0] for r in conn.execute("SELECT pipe_id FROM water_pipes ORDER BY pipe_id")]
        hospitals = [
            r[0] for r in conn.execute("SELECT facility_id FROM facilities WHERE kind = 'hospital'")
        ]

        def pt() -> tuple[float, float]:
            return (104.0657 + rnd.uniform(-0.06, 0.06), 30.6598 + rnd.uniform(-0.06, 0.06))

        school = (parse_filter("facilities", "kind=school"),)
        x, y = 104.0657, 30.6598
        square = {
            "type": "Polygon",
            "coordinates": [
                [
                    [x - 0.02, y - 0.02],
                    [x + 0.02, y - 0.02],
                    [x + 0.02, y + 0.02],
                    [x - 0.02, y + 0.02],
                    [x - 0.02, y - 0.02],
                ]
            ],
        }
        cases: list[tuple[str, Callable[[], PlannerQuery]]] = [
            (
                "valves within a district (Jinjiang)",
                lambda: PlannerQuery(
                    "water_nodes",
                    district=510104,
                    filters=(parse_filter("water_nodes", "kind=valve"),),
                    limit=5000,
                ),
            ),
            (
                "pipes within a polygon (4 km x 4 km)",
                lambda: PlannerQuery("water_pipes", polygon=square, limit=5000),
            ),
            (
                "pipes within 500 m of a point",
                lambda: PlannerQuery("water_pipes", point=pt(), radius_m=500.0),
            ),
            (
                "pipes within 300 m of a hospital (feature)",
                lambda: PlannerQuery(
                    "water_pipes", feature=("facilities", rnd.choice(hospitals)), radius_m=300.0
                ),
            ),
            (
                "10 nearest schools to a point",
                lambda: PlannerQuery("facilities", point=pt(), nearest=10, filters=school),
            ),
            (
                "10 nearest valves to a pipe",
                lambda: PlannerQuery(
                    "water_nodes",
                    feature=("water_pipes", rnd.choice(pipes)),
                    nearest=10,
                    filters=(parse_filter("water_nodes", "kind=valve"),),
                ),
            ),
            (
                "sensors within 1 km of a point",
                lambda: PlannerQuery("sensors", point=pt(), radius_m=1000.0),
            ),
            (
                "pre-1990 mains <500 m of a school, >3 low-P alerts/yr",
                lambda: PlannerQuery(
                    "water_pipes",
                    filters=(parse_filter("water_pipes", "install_year<1990"),),
                    near=(NearLayer("facilities", 500.0, school),),
                    alerts=AlertHistory(more_than=3),
                ),
            ),
            (
                "same, alerts of sensors within 200 m",
                lambda: PlannerQuery(
                    "water_pipes",
                    filters=(parse_filter("water_pipes", "install_year<1990"),),
                    near=(NearLayer("facilities", 500.0, school),),
                    alerts=AlertHistory(more_than=3, radius_m=200.0),
                    district=510104,
                ),
            ),
        ]
        print("planner queries (target p95 < 100 ms):")
        for name, make in cases:
            sizes: list[int] = []

            def run(make=make, sizes=sizes) -> None:
                sizes.append(len(fetch_planner_query(conn, make())["features"]))

            ms = timed(run, n)
            line(f"{name} [~{int(statistics.median(sizes))} features]", ms, 100.0)


def bench_isolation(url: str, n: int) -> None:
    rnd = random.Random(2)
    cache = NetworkCache()
    with psycopg.connect(url, autocommit=True) as conn:
        pipes = [r[0] for r in conn.execute("SELECT pipe_id FROM water_pipes")]
        t = time.perf_counter()
        fetch_isolation(conn, "water", pipes[0], cache=cache)
        cold = (time.perf_counter() - t) * 1000
        print("valve isolation (target < 200 ms):")
        print(f"  first call, builds the graph of {len(pipes)} pipes: {cold:.1f} ms")
        sizes: list[int] = []

        def run() -> None:
            fc = fetch_isolation(conn, "water", rnd.choice(pipes), cache=cache)
            sizes.append(len(fc["isolation"]["valves_to_close"]))

        line("isolation of a random pipe, with geometry and facilities", timed(run, n), 200.0)
        print(f"    valves to close: median {statistics.median(sizes)}, max {max(sizes)}")

        def run_nocache() -> None:
            fetch_isolation(conn, "water", rnd.choice(pipes), with_geometry=True)

        line(
            "isolation without cache (graph rebuilt each time)",
            timed(run_nocache, max(10, n // 10)),
            200.0,
        )


def bench_shutdown(url: str, n: int) -> None:
    """Issue 17 item 5: a planned shutdown (the valves an isolation of a random pipe names, or
    2-6 random valves) with the places, facilities and sensors it cuts off."""
    from gis.analysis import fetch_shutdown, network_of
    from gis.network import compute_isolation

    rnd = random.Random(5)
    cache = NetworkCache()
    with psycopg.connect(url, autocommit=True) as conn:
        net = network_of(conn, "water", cache)
        pipes = [lid for lid, lk in net.links.items() if lk.kind == "pipe"]
        valves = [nid for nid, nd in net.nodes.items() if nd.kind == "valve"]
        plans = [compute_isolation(net, rnd.choice(pipes)).valves_to_close for _ in range(50)]
        plans += [tuple(rnd.sample(valves, rnd.randint(2, 6))) for _ in range(50)]
        print(f"planned shutdown (target < 1 s p95; {len(pipes)} pipes, {len(valves)} valves):")
        lost: list[int] = []

        def run() -> None:
            fc = fetch_shutdown(conn, "water", list(rnd.choice(plans)), hours=4, cache=cache)
            lost.append(len(fc["shutdown"]["nodes_without_supply"]))

        line("close the chosen valves: who loses supply, with geometry", timed(run, n), 1000.0)
        print(f"    nodes without supply: median {statistics.median(lost)}, max {max(lost)}")


def bench_renewal(url: str, n: int) -> None:
    """Issue 17 item 4: the pipes to renew first (every main scored, the top 100 as a layer)."""
    from gis.renewal import Weights
    from gis.renewal_db import fetch_renewal

    cache = NetworkCache()
    with psycopg.connect(url, autocommit=True) as conn:
        t = time.perf_counter()
        fc = fetch_renewal(conn, "water", Weights(), top=100, cache=cache)
        cold = (time.perf_counter() - t) * 1000
        scored = fc["renewal"]["pipes_scored"]
        print("renewal priority (target < 1 s p95; issue 17: for 50,000 pipes):")
        print(
            f"  first call, builds the graph and isolates every segment of {scored} pipes:"
            f" {cold:.1f} ms"
        )
        weights = ["", "age=0.5", "history=0.4,criticality=0.4", "material=0.3"]

        def run() -> None:
            fetch_renewal(
                conn, "water", Weights.parse(random.choice(weights)), top=100, cache=cache
            )

        line(f"top 100 of {scored} mains with their geometry, any weights", timed(run, n), 1000.0)


def bench_ogc(url: str, n: int) -> None:
    import requests
    from werkzeug.serving import make_server

    from access.accounts import write_user
    from access.tokens import write_token
    from cityops.shell.stack import free_port
    from gis.http import create_gis_app
    from gis.ogc import close_pools

    port = free_port()
    root = f"http://127.0.0.1:{port}"
    base = f"{root}/ogc"
    # the real door: every request carries an API token, checked against the database
    with psycopg.connect(url, autocommit=True) as conn:
        write_user(conn, "bench-emergency", secrets.token_urlsafe(18), "emergency")
        token, _ = write_token(
            conn, "bench-emergency", "gis bench", actor="bench", now=datetime.now(UTC), days=1
        )
    app = create_gis_app(url, base_url=root)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log per request
    server = make_server("127.0.0.1", port, app, threaded=True)
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    rnd = random.Random(3)
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {token}"
    print("OGC API - Features items pages over HTTP, each with its token (target p95 < 200 ms):")
    try:

        def bbox() -> str:
            x, y = 104.0657 + rnd.uniform(-0.05, 0.05), 30.6598 + rnd.uniform(-0.05, 0.05)
            return f"{x - 0.01},{y - 0.01},{x + 0.01},{y + 0.01}"

        cases = [
            ("water_pipes items, limit 100", lambda: {"limit": 100}),
            ("water_pipes items, bbox 2 km, limit 100", lambda: {"bbox": bbox(), "limit": 100}),
            ("water_pipes items, page at offset 10,000", lambda: {"limit": 100, "offset": 10_000}),
            (
                "water_pipes CQL2 filter + bbox",
                lambda: {
                    "filter": "install_year < 1990 AND diameter_mm >= 200",
                    "bbox": bbox(),
                    "limit": 100,
                },
            ),
            ("grid_cells items, limit 100 (26k cells)", lambda: {"limit": 100}),
            (
                "facilities CQL2 kind = 'school'",
                lambda: {"filter": "kind = 'school'", "limit": 100},
            ),
        ]
        for name, params in cases:
            coll = name.split()[0]

            def run(coll=coll, params=params) -> None:
                r = s.get(
                    f"{base}/collections/{coll}/items", params={**params(), "f": "json"}, timeout=30
                )
                r.raise_for_status()

            line(name, timed(run, n), 200.0)
    finally:
        server.shutdown()
        close_pools()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--grid-n", type=int, default=60)
    ap.add_argument("-n", type=int, default=200, help="repetitions per question")
    ap.add_argument("--reuse", action="store_true", help="reuse the benchmark database")
    ap.add_argument(
        "--only",
        choices=("planner", "isolation", "shutdown", "renewal", "ogc"),
        action="append",
        help="run only these parts (repeatable); all by default",
    )
    args = ap.parse_args()

    url = os.environ.get("CITYOPS_BENCH_DATABASE_URL")
    stack = None
    if not url:
        from cityops.shell.stack import LocalStack

        stack = LocalStack(ROOT / "var" / "bench-stack-gis")
        stack.start()
        admin = stack.admin_database_url()
        with psycopg.connect(admin, autocommit=True) as c:
            exists = c.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (BENCH_DB,)
            ).fetchone()
            if exists and not args.reuse:
                c.execute(f'DROP DATABASE "{BENCH_DB}" WITH (FORCE)')
                exists = None
            if not exists:
                c.execute(f'CREATE DATABASE "{BENCH_DB}"')
                args.reuse = False
        url = stack.admin_database_url(BENCH_DB)
    try:
        with psycopg.connect(url) as c:
            pg = c.execute("SELECT version()").fetchone()[0].split(",")[0]
            c.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            pgis = c.execute("SELECT postgis_lib_version()").fetchone()[0]
        cpu = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        )
        print(
            f"machine: {platform.platform()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"
        )
        print(f"database: {pg}, PostGIS {pgis}")
        if not args.reuse:
            t = time.perf_counter()
            info = build(url, args.grid_n)
            print(f"built in {time.perf_counter() - t:.1f} s: {info}")
        with psycopg.connect(url) as c:
            counts = {
                t: c.execute(
                    psycopg.sql.SQL("SELECT count(*) FROM {}").format(psycopg.sql.Identifier(t))
                ).fetchone()[0]
                for t in (
                    "grid_cells",
                    "water_nodes",
                    "water_pipes",
                    "gas_nodes",
                    "gas_pipes",
                    "power_nodes",
                    "power_lines",
                    "facilities",
                    "sensors",
                    "alerts",
                )
            }
        print(
            f"dataset: {counts}; features in all (without alerts): {sum(v for k, v in counts.items() if k != 'alerts') + 20}"
        )
        parts = {
            "planner": lambda: bench_planner(url, args.n),
            "isolation": lambda: bench_isolation(url, args.n),
            "shutdown": lambda: bench_shutdown(url, args.n),
            "renewal": lambda: bench_renewal(url, max(10, args.n // 10)),
            "ogc": lambda: bench_ogc(url, args.n),
        }
        for name, bench in parts.items():
            if not args.only or name in args.only:
                bench()
    finally:
        if stack is not None and not os.environ.get("CITYOPS_BENCH_KEEP_STACK"):
            stack.stop()


if __name__ == "__main__":
    main()
