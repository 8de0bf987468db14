"""Alert latency benchmark: reading published -> alert stored and its event received over MQTT.

    python -m alerts.bench --sensors 1000 --rate 2000 --seconds 10 --anomalous 0.05

Uses the services named by the CITYOPS_* environment (a scratch database: it adds sensors named
``bench-NNNNN``). Runs the engine as `cityops alerts` in a process of its own, as in production
(its own client id and share group; ``--in-process`` runs it in a thread here instead),
publishes readings at ``--rate`` readings/s as cityops-sim, and makes ``--anomalous`` of the
sensors swing across their low limit at every reading, so each of their readings raises or
clears an alert. Prints the machine, the achieved rate and latency percentiles; asserts nothing
(CONVENTIONS 14).
"""

from __future__ import annotations

import argparse
import os
import platform
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from alerts.events import decode_alert_event
from alerts.service import AlertService
from cityops.kernel.db import connect
from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings, parse_mqtt_url
from gis.postgis import write_sensors
from sensors.catalogue import Sensor
from sensors.payload import encode_batch, encode_reading
from sensors.quantities import Utility
from sensors.topics import alert_filter, telemetry_topic

Received = queue.Queue[tuple[bytes, int]]  # (alert event payload, received [ns])


@dataclass
class Load:
    """What was published: readings, for how long, and when each swinging reading went out."""

    readings: int
    seconds: float
    sent_ns: dict[tuple[str, int], int]  # (sensor, reading time [ms]) -> published [ns]


def _percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def _arguments() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--sensors", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=2000.0, help="readings per second")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--anomalous", type=float, default=0.05, help="fraction of swinging sensors")
    ap.add_argument("--in-process", action="store_true", help="run the engine in a thread here")
    ap.add_argument(
        "--per-message",
        type=int,
        default=1,
        help="readings per message (a gateway's batch, v1 'batch' payload)",
    )
    return ap.parse_args()


def _register(settings: Settings, ids: list[str]) -> None:
    """The benchmark's water pressure sensors, at Chengdu's centre."""
    sensors = [Sensor(sid, Utility.WATER, "water_pressure", sid, 104.06, 30.66) for sid in ids]
    with connect(settings.database_url) as conn:
        write_sensors(conn, sensors)
        conn.commit()


def _subscribe(settings: Settings, tag: str, received: Received) -> mqtt.Client:
    """A subscriber to every alert event, stamping each with its arrival [ns]."""
    ep = parse_mqtt_url(settings.mqtt_url)
    sub = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"bench-sub-{tag}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    sub.username_pw_set(ep.username, ep.password)
    subscribed = threading.Event()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(alert_filter(), qos=1)
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.on_message = lambda c, u, m: received.put((bytes(m.payload), time.time_ns()))
    sub.connect(ep.host, ep.port)
    sub.loop_start()
    subscribed.wait(10)
    return sub


def _start_engine(settings: Settings, in_process: bool) -> Callable[[], str]:
    """The engine, running; returns how to stop it, which gives its closing line."""
    if in_process:
        stop = threading.Event()
        service = AlertService(settings, stop)
        engine = threading.Thread(target=service.run, name="engine", daemon=True)
        engine.start()
        time.sleep(3)  # subscribed and loaded

        def stop_thread() -> str:
            stop.set()
            engine.join(20)
            inside = service.stats.latency_ms or []
            return (
                f"engine: {service.stats.messages} messages, {service.stats.events} events, "
                f"{service.stats.batches} batches; message received -> its events published "
                f"[ms]: p50 {_percentile(inside, 50):.1f}, p99 {_percentile(inside, 99):.1f}"
            )

        return stop_thread
    env = {**os.environ, **settings.as_environment()}
    log_path = Path(tempfile.mkdtemp(prefix="alerts-bench-")) / "engine.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cityops", "alerts", "--ephemeral"],
            env=env,
            stdout=log,
            stderr=log,
        )
    deadline = time.monotonic() + 60
    while b"alerts engine ready" not in log_path.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the engine did not start; see {log_path}")
        time.sleep(0.2)

    def stop_process() -> str:
        proc.terminate()
        proc.wait(30)
        lines = log_path.read_text(errors="replace").splitlines()
        return next((x for x in reversed(lines) if "alerts engine stopped" in x), "")

    return stop_process


