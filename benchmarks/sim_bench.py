"""Simulator benchmarks: prints figures, asserts nothing (CONVENTIONS.md 14).

    .venv/bin/python benchmarks/sim_bench.py                # everything
    .venv/bin/python benchmarks/sim_bench.py --only water,week
    .venv/bin/python benchmarks/sim_bench.py --only load --load-sensors 10000,50000

1. water: one 1-minute EPANET step of a 10,000-pipe network (synthetic 71 x 71 grid, 9,942
   links), p50/p99 over two simulated hours, wall and CPU time. Target: < 50 ms.
2. week: a week at 5-minute steps for 2,000 sensors on that network with a growing leak:
   physics, measurement, ground truth and payloads (no broker). Target: < 2 minutes.
3. library: each scenario of scenarios/ generated end to end (no broker).
4. load: the load mode publishing 10,000 (and 50,000) sensors at QoS 1 through a private
   Mosquitto (var/bench-stack-sim), every message acknowledged.
Wall times depend on what else the machine runs: the load average is printed with them, and
CPU time (process_time) beside wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore")

from benchmarks.machine import machine_line  # noqa: E402


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def bench_water() -> None:
    from simulators.water import WaterSim, load_network

    t = time.perf_counter()
    wn = load_network("grid-71x71")
    t_build = time.perf_counter() - t
    t = time.perf_counter()
    sim = WaterSim(wn, step_s=60, duration_s=3 * 3600)
    sim.advance_to(0)
    t_open = time.perf_counter() - t
    idx = [sim.node_index(n) for n in wn.junction_name_list[::3]]
    wall, cpu = [], []
    for k in range(1, 121):
        w, c = time.perf_counter(), time.process_time()
        sim.advance_to(k * 60)
        sim.pressures_kpa(idx)
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    sim.close()
    print(
        f"water: grid-71x71, {wn.num_junctions} junctions, {wn.num_pipes} pipes; "
        f"model {t_build:.1f} s, open {t_open:.1f} s"
    )
    print(
        f"  one 1-minute step + {len(idx)} pressures: wall p50 {statistics.median(wall):.1f} ms, "
        f"p99 {pct(wall, 99):.1f} ms; CPU p50 {statistics.median(cpu):.1f} ms "
        f"(target < 50 ms)  [{machine_line()}]"
    )


WEEK = """\
name: week-2000
start: "2026-11-23T00:00:00+08:00"
duration: 7d
step: 5m
truth_every: 15m
seed: 7
networks:
  water: {{model: grid-71x71, anchor: [104.06, 30.66], scale_m: 1}}
sensors:
  water: {{pressure: 1900, flow: {pipes}}}
incidents:
  - {{network: water, type: leak, element: "j30-30", at: 2d, ramp: 2d, area_cm2: 10}}
faults:
  - {{type: stuck, count: 10, at: 1d, duration: 1d}}
  - {{type: dropout, count: 10, at: 3d, duration: 6h}}
"""


def bench_week() -> None:
    from simulators.run import ScenarioRun
    from simulators.spec import parse_scenario

    pipes = [f"p{r}-{c}-e" for r in range(5, 71, 7) for c in range(3, 70, 7)][:100]
    scn = parse_scenario(WEEK.format(pipes=pipes), "week-2000")
    w, c = time.perf_counter(), time.process_time()
    run = ScenarioRun(scn, start_ms=scn.start_ms or 0)
    build_w = time.perf_counter() - w
    w, c = time.perf_counter(), time.process_time()
    n = nbytes = 0
    for k in range(run.steps):
        for m in run.messages(k):
            n += 1
            nbytes += len(m.payload)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    truth = run.ground_truth(run_id="bench")
    run.close()
    leak = truth["events"][0]
    print(
        f"week: {len(run.sensors)} sensors, {run.steps} steps of 5 min, {n:,} messages "
        f"({nbytes / 1e6:.0f} MB); build {build_w:.1f} s"
    )
    print(
        f"  generated in {wall:.1f} s wall, {cpu:.1f} s CPU ({n / wall:,.0f} msg/s; "
        f"target < 120 s); leak affects {len(leak['affected_sensors'])} sensors  [{machine_line()}]"
    )


def bench_library() -> None:
    from simulators.scenario import load_scenario, prepare_run

    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        w = time.perf_counter()
        run = prepare_run(load_scenario(path))
        build = time.perf_counter() - w
        w, c = time.perf_counter(), time.process_time()
        n = sum(len(run.messages(k)) for k in range(run.steps)) + len(run.final_messages())
        run.close()
        print(
            f"library: {path.name:28s} {len(run.sensors):3d} sensors {run.steps:5d} steps "
            f"{n:7,d} msgs  build {build:4.1f} s  run {time.perf_counter() - w:5.1f} s wall "
            f"{time.process_time() - c:5.1f} s CPU"
        )
    print(f"  [{machine_line()}]")


def bench_load(sizes: list[int], mqtt_url: str | None) -> None:
    from cityops.kernel.settings import Settings
    from simulators.load import run_load

    stack = None
    if mqtt_url is None:
        from cityops.shell.stack import LocalStack

        stack = LocalStack(ROOT / "var" / "bench-stack-sim")
        stack.start_mosquitto()
        mqtt_url = stack.mqtt_url("cityops-sim")
    try:
        settings = Settings(mqtt_url=mqtt_url, sim_mqtt_url=mqtt_url)
        for n in sizes:
            stats = run_load(settings, n, steps=3, speedup=0, start_ms=int(time.time() * 1000))
            steps = stats.per_step_s
            print(
                f"load: {n:,} sensors x {stats.steps} steps: {stats.messages:,} messages in "
                f"{stats.wall_s:.1f} s = {stats.messages / stats.wall_s:,.0f} msg/s acknowledged "
                f"(QoS 1); a step of {n:,} took {statistics.median(steps):.1f} s "
                f"[{machine_line()}]"
            )
    finally:
        if stack is not None:
            stack.stop_mosquitto()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default="water,week,library,load")
    ap.add_argument("--load-sensors", default="10000,50000")
    ap.add_argument(
        "--mqtt-url", default=None, help="publish the load here (else a private broker)"
    )
    args = ap.parse_args()
    parts = set(args.only.split(","))
    t = time.perf_counter()
    import wntr  # noqa: F401 - imported once here so that its import time is not counted below

    print(f"(importing wntr took {time.perf_counter() - t:.1f} s)")
    if "water" in parts:
        bench_water()
    if "week" in parts:
        bench_week()
    if "library" in parts:
        bench_library()
    if "load" in parts:
        bench_load([int(x) for x in args.load_sensors.split(",")], args.mqtt_url)


if __name__ == "__main__":
    main()
