"""The "unseen network" rehearsal of issue 15, through public commands only.

Issue 15's target: on a network the project has never seen, brought in through public commands
only, most leaks of 3 L/s and more found within 24 h, at least half placed within 300 m, at most
one false alert in two weeks.

This script plays the utility (and the outside reviewer) in three phases:

``generate``  the utility's data, made OUTSIDE cityops: from an EPANET .inp (default wntr's ky10,
              which no scenario or test of the project uses) it picks pressure sensors spread
              over the junctions (farthest-point sampling) and flow meters on every pipe out of a
              reservoir or tank, draws a leak schedule (default 7 leaks of 3-8 L/s, starting on
              days 2-12 of the live period with ramps of 1-6 h, fixed seed), runs the EPANET
              extended-period simulation through the toolkit (wntr) with hourly demand noise and
              the leaks as emitters (PDD), adds measurement noise (pressure 1 kPa, clipped to a
              gauge's 0-1,600 kPa; flow 0.5 % + 0.05 L/s), and writes a sensors CSV (and a
              GeoJSON in the model's own coordinates), a history CSV and the live readings.
              Nothing of cityops is imported. ``--sensor-min-pressure-m 10`` keeps loggers off
              junctions under vacuum (ky10 has some in its own run); ``--repair-days 2`` ends
              each leak two days after it starts (default: leaks run to the end).
``drive``     cityops through its public commands only (subprocess calls of ``cityops``):
              ``gis import-epanet``, ``sensors import --at-asset``, ``gis areas derive``,
              ``readings import`` (history), ``sensors limits --from-model`` (after the
              history, which tells which way each meter reads), ``devices add``; then the readings are published over MQTT as devices would
              (paho-mqtt, compact v1 payloads on ``city/water/<id>/telemetry``, each device
              with its own identity), replayed at 3,600x.
``score``     ``cityops alerts list --json`` / ``cityops incidents list --json``, scored per leak:
              found within 24 h by the water balance (a balance alert in the leak's window) or
              by pressure (a process incident opened in the window within 2 km, the rule of
              alerts/evaluation.py; the same count a day before the leak is printed beside it,
              as the chance level), time to detection, distance from the detecting incident's
              likely pipe's midpoint to the leak, true pipe in the top 5; false: process
              incidents and balance alerts matching no leak; printed next to the targets. The
              ranked candidates are not in any command's output: they are read with one
              read-only SQL query (``--no-candidates-sql`` to skip); the leaks are put on the map
              with ``gis.epanet.model_to_lonlat``, the placement import-epanet used.

Run against a stack of its own::

    cityops up --stack-dir /tmp/stack-unseen --no-simulate &
    python benchmarks/unseen_network.py --stack-dir /tmp/stack-unseen --out /tmp/unseen all

Measured: docs/alerts.md, "The unseen network, rehearsed through public commands" (runs A-L;
the latest, L: leaks found by the water balance within 24 h 6 of 7, none within 300 m, 9 false
process incidents in 14 days (8 of them the generated world's tanks drifting and one running
dry) and 1 false balance leak).

The script points the commands at the stack through CITYOPS_DATABASE_URL and CITYOPS_MQTT_URL,
built from the stack's ``secrets.json`` (``CITYOPS_STACK_DIR`` does the same since session 4).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CITYOPS = str(ROOT / ".venv" / "bin" / "cityops")
DEFAULT_INP = ROOT / ".venv/lib/python3.11/site-packages/wntr/library/networks/ky10.inp"
CHENGDU = timezone(timedelta(hours=8))
G = 9.80665
KPA_PER_M = 9.80665
DAY = 86_400

# targets of issue 15 for the unseen network
TARGET_FOUND_24H = 0.5  # "most leaks": more than half
TARGET_WITHIN_300M = 0.5
TARGET_FALSE = 1


# -- pure parts ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Leak:
    pipe: str  # the true pipe (as the utility's model names it)
    node: str  # the node splitting the pipe in the middle, carrying the emitter
    start_s: int  # [s] after the start of the simulation (history included)
    ramp_s: int  # [s] to grow to full size
    target_lps: float  # [L/s] at the pipe's mean pressure once fully grown
    end_s: int | None = None  # [s] repaired then (None: leaks to the end)
    coeff: float = 0.0  # EPANET emitter coefficient [L/s per m^0.5] (LPS units)
    x: float = 0.0  # the leak point in model coordinates (the pipe's midpoint)
    y: float = 0.0


def utility_to_catalogue_id(uid: str) -> str:
    """The catalogue id `cityops sensors import` gives a utility id (docs/decisions/0056: trim,
    lower-case, other characters to '-', leading '-'/'_' dropped, 64 characters)."""
    s = re.sub(r"[^a-z0-9_-]", "-", uid.strip().lower()).lstrip("-_")
    return s[:64]


def leak_fraction_v(times: np.ndarray, leak: Leak) -> np.ndarray:
    return np.array([leak_fraction(float(t), leak) for t in times])


def farthest_points(xy: np.ndarray, n: int, seed: int) -> list[int]:
    """``n`` indices of ``xy`` spread over the extent (greedy farthest-point sampling from a
    seeded random start)."""
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(xy)))]
    d = np.linalg.norm(xy - xy[chosen[0]], axis=1)
    while len(chosen) < min(n, len(xy)):
        i = int(np.argmax(d))
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(xy - xy[i], axis=1))
    return chosen


def leak_fraction(t_s: float, leak: Leak) -> float:
    """Share of the leak's full size at ``t_s`` (linear ramp, then full until the end)."""
    if t_s < leak.start_s or (leak.end_s is not None and t_s >= leak.end_s):
        return 0.0
    if leak.ramp_s <= 0:
        return 1.0
    return min(1.0, (t_s - leak.start_s) / leak.ramp_s)