def _publish(
    settings: Settings, tag: str, args: argparse.Namespace, ids: list[str], swinging: set[str]
) -> Load:
    """Readings at ``args.rate`` per second for ``args.seconds``; the swinging sensors
    alternate between 150 and 320 kPa (across the 200 kPa low limit) at every reading."""
    sent_ns: dict[tuple[str, int], int] = {}
    n_sent = 0
    start_ms = time.time_ns() // 1_000_000 - 60_000  # distinct, increasing reading times
    per = max(1, args.per_message)
    t_start = time.monotonic()
    step = 0
    with Publisher(settings.mqtt_url_for("sim"), f"bench-pub-{tag}", max_inflight=1000) as pub:
        while time.monotonic() - t_start < args.seconds:
            for sid in ids:
                entries: list[tuple[int, int | None, dict[str, float]]] = []
                for j in range(per):
                    k = step * per + j
                    value = (150.0 if k % 2 == 0 else 320.0) if sid in swinging else 320.0
                    entries.append((start_ms + k, k, {"pressure": value}))
                payload = encode_reading(*entries[0]) if per == 1 else encode_batch(entries)
                pub.publish(telemetry_topic("water", sid), payload)
                if sid in swinging:
                    now_ns = time.time_ns()
                    sent_ns.update({(sid, ts_ms): now_ns for ts_ms, _, _ in entries})
                n_sent += per
                # pace: stay at or under the requested rate
                ahead = n_sent / args.rate - (time.monotonic() - t_start)
                if ahead > 0.002:
                    time.sleep(ahead)
                if time.monotonic() - t_start >= args.seconds:
                    break
            step += 1
        pub.flush()
    return Load(n_sent, time.monotonic() - t_start, sent_ns)


def _latencies(received: Received, sent_ns: dict[tuple[str, int], int]) -> list[float]:
    """Published -> event received [ms] of every expected alert event that came within 15 s."""
    deadline = time.monotonic() + 15
    latencies: list[float] = []
    while len(latencies) < len(sent_ns) and time.monotonic() < deadline:
        try:
            payload, at_ns = received.get(timeout=1)
        except queue.Empty:
            continue
        ev = decode_alert_event(payload)
        ts_ms = int(datetime.fromisoformat(ev.ts.replace("Z", "+00:00")).timestamp() * 1000)
        sent = sent_ns.get((ev.sensor_id, ts_ms))
        if sent is not None:
            latencies.append((at_ns - sent) / 1e6)
    return latencies


def main() -> None:
    args = _arguments()
    tag = uuid.uuid4().hex[:6]
    base = Settings()  # type: ignore[call-arg]  # from the environment
    settings = base.model_copy(
        update={"alerts_client_id": f"bench-{tag}", "alerts_share_group": f"bench-{tag}"}
    )
    ids = [f"bench-{i:05d}" for i in range(args.sensors)]
    _register(settings, ids)
    swinging = set(ids[: max(1, int(args.sensors * args.anomalous))])
    received: Received = queue.Queue()
    sub = _subscribe(settings, tag, received)
    stop_engine = _start_engine(settings, args.in_process)
    load = _publish(settings, tag, args, ids, swinging)
    latencies = _latencies(received, load.sent_ns)
    engine_line = stop_engine()
    sub.disconnect()
    sub.loop_stop()

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(
        f"published {load.readings} readings in {load.seconds:.1f} s = "
        f"{load.readings / load.seconds:.0f} readings/s in messages of {args.per_message} "
        f"({args.sensors} sensors, {len(swinging)} swinging across the low limit)"
    )
    print(engine_line)
    print(f"alert events matched: {len(latencies)} of {len(load.sent_ns)} expected")
    if latencies:
        print(
            "latency reading published -> alert event received [ms]: "
            f"p50 {_percentile(latencies, 50):.1f}, p90 {_percentile(latencies, 90):.1f}, "
            f"p99 {_percentile(latencies, 99):.1f}, max {max(latencies):.1f}"
        )


if __name__ == "__main__":
    main()
