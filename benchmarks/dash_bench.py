"""Dashboard benchmark: server time of the wall, the sensor chart and the map at city scale.

Phase A (the wall and the sensor chart): ``--sensors`` sensors (default 10,000) with latest values
and alerts, ``--days-all`` days of 1-minute readings for all of them (default 1; the issue's full
load is 30, i.e. 432 million rows: see ``--estimate``), and ``--days-chart`` days (default 30)
for ``--chart-sensors`` of them, with 1-minute and 1-hour rollups. Phase B (the map):
``--map-sensors`` sensors (default 50,000). Each callback is called through Dash's own HTTP
endpoint with Flask's test client (server time only: no network, no browser rendering) and
timed ``--repeat`` times; p50/p95/max and response sizes are printed with the machine's details.

    .venv/bin/python benchmarks/dash_bench.py                  # private stack var/bench-stack-dash
    .venv/bin/python benchmarks/dash_bench.py --sensors 2000 --days-all 0.1 --repeat 5   # quick
    .venv/bin/python benchmarks/dash_bench.py --reuse          # keep and reuse the loaded databases
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cityops.kernel.settings import Settings  # noqa: E402
from cityops.shell.database import prepare_database  # noqa: E402
from cityops.shell.stack import LocalStack  # noqa: E402
from dashboards.app import build_app  # noqa: E402
from tests.dashboards.scale import load_scale_readings, load_scale_sensors  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ensure_db(
    stack: LocalStack, name: str, reuse: bool, fill: Callable[[psycopg.Connection], None]
) -> str:
    url = stack.admin_database_url(name)
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists and reuse:
            log(f"reusing database {name}")
            return url
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url) as conn:
        prepare_database(conn)
        t0 = time.monotonic()
        fill(conn)
        conn.execute("ANALYZE")
        log(f"loaded {name} in {time.monotonic() - t0:.1f} s")
    run_storage_policies(url)
    return url


def run_storage_policies(url: str) -> None:
    """On TimescaleDB, what its scheduler would have done to data this old: materialise the
    rollups and compress every chunk past the policy's 2 days, so that pages read what a running
    city has (run here at once through ``run_job``, the procedure the scheduler calls)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('timescaledb_information.jobs')").fetchone() == (None,):
            return
        t0 = time.monotonic()
        for proc in ("policy_refresh_continuous_aggregate", "policy_compression"):
            for (job,) in conn.execute(
                "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s"
                " ORDER BY job_id",
                (proc,),
            ).fetchall():
                conn.execute("CALL run_job(%s)", (job,))
        chunks = conn.execute(
            "SELECT count(*) FILTER (WHERE is_compressed), count(*)"
            " FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
        ).fetchone()
        size = conn.execute("SELECT pg_size_pretty(hypertable_size('readings'))").fetchone()
        log(
            f"TimescaleDB policies run in {time.monotonic() - t0:.0f} s: {chunks[0]} of"
            f" {chunks[1]} readings chunks compressed, readings {size[0]}"
        )


class DashClient:
    """Calls callbacks the way the browser does, through POST /_dash-update-component."""

    def __init__(self, settings: Settings) -> None:
        self.app = build_app(settings)
        self.client = self.app.server.test_client()
        self.deps = json.loads(self.client.get("/_dash-dependencies").data)
        # as the pages do: same Origin, and the anti-forgery token the server left in a cookie
        self.client.get("/_dash-layout")
        token = self.client.get_cookie("cityops_csrf")
        if token is None:
            raise RuntimeError("the dashboard set no cityops_csrf cookie")
        self.headers = {"Origin": "http://localhost", "X-CSRF-Token": token.value}

    def cold(self) -> None:
        """Forget cached snapshots, as when refreshes are further apart than their lifetime."""
        self.app.server.config["CITYOPS_CONTEXT"].cache.clear()

    def find(self, input_id: str) -> dict[str, Any]:
        for dep in self.deps:
            if any(i["id"] == input_id for i in dep["inputs"]):
                return dep
        raise KeyError(input_id)

    def call(self, input_id: str, values: dict[str, Any]) -> tuple[float, int, dict]:
        """(seconds, response bytes, response) of the callback that has ``input_id`` as input."""
        dep = self.find(input_id)
        out = dep["output"]
        parts = out.strip(".").split("...") if out.startswith("..") else [out]
        outputs = [dict(zip(("id", "property"), p.rsplit(".", 1), strict=True)) for p in parts]

        def items(specs: list[dict]) -> list[dict]:
            return [
                {
                    "id": s["id"],
                    "property": s["property"],
                    "value": values.get(f"{s['id']}.{s['property']}"),
                }
                for s in specs
            ]

        body = {
            "output": out,
            "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": items(dep["inputs"]),
            "state": items(dep.get("state", [])),
            "changedPropIds": [
                f"{i['id']}.{i['property']}" for i in dep["inputs"] if i["id"] == input_id
            ],
        }
        t0 = time.perf_counter()
        resp = self.client.post("/_dash-update-component", json=body, headers=self.headers)
        elapsed = time.perf_counter() - t0
        if resp.status_code != 200:
            raise RuntimeError(f"{input_id}: HTTP {resp.status_code}: {resp.data[:500]!r}")
        return elapsed, len(resp.data), json.loads(resp.data)