# -- generate -----------------------------------------------------------------------------------
def _load(inp: Path):
    import wntr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return wntr.network.WaterNetworkModel(str(inp))


def pick_sensors(
    wn, n_pressure: int, seed: int, served: set[str] | None = None
) -> tuple[list[str], list[str]]:
    """Pressure sensors on junctions spread over the network (not pump or valve ends; only
    ``served`` ones when given), flow meters on every pipe joined to a reservoir or tank."""
    names = [
        j
        for j in wn.junction_name_list
        if not any(
            wn.get_link(lk).link_type in ("Pump", "Valve") for lk in wn.get_links_for_node(j)
        )
        and (served is None or j in served)
    ]
    xy = np.array([wn.get_node(j).coordinates for j in names], dtype=float)
    pressure = [names[i] for i in farthest_points(xy, n_pressure, seed)]
    flow: list[str] = []
    for src in (*wn.reservoir_name_list, *wn.tank_name_list):
        for lk in wn.get_links_for_node(src):
            if wn.get_link(lk).link_type == "Pipe" and lk not in flow:
                flow.append(lk)
    return pressure, flow


def _write_inp(wn, path: Path, *, step_s: int, duration_s: int) -> None:
    import wntr

    o = wn.options
    o.time.hydraulic_timestep = step_s
    o.time.report_timestep = step_s
    o.time.pattern_timestep = 3600
    o.time.duration = duration_s
    o.time.pattern_start = 0
    o.time.start_clocktime = 0
    o.hydraulic.demand_model = "PDD"
    o.hydraulic.required_pressure = 15.0
    o.hydraulic.minimum_pressure = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wntr.network.io.write_inpfile(wn, str(path), units="LPS")