def stats(samples: list[float]) -> str:
    s = sorted(samples)
    p95 = s[min(len(s) - 1, round(0.95 * (len(s) - 1)))]
    return (
        f"p50 {1000 * statistics.median(s):7.1f} ms  p95 {1000 * p95:7.1f} ms  "
        f"max {1000 * s[-1]:7.1f} ms  (n={len(s)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sensors", type=int, default=10_000)
    ap.add_argument("--days-all", type=float, default=1.0, help="days of readings for every sensor")
    ap.add_argument(
        "--step-all", type=int, default=60, help="seconds between readings of every sensor"
    )
    ap.add_argument("--chart-sensors", type=int, default=10)
    ap.add_argument(
        "--days-chart", type=float, default=30.0, help="days of readings for the chart sensors"
    )
    ap.add_argument("--map-sensors", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--reuse", action="store_true", help="reuse databases loaded by an earlier run")
    ap.add_argument("--stack-dir", type=Path, default=ROOT / "var" / "bench-stack-dash")
    ap.add_argument(
        "--estimate", action="store_true", help="only print the full-load size estimate"
    )
    args = ap.parse_args()

    full_rows = 10_000 * 30 * 1440
    if args.estimate:
        print(f"issue load: 10,000 sensors x 30 days x 1 min = {full_rows:,} readings")
        return

    stack = LocalStack(args.stack_dir)
    stack.start()
    tag = (
        f"s{args.sensors}_d{args.days_all}x{args.step_all}_c{args.chart_sensors}x{args.days_chart}"
    ).replace(".", "p")

    def fill_a(conn: psycopg.Connection) -> None:
        load_scale_sensors(conn, args.sensors)
        t0 = time.monotonic()
        n = load_scale_readings(conn, sensors=args.chart_sensors, days=args.days_chart, log=log)
        n += load_scale_readings(
            conn, sensors=args.sensors, days=args.days_all, step_s=args.step_all, log=log
        )
        dt = time.monotonic() - t0
        log(
            f"readings: {n:,} in {dt:.0f} s ({n / max(dt, 1e-9):,.0f} rows/s incl. rollups);"
            f" the full issue load ({full_rows:,}) would take about {full_rows / max(n / dt, 1) / 3600:.1f} h here"
        )

    url_a = ensure_db(stack, f"bench_dash_{tag}", args.reuse, fill_a)
    url_b = ensure_db(
        stack,
        f"bench_dash_map_{args.map_sensors}",
        args.reuse,
        lambda conn: load_scale_sensors(conn, args.map_sensors),
    )

    with psycopg.connect(url_a) as conn:
        readings = conn.execute("SELECT count(*) FROM readings").fetchone()[0]
        chart_sensor = conn.execute(
            "SELECT sensor_id FROM sensors WHERE sensor_id LIKE 'bench-%' ORDER BY sensor_id LIMIT 1"
        ).fetchone()[0]

    print(f"# cityops dashboard benchmark {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"load average before the runs: {Path('/proc/loadavg').read_text().split()[:3]}")
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    with psycopg.connect(url_a) as conn:
        print(
            "PostgreSQL:",
            conn.execute("SHOW server_version").fetchone()[0],
            "storage:",
            conn.execute("SELECT value FROM cityops_meta WHERE key='storage'").fetchone()[0],
        )
        compressed = (
            conn.execute(
                "SELECT count(*) FILTER (WHERE is_compressed), count(*)"
                " FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'"
            ).fetchone()
            if conn.execute("SELECT to_regclass('timescaledb_information.chunks')").fetchone()
            != (None,)
            else None
        )
        if compressed:
            print(f"readings chunks compressed: {compressed[0]} of {compressed[1]}")
    print(
        f"phase A: {args.sensors:,} sensors, {readings:,} readings "
        f"({args.days_all} d every {args.step_all} s for all,"
        f" {args.days_chart} d every 60 s for {args.chart_sensors})"
    )

    # -- wall ----------------------------------------------------------------------------------
    wall = DashClient(Settings(database_url=url_a, dashboard_refresh_ms=5000))
    lang = {"lang.data": "zh"}
    t0 = time.perf_counter()
    index = wall.client.get("/wall")
    layout = wall.client.get("/_dash-layout")
    wall.call("url", {"url.pathname": "/wall", **lang})
    t_first, size, _ = wall.call("wall-tick", {"wall-tick.n_intervals": 0, **lang})
    first = time.perf_counter() - t0
    assert index.status_code == layout.status_code == 200
    print(
        f"wall first render (index + layout + route + first data, cold caches): "
        f"{1000 * first:.0f} ms (data callback {1000 * t_first:.0f} ms, {size / 1024:.0f} KiB)"
    )
    timed(wall, "wall refresh", "wall-tick", {"wall-tick.n_intervals": 1, **lang}, args.repeat)

    # -- sensor chart --------------------------------------------------------------------------
    for window in ("24h", "30d"):
        values = {"sensor-pick.value": chart_sensor, "sensor-window.value": window, **lang}
        resp = timed(
            wall, f"sensor chart {window}", "sensor-window", values, args.repeat, both=False
        )
        source = json.dumps(resp, ensure_ascii=False).split("数据来源：", 1)[-1][:6]
        print(f"  (source: {source})")

    # -- map, overview and wall at 50,000 sensors ----------------------------------------------
    big = DashClient(Settings(database_url=url_b, dashboard_refresh_ms=5000))
    base = {
        "map-layers.value": ["districts", "networks", "facilities", "sensors", "alerts"],
        "map-utilities.value": ["water", "power", "gas"],
        "map-view.data": None,
        "map-tick.n_intervals": 1,
        **lang,
    }
    n = f"{args.map_sensors:,} sensors"
    timed(big, f"map, {n}, whole city (grid cells)", "map-tick", base, args.repeat)
    zoomed = {**base, "map-view.data": [[104.03, 104.11], [30.63, 30.69]]}
    resp = timed(big, f"map, {n}, zoomed to central Chengdu", "map-tick", zoomed, args.repeat)
    shown = json.dumps(resp, ensure_ascii=False).split("显示 ", 1)[-1].split(" ", 1)[0]
    print(f"  ({shown} single sensors in view)")
    timed(
        big,
        f"overview refresh, {n}",
        "overview-tick",
        {"overview-tick.n_intervals": 1, **lang},
        args.repeat,
    )
    timed(big, f"wall refresh, {n}", "wall-tick", {"wall-tick.n_intervals": 1, **lang}, args.repeat)


def timed(
    client: DashClient, label: str, input_id: str, values: dict, repeat: int, *, both: bool = True
) -> dict:
    """Time one callback: 'cold' re-reads the shared sensor snapshot every call (one client
    refreshing every few seconds), 'warm' shares it (several pages or walls within 2 s)."""
    modes = ("cold", "warm") if both else ("cold",)
    resp: dict = {}
    for mode in modes:
        samples = []
        for _ in range(repeat):
            if mode == "cold":
                client.cold()
            dt, size, resp = client.call(input_id, values)
            samples.append(dt)
        print(f"{label:<48} {mode}: {stats(samples)}  {size / 1024:.0f} KiB")
    return resp


if __name__ == "__main__":
    main()