def simulate(
    wn,
    leaks: list[Leak],
    *,
    step_s: int,
    duration_s: int,
    nodes: list[str],
    links: list[str],
    seed: int,
    demand_sigma: float = 0.05,
    day_sigma: float = 0.03,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EPANET extended period through the toolkit: every ``step_s`` the pressure [m] at
    ``nodes`` and the flow [L/s] in ``links``; junction demands get an hourly random factor
    (lognormal ``demand_sigma``) times a daily one (``day_sigma``), leaks are emitters ramped
    in. Returns (times [s], pressures, flows)."""
    from wntr.epanet import toolkit
    from wntr.epanet.util import EN

    rng = np.random.default_rng([seed, 0xD3])
    with tempfile.TemporaryDirectory(prefix="unseen-") as tmp:
        inp = Path(tmp) / "m.inp"
        _write_inp(wn, inp, step_s=step_s, duration_s=duration_s)
        en = toolkit.ENepanet(version=2.2)
        en.ENopen(str(inp), str(Path(tmp) / "m.rpt"), str(Path(tmp) / "m.bin"))
        try:
            en.ENopenH()
            en.ENinitH(0)
            nidx = [en.ENgetnodeindex(n) for n in nodes]
            lidx = [en.ENgetlinkindex(lk) for lk in links]
            leak_idx = [en.ENgetnodeindex(lk.node) for lk in leaks]
            junctions = [
                i
                for i in range(1, en.ENgetcount(EN.NODECOUNT) + 1)
                if en.ENgetnodetype(i) == EN.JUNCTION
            ]
            base = np.array([en.ENgetnodevalue(i, EN.BASEDEMAND) for i in junctions])
            n_steps = duration_s // step_s
            times = np.arange(n_steps) * step_s
            P = np.full((n_steps, len(nodes)), np.nan)
            F = np.full((n_steps, len(links)), np.nan)
            hour = -1
            day_factor = 1.0
            t = 0
            while True:
                if t // 3600 != hour:
                    hour = t // 3600
                    if hour % 24 == 0:
                        day_factor = float(np.exp(rng.normal(0.0, day_sigma)))
                    f = day_factor * np.exp(rng.normal(0.0, demand_sigma, len(base)))
                    for i, b, k in zip(junctions, base, f, strict=True):
                        en.ENsetnodevalue(i, EN.BASEDEMAND, float(b * k))
                for lk, i in zip(leaks, leak_idx, strict=True):
                    en.ENsetnodevalue(i, EN.EMITTER, max(1e-9, lk.coeff * leak_fraction(t, lk)))
                t = en.ENrunH()
                if t % step_s == 0 and t // step_s < n_steps:
                    k = t // step_s
                    P[k] = [en.ENgetnodevalue(i, EN.PRESSURE) for i in nidx]
                    F[k] = [en.ENgetlinkvalue(i, EN.FLOW) for i in lidx]
                dt = en.ENnextH()
                if dt <= 0:
                    break
                t = int(t + dt)  # the next solve's time: demands and leaks set for it
            en.ENcloseH()
        finally:
            en.ENclose()
    return times, P, F


def draw_leaks(
    wn,
    n: int,
    seed: int,
    *,
    history_days: int,
    day_range: tuple[int, int],
    repair_days: float | None = None,
):
    """``n`` leak pipes (both ends junctions, not at pumps or valves, 50 m or longer, at
    least 1 km apart), their starts (days ``day_range`` of the live period, after the history)
    and ramps (1-6 h), target flows 3-8 L/s."""
    rng = np.random.default_rng([seed, 0x1EA])
    special = set(wn.reservoir_name_list) | set(wn.tank_name_list)
    for lk in (*wn.pump_name_list, *wn.valve_name_list):
        special |= {wn.get_link(lk).start_node_name, wn.get_link(lk).end_node_name}
    pipes = [
        p
        for p in wn.pipe_name_list
        if wn.get_link(p).start_node_name not in special
        and wn.get_link(p).end_node_name not in special
        and wn.get_link(p).length >= 50
        and str(wn.get_link(p).initial_status).lower() == "open"
    ]
    chosen: list[str] = []
    mids: list[tuple[float, float]] = []
    for p in rng.permutation(pipes):
        link = wn.get_link(str(p))
        a, b = link.start_node.coordinates, link.end_node.coordinates
        m = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        if all(math.hypot(m[0] - q[0], m[1] - q[1]) * 0.3048 >= 1000 for q in mids):
            chosen.append(str(p))
            mids.append(m)
        if len(chosen) == n:
            break
    lo, hi = day_range
    out = []
    for p, m in zip(chosen, mids, strict=True):
        start = int((history_days + rng.uniform(lo, hi)) * DAY) // 300 * 300
        out.append(
            Leak(
                pipe=p,
                node=f"{p}-leak",
                start_s=start,
                ramp_s=int(rng.uniform(1, 6) * 3600) // 300 * 300,
                target_lps=round(float(rng.uniform(3, 8)), 2),
                end_s=None if repair_days is None else start + int(repair_days * DAY),
                x=m[0],
                y=m[1],
            )
        )
    return out


def generate(args) -> None:
    import wntr

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wn = _load(Path(args.inp))
    served = None
    if args.sensor_min_pressure_m is not None:
        # a utility's loggers sit where the network works: junctions whose pressure stays at or
        # above this over two leak-free days (ky10 has junctions under vacuum in its own run)
        _, pb, _ = simulate(
            wn,
            [],
            step_s=900,
            duration_s=2 * DAY,
            nodes=wn.junction_name_list,
            links=[],
            seed=args.seed,
        )
        low = np.nanmin(pb, axis=0)
        served = {
            j
            for j, m in zip(wn.junction_name_list, low, strict=True)
            if m >= args.sensor_min_pressure_m
        }
        print(f"{len(served)} of {len(low)} junctions keep >= {args.sensor_min_pressure_m} m")
    pressure, flow = pick_sensors(wn, args.pressure_sensors, args.seed, served)
    leaks = draw_leaks(
        wn,
        args.leaks,
        args.seed,
        history_days=args.history_days,
        day_range=(2, 12),
        repair_days=args.repair_days,
    )
    # the simulated network: each leaking pipe split in the middle
    sim = _load(Path(args.inp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lk in leaks:
            sim = wntr.morph.split_pipe(sim, lk.pipe, f"{lk.pipe}-b", lk.node)
    duration = (args.history_days + args.days) * DAY
    t0 = time.monotonic()
    # one leak-free day for the leak points' pressure, hence the emitter coefficient
    _, p0, _ = simulate(
        sim,
        [],
        step_s=args.step_s,
        duration_s=DAY,
        nodes=[lk.node for lk in leaks],
        links=[],
        seed=args.seed,
    )
    sized = []
    for k, lk in enumerate(leaks):
        pm = max(5.0, float(np.nanmean(p0[:, k])))
        sized.append(Leak(**{**asdict(lk), "coeff": lk.target_lps / math.sqrt(pm)}))
    leaks = sized
    # twice: the second run scales each emitter so that its mean flow once grown is the target
    # (the tanks' levels, hence the pressures, drift over the days in this model)
    for attempt in range(3):
        times, P, F = simulate(
            sim,
            leaks,
            step_s=args.step_s,
            duration_s=duration,
            nodes=[*pressure, *[lk.node for lk in leaks]],
            links=flow,
            seed=args.seed,
        )
        if attempt < 2:
            rescaled = []
            for k, lk in enumerate(leaks):
                grown = (times >= lk.start_s + lk.ramp_s) & (leak_fraction_v(times, lk) > 0)
                q = lk.coeff * np.sqrt(np.clip(P[grown, len(pressure) + k], 0.0, None))
                rescaled.append(
                    Leak(
                        **{
                            **asdict(lk),
                            "coeff": lk.coeff * lk.target_lps / max(0.1, float(q.mean())),
                        }
                    )
                )
            leaks = rescaled
    print(f"EPANET: {duration / DAY:.0f} days at {args.step_s} s in {time.monotonic() - t0:.1f} s")
    n = len(pressure)
    leak_p = P[:, n:]
    P = P[:, :n]
    leak_flow = [
        [
            lk.coeff * leak_fraction(t, lk) * math.sqrt(max(p, 0.0))
            for t, p in zip(times, leak_p[:, k], strict=True)
        ]
        for k, lk in enumerate(leaks)
    ]
    # measurement noise: pressure 1 kPa (1 sigma) at 0.1 kPa resolution; flow 0.5 % + 0.05 L/s
    rng = np.random.default_rng([args.seed, 0x0B5])
    # a gauge transducer reads 0-1,600 kPa: this model has junctions under vacuum at times
    # (ky10 has negative pressures in its own EPANET run), which a gauge shows as 0
    p_kpa = np.clip(np.round(P * KPA_PER_M + rng.normal(0, 1.0, P.shape), 1), 0.0, 1600.0)
    f_lps = np.round(F * (1 + rng.normal(0, 0.005, F.shape)) + rng.normal(0, 0.05, F.shape), 2)

    # the start: Chengdu midnight, so that the live period ends a day before today
    today = datetime.now(CHENGDU).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=args.history_days + args.days + 1)
    start_ms = int(start.timestamp() * 1000)

    sensors = [(f"PS-{j}", "water_pressure", j) for j in pressure] + [
        (f"FM-{p}", "water_flow", p) for p in flow
    ]
    with open(out / "sensors.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sensor_id", "sensor_type", "name", "asset_id"])
        for sid, typ, asset in sensors:
            w.writerow(
                [sid, typ, f"{'Pressure' if typ == 'water_pressure' else 'Flow'} {asset}", asset]
            )
    # the same in the model's own coordinates, for --origin/--model (not used by `drive`)
    feats = []
    for sid, typ, asset in sensors:
        if typ == "water_pressure":
            x, y = wn.get_node(asset).coordinates
        else:
            link = wn.get_link(asset)
            (ax, ay), (bx, by) = link.start_node.coordinates, link.end_node.coordinates
            x, y = (ax + bx) / 2, (ay + by) / 2
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [x, y]},
                "properties": {"sensor_id": sid, "sensor_type": typ, "asset_id": asset},
            }
        )
    (out / "sensors.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": feats})
    )

    hist_steps = args.history_days * DAY // args.step_s
    with open(out / "history.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sensor_id", "quantity", "ts", "value"])
        for k in range(hist_steps):
            ts = (start_ms + int(times[k]) * 1000) / 1000
            iso = datetime.fromtimestamp(ts, UTC).isoformat()
            for i, (sid, typ, _) in enumerate(sensors):
                v = p_kpa[k, i] if typ == "water_pressure" else f_lps[k, i - n]
                w.writerow([sid, "pressure" if typ == "water_pressure" else "flow", iso, v])
    live = np.hstack([p_kpa, f_lps])[hist_steps:]
    np.savez_compressed(
        out / "live.npz",
        ts_ms=start_ms + times[hist_steps:].astype(np.int64) * 1000,
        values=live,
    )
    truth = {
        "inp": str(Path(args.inp).resolve()),
        "start_ms": start_ms,
        "live_start_ms": start_ms + hist_steps * args.step_s * 1000,
        "end_ms": start_ms + duration * 1000,
        "step_s": args.step_s,
        "sensors": [{"id": s, "type": t, "asset": a} for s, t, a in sensors],
        "leaks": [
            {
                **asdict(lk),
                "start_ms": start_ms + lk.start_s * 1000,
                "peak_lps": round(max(leak_flow[k]), 2),
                "mean_full_lps": round(
                    float(
                        np.mean(
                            [
                                q
                                for t, q in zip(times, leak_flow[k], strict=True)
                                if t >= lk.start_s + lk.ramp_s and leak_fraction(t, lk) > 0
                            ]
                        )
                    ),
                    2,
                ),
            }
            for k, lk in enumerate(leaks)
        ],
    }
    (out / "truth.json").write_text(json.dumps(truth, indent=1))
    print(f"{len(pressure)} pressure sensors, {len(flow)} flow meters, {len(leaks)} leaks")
    print(
        f"pressures {np.nanmin(p_kpa):.0f}-{np.nanmax(p_kpa):.0f} kPa; data from {start.isoformat()}"
    )
    for lk in truth["leaks"]:
        print(
            f"  leak {lk['pipe']}: day {(lk['start_s'] / DAY - args.history_days):.2f} of the live"
            f" period, ramp {lk['ramp_s'] / 3600:.1f} h, {lk['mean_full_lps']} L/s"
        )


# -- drive --------------------------------------------------------------------------------------
def stack_env(stack_dir: str | None) -> dict[str, str]:
    """The environment pointing the commands at the stack in ``stack_dir``: the URLs built
    from its secrets.json as `cityops up` does (in the environment, not the arguments)."""
    env = dict(os.environ)
    if not stack_dir:
        return env
    root = Path(stack_dir)
    s = json.loads((root / "secrets.json").read_text())
    base = f"127.0.0.1:{s['mqtt_port']}"
    env.update(
        {
            "CITYOPS_DATABASE_URL": f"postgresql://postgres:{s['pg_password']}@127.0.0.1:{s['pg_port']}/cityops",
            "CITYOPS_MQTT_URL": f"mqtt://cityops-admin:{s['mqtt_passwords']['cityops-admin']}@{base}",
            "CITYOPS_DEVICE_CA_DIR": str(root / "device-ca"),
            "CITYOPS_KEYS_DIR": str(root / "keys"),
            "UNSEEN_MQTT_PORT": str(s["mqtt_port"]),
        }
    )
    return env


def run(cmd: list[str], env: dict[str, str], log: Path, *, check: bool = True) -> str:
    t0 = time.monotonic()
    r = subprocess.run([CITYOPS, *cmd], env=env, capture_output=True, text=True, timeout=900)
    dt = time.monotonic() - t0
    with open(log, "a") as fh:
        fh.write(
            f"$ cityops {' '.join(cmd)}  # rc={r.returncode} {dt:.1f} s\n{r.stdout}{r.stderr}\n"
        )
    print(f"$ cityops {' '.join(cmd)}  -> rc {r.returncode} in {dt:.1f} s")
    if check and r.returncode != 0:
        print(r.stdout[-2000:], r.stderr[-2000:], sep="\n")
        raise SystemExit(f"failed: cityops {' '.join(cmd)}")
    return r.stdout


def drive(args) -> None:
    out = Path(args.out)
    truth = json.loads((out / "truth.json").read_text())
    env = stack_env(args.stack_dir)
    log = out / "commands.log"
    inp = truth["inp"]
    origin = args.origin
    run(["gis", "import-epanet", inp, "--origin", origin, "--scale-m", str(args.scale_m)], env, log)
    run(["sensors", "import", str(out / "sensors.csv"), "--at-asset"], env, log)
    run(["gis", "areas", "derive", "--prefix", "unseen"], env, log)
    run(["gis", "areas", "list"], env, log)
    if args.history_days:
        run(["readings", "import", str(out / "history.csv")], env, log)
    # after the history: a meter whose readings run against its link gets its band turned round
    run(["sensors", "limits", "--from-model"], env, log)
    ids = [utility_to_catalogue_id(s["id"]) for s in truth["sensors"]]
    cred = out / "devices.json"
    if cred.exists():
        cred.unlink()
    run(["devices", "add", *ids, "--credentials-file", str(cred)], env, log)
    replay(args, truth, ids, json.loads(cred.read_text()), env)


def replay(args, truth, ids: list[str], passwords: dict[str, str], env: dict[str, str]) -> None:
    """Publish the live readings as the devices would: each device its own MQTT identity,
    one compact v1 message per reading, QoS 1, at ``args.speedup`` simulated seconds per
    second."""
    import paho.mqtt.client as mqtt

    data = np.load(Path(args.out) / "live.npz")
    ts_ms, values = data["ts_ms"], data["values"]
    port = int(env["UNSEEN_MQTT_PORT"]) if "UNSEEN_MQTT_PORT" in env else args.mqtt_port
    kinds = ["pressure" if s["type"] == "water_pressure" else "flow" for s in truth["sensors"]]
    clients = []
    for sid in ids:
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{sid}", protocol=mqtt.MQTTv5
        )
        c.username_pw_set(sid, passwords[sid])
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port)
        c.loop_start()
        clients.append(c)
    time.sleep(1.0)
    bad = [ids[i] for i, c in enumerate(clients) if not c.is_connected()]
    if bad:
        raise SystemExit(f"devices not connected: {bad[:5]}")
    step_s = truth["step_s"]
    wall0 = time.monotonic()
    last = None
    for k in range(len(ts_ms)):
        due = wall0 + k * step_s / args.speedup
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        for i, (sid, c) in enumerate(zip(ids, clients, strict=True)):
            v = float(values[k, i])
            if not math.isfinite(v):
                continue
            payload = json.dumps({"v": 1, "ts": int(ts_ms[k]), "seq": k, "q": {kinds[i]: v}})
            last = c.publish(f"city/water/{sid}/telemetry", payload, qos=1)
        if k % 288 == 0:
            print(f"  replay day {k * step_s / DAY:.0f}, {time.monotonic() - wall0:.0f} s")
    if last is not None:
        last.wait_for_publish(60)
    time.sleep(2)
    for c in clients:
        c.loop_stop()
        c.disconnect()
    print(f"replayed {len(ts_ms)} steps x {len(ids)} devices in {time.monotonic() - wall0:.0f} s")


# -- score --------------------------------------------------------------------------------------
def _model_lines(wn, scale: float) -> dict[str, list[tuple[float, float]]]:
    lines = {}
    for name, link in wn.links():
        pts = [
            link.start_node.coordinates,
            *getattr(link, "vertices", []),
            link.end_node.coordinates,
        ]
        lines[name] = [(x * scale, y * scale) for x, y in pts]
    return lines


def _midpoint(line: list[tuple[float, float]]) -> tuple[float, float]:
    seg = [math.dist(a, b) for a, b in itertools.pairwise(line)]
    half, acc = sum(seg) / 2, 0.0
    for (a, b), s in zip(itertools.pairwise(line), seg, strict=True):
        if acc + s >= half and s > 0:
            u = (half - acc) / s
            return (a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1]))
        acc += s
    return line[0]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def _candidates_sql(env: dict[str, str], incident_ids: list[int]) -> dict[int, list[str]]:
    """WORKAROUND, not a public command: `cityops incidents list --json` does not give the
    ranked candidates (incidents.affected), so they are read here, read-only."""
    if not incident_ids:
        return {}
    import psycopg

    with psycopg.connect(env["CITYOPS_DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT incident_id, affected FROM incidents WHERE incident_id = ANY(%s)",
            (incident_ids,),
        ).fetchall()
    out = {}
    for iid, aff in rows:
        cands = (aff or {}).get("candidates") or []
        out[iid] = [
            str(c.get("pipe") or c.get("element")) if isinstance(c, dict) else str(c) for c in cands
        ]
    return out


BALANCE_KINDS = ("water_burst", "night_flow_rise", "night_flow_step", "inlet_flow_low")


def score(args) -> dict:
    """Per leak: found within 24 h (by the water balance: a balance alert in the leak's window;
    by pressure: a non-health incident opened in the window with its centre within 2 km, the
    evaluation's rule), time to detection, the distance from the detecting incident's likely
    pipe's midpoint to the leak, the true pipe in its top 5; false: balance alerts and
    process incidents that match no leak."""
    out = Path(args.out)
    truth = json.loads((out / "truth.json").read_text())
    env = stack_env(args.stack_dir)
    log = out / "commands.log"
    since = datetime.fromtimestamp(truth["start_ms"] / 1000, UTC).isoformat()
    common = ["--json", "--utility", "water", "--since", since, "--limit", "10000"]
    alerts = json.loads(run(["alerts", "list", *common], env, log))
    incidents = json.loads(run(["incidents", "list", *common], env, log))
    (out / "alerts.json").write_text(json.dumps(alerts, indent=1))
    (out / "incidents.json").write_text(json.dumps(incidents, indent=1))
    wn = _load(Path(truth["inp"]))
    lines = _model_lines(wn, args.scale_m)
    from gis.epanet import model_to_lonlat  # only to put the leaks on the map as imported

    origin = tuple(float(v) for v in args.origin.split(","))
    to_lonlat = model_to_lonlat(wn, origin=origin, scale_m=args.scale_m)
    leaks = truth["leaks"]
    by_id = {i["incident_id"]: i for i in incidents}
    health = [i for i in incidents if i.get("kind") == "sensor_health"]
    process = [i for i in incidents if i.get("kind") != "sensor_health"]
    balance = [a for a in alerts if a["kind"] in BALANCE_KINDS]
    cands = _candidates_sql(env, [i["incident_id"] for i in process]) if args.candidates_sql else {}

    def window(lk) -> tuple[float, float]:
        return lk["start_ms"] / 1000 - 300, lk["start_ms"] / 1000 + DAY

    def km(lon1, lat1, lon2, lat2) -> float:
        dy = (lat2 - lat1) * 111.32
        dx = (lon2 - lon1) * 111.32 * math.cos(math.radians((lat1 + lat2) / 2))
        return math.hypot(dx, dy)

    used_alerts: set[int] = set()
    used_incidents: set[int] = set()
    rows = []
    for lk in leaks:
        a0, a1 = window(lk)
        llon, llat = to_lonlat(lk["x"], lk["y"])
        bal = sorted(
            (a for a in balance if a0 <= _ts(a["raised_at"]) <= a1), key=lambda a: a["raised_at"]
        )
        near = sorted(
            (
                i
                for i in process
                if a0 <= _ts(i["opened_at"]) <= a1
                and i.get("lon") is not None
                and km(i["lon"], i["lat"], llon, llat) <= 2.0
            ),
            key=lambda i: i["opened_at"],
        )
        # the same test a day before the leak: how often a pressure incident "matches" by chance
        chance = sum(
            1
            for i in process
            if a0 - DAY <= _ts(i["opened_at"]) < a0
            and i.get("lon") is not None
            and km(i["lon"], i["lat"], llon, llat) <= 2.0
        )
        used_alerts |= {a["alert_id"] for a in bal}
        used_incidents |= {a["incident_id"] for a in bal} | {i["incident_id"] for i in near}
        row = {
            "pipe": lk["pipe"],
            "lps": lk["mean_full_lps"],
            "found": bool(bal or near),
            "by_balance": bool(bal),
            "by_pressure_2km": len(near),
            "pressure_2km_day_before": chance,
        }
        first = None
        if bal:
            first = (
                _ts(bal[0]["raised_at"]),
                bal[0]["incident_id"],
                f"{bal[0]['kind']}@{bal[0]['sensor_id']}",
            )
        if near and (first is None or _ts(near[0]["opened_at"]) < first[0]):
            first = (_ts(near[0]["opened_at"]), near[0]["incident_id"], "+".join(near[0]["kinds"]))
        if first:
            inc = by_id.get(first[1], {})
            like = inc.get("likely_location")
            row.update(
                ttd_h=(first[0] - lk["start_ms"] / 1000) / 3600,
                alert=first[2],
                incident=first[1],
                likely=like,
            )
            tx, ty = lk["x"] * args.scale_m, lk["y"] * args.scale_m
            if like in lines:
                mx, my = _midpoint(lines[like])
                row["error_m"] = math.hypot(mx - tx, my - ty)
            c = cands.get(first[1])
            row["top5"] = (lk["pipe"] in c[:5]) if c else None
        rows.append(row)
    false_balance = [a for a in balance if a["alert_id"] not in used_alerts]
    false = [i for i in process if i["incident_id"] not in used_incidents]
    result = {
        "leaks": rows,
        "false_incidents": false,
        "false_balance_alerts": false_balance,
        "health": health,
        "n_alerts": len(alerts),
    }
    (out / "score.json").write_text(json.dumps(result, indent=1, default=str))
    print_table(rows, false, false_balance, health, alerts)
    return result


def print_table(rows, false, false_balance, health, alerts) -> None:
    print()
    print(
        f"{'leak pipe':<10} {'L/s':>5} {'found':>6} {'balance':>8} {'p<2km':>6} {'(day-1)':>7} {'TTD h':>7}"
        f" {'error m':>8} {'top5':>5}  first detection -> likely pipe"
    )
    for r in rows:
        err = r.get("error_m")
        print(
            f"{r['pipe']:<10} {r['lps']:>5.1f} {('yes' if r['found'] else 'no'):>6}"
            f" {('yes' if r['by_balance'] else 'no'):>8} {r['by_pressure_2km']:>6}"
            f" {r['pressure_2km_day_before']:>7}"
            f" {r.get('ttd_h', float('nan')):>7.1f} {(f'{err:.0f}' if err is not None else '-'):>8}"
            f" { ({True: 'yes', False: 'no', None: '-'}[r.get('top5')]):>5}"
            f"  {r.get('alert', '')} -> {r.get('likely', '')}"
        )
    n = len(rows)
    found = sum(r["found"] for r in rows)
    by_bal = sum(r["by_balance"] for r in rows)
    placed = [r for r in rows if r.get("error_m") is not None]
    within = sum(r["error_m"] <= 300 for r in placed)
    top5 = [r["top5"] for r in rows if r.get("top5") is not None]
    errs = sorted(r["error_m"] for r in placed)
    med = f"{errs[len(errs) // 2]:.0f} m" if errs else "-"
    table = [
        ("leaks found within 24 h (balance or pressure <2 km)", f"{found}/{n}", "> half"),
        ("  of which by the water balance", f"{by_bal}/{n}", "-"),
        ("leaks placed within 300 m (of all leaks)", f"{within}/{n}", ">= half"),
        ("median localisation error (found leaks)", med, "-"),
        ("true pipe in top 5 (found leaks)", f"{sum(top5)}/{len(top5)}" if top5 else "-", "-"),
        ("false process incidents in the 14 days", str(len(false)), "<= 1"),
        ("  false balance alerts (leak alerts, no leak)", str(len(false_balance)), "<= 1"),
        ("sensor-health incidents (no fault injected)", str(len(health)), "-"),
        ("water alerts in all", str(len(alerts)), "-"),
    ]
    print()
    print(f"{'measure':<54} {'figure':>10} {'target':>10}")
    for name, fig, tgt in table:
        print(f"{name:<54} {fig:>10} {tgt:>10}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("phase", choices=["generate", "drive", "score", "all"])
    p.add_argument("--inp", default=str(DEFAULT_INP))
    p.add_argument("--out", default="/tmp/unseen")
    p.add_argument("--stack-dir", default=None, help="a `cityops up --stack-dir` stack")
    p.add_argument("--mqtt-port", type=int, default=1883, help="without --stack-dir")
    p.add_argument("--seed", type=int, default=15)
    p.add_argument("--pressure-sensors", type=int, default=30)
    p.add_argument("--leaks", type=int, default=7)
    p.add_argument("--days", type=int, default=14)
    p.add_argument("--history-days", type=int, default=2)
    p.add_argument("--step-s", type=int, default=300)
    p.add_argument(
        "--repair-days",
        type=float,
        default=None,
        help="each leak repaired this long after it starts",
    )
    p.add_argument(
        "--sensor-min-pressure-m",
        type=float,
        default=None,
        help="pressure sensors only on junctions keeping this pressure [m] in a leak-free run",
    )
    p.add_argument("--speedup", type=float, default=3600.0)
    p.add_argument("--origin", default="104.10,30.62")
    p.add_argument("--scale-m", type=float, default=0.3048, help="ky10's coordinates are in feet")
    p.add_argument("--wait-s", type=float, default=150.0, help="after the replay, for the enricher")
    p.add_argument(
        "--candidates-sql",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read the ranked candidates with SQL (no public command gives them)",
    )
    args = p.parse_args(argv)
    if args.phase in ("generate", "all"):
        generate(args)
    if args.phase in ("drive", "all"):
        drive(args)
        print(f"waiting {args.wait_s:.0f} s for the engine and the enricher")
        time.sleep(args.wait_s)
    if args.phase in ("score", "all"):
        score(args)


if __name__ == "__main__":
    sys.exit(main())
