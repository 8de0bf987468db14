"""Ingestion benchmark: a bounded load on loopback against a private PostgreSQL and Mosquitto.

    .venv/bin/python benchmarks/ingest_bench.py [--duration 60] [--backlog 200000]

Prints, with the machine's details, in one run:

1. the ceiling of a bare paho-mqtt subscriber (QoS 1, shared subscription, counts only) draining
   a queued backlog of single-reading messages;
2. `cityops ingest` (a real subprocess) draining the same backlog: every message decoded,
   validated, stored and acknowledged after commit; ratio to (1);
3. two `cityops ingest` workers on one shared subscription, same backlog; ratio to (2);
4. the ceiling of raw COPY into `readings`, and `cityops ingest` sustaining batched messages
   (100 readings each, from publisher processes) for ``--duration`` seconds; ratio;
5. the same for SenML packs (shorter);
6. publish-to-commit latency p50/p99 at ``--rate`` single-reading messages per second.

Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from cityops.migrate import migrate  # noqa: E402
from cityops.mqtt import Publisher  # noqa: E402
from cityops.settings import Settings, parse_mqtt_url  # noqa: E402
from cityops.stack import LocalStack  # noqa: E402
from sensors.payload import encode_batch, encode_reading  # noqa: E402
from sensors.topics import shared, telemetry_filter, telemetry_topic  # noqa: E402

N_SENSORS = 1000


class _Publisher(Publisher):
    """The shared QoS 1 publisher, patient: on a loaded machine the broker may take longer than
    30 s to acknowledge a full in-flight window."""

    def flush(self, timeout_s: float = 600.0) -> None:
        super().flush(timeout_s)


# -- publishers (separate processes, so that they do not share the ingestor's interpreter) ----
def _publish_singles(url: str, sensors: list[str], start: int, count: int, t0_ms: int) -> None:
    with _Publisher(url, f"bench-pub-{uuid.uuid4().hex[:8]}", max_inflight=1000) as pub:
        topics = [telemetry_topic("water", s) for s in sensors]
        for i in range(start, start + count):
            k, j = divmod(i, len(sensors))
            pub.publish(topics[j], encode_reading(t0_ms + k, k, {"pressure": 300.0 + (i % 97)}))


def _publish_paced(url: str, sensors: list[str], rate: float, seconds: float) -> None:
    """Single readings at ``rate`` per second, each stamped with its publish time [ms]."""
    with _Publisher(url, f"bench-lat-{uuid.uuid4().hex[:8]}", max_inflight=1000) as pub:
        topics = [telemetry_topic("water", s) for s in sensors]
        n = int(rate * seconds)
        t_start = time.monotonic()
        last_ms = {}
        for i in range(n):
            due = t_start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            j = i % len(sensors)
            ms = time.time_ns() // 1_000_000
            if last_ms.get(j, 0) >= ms:  # one reading per sensor and millisecond
                ms = last_ms[j] + 1
            last_ms[j] = ms
            pub.publish(topics[j], encode_reading(ms, i, {"pressure": 300.0}))


def _publish_batches(
    url: str, sensors: list[str], per_msg: int, seconds: float, t0_ms: int, senml: bool
) -> None:
    """Gateway batches (or SenML packs) of ``per_msg`` readings, as fast as accepted."""
    with _Publisher(url, f"bench-batch-{uuid.uuid4().hex[:8]}", max_inflight=200) as pub:
        topics = [telemetry_topic("water", s) for s in sensors]
        offset = [0] * len(sensors)
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            j = i % len(sensors)
            base = t0_ms + offset[j]
            offset[j] += per_msg
            if senml:
                head = {"bn": f"urn:dev:cityops:{sensors[j]}:", "bt": base / 1000, "bu": "kPa"}
                recs = [
                    {"n": "pressure", "t": k / 1000, "v": 300.0 + k % 50} for k in range(per_msg)
                ]
                recs[0].update(head)
                body = json.dumps(recs, separators=(",", ":")).encode()
            else:
                body = encode_batch(
                    [
                        (base + k, offset[j] + k, {"pressure": 300.0 + k % 50})
                        for k in range(per_msg)
                    ]
                )
            pub.publish(topics[j], body)
            i += 1


def _run_procs(target, args_list: list[tuple]) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=a) for a in args_list]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"publisher exited with {p.exitcode}")


# -- helpers -------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.splitlines()
    from importlib.metadata import version

    return {
        "cpu": f"{cpu} x {os.cpu_count()}",
        "memory": f"{mem_gb:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "paho-mqtt": version("paho-mqtt"),
        "psycopg": psycopg.__version__,
        "mosquitto": mosq[0] if mosq else "?",
        "load average (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _session_client(url: str, client_id: str, count_to: list[int]) -> mqtt.Client:
    ep = parse_mqtt_url(url)
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.username_pw_set(ep.username, ep.password)

    def on_message(client, userdata, msg) -> None:
        count_to[0] += 1

    c.on_message = on_message
    return c


def _connect_props() -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 3600
    p.ReceiveMaximum = 1000
    return p


def bare_subscriber_ceiling(
    stack: LocalStack, settings: Settings, sensors: list[str], n: int
) -> float:
    url = settings.mqtt_url_for("ingest")
    ep = parse_mqtt_url(url)
    cid = f"bench-bare-{uuid.uuid4().hex[:6]}"
    group = f"bare-{uuid.uuid4().hex[:6]}"
    count = [0]
    c = _session_client(url, cid, count)
    c.connect(ep.host, ep.port, clean_start=False, properties=_connect_props())
    c.subscribe(shared(group, telemetry_filter()), qos=1)
    c.loop_start()
    time.sleep(0.5)
    c.disconnect()
    c.loop_stop()
    _publish_backlog(settings, sensors, n)
    count[0] = 0
    c = _session_client(url, cid, count)
    c.connect(ep.host, ep.port, clean_start=False, properties=_connect_props())
    c.loop_start()
    while count[0] == 0:
        time.sleep(0.001)
    t1, c1 = time.monotonic(), count[0]
    while count[0] < n:
        time.sleep(0.01)
    rate = (count[0] - c1) / (time.monotonic() - t1)
    c.disconnect(properties=_end_props())
    c.loop_stop()
    return rate


def _end_props() -> Properties:
    p = Properties(PacketTypes.DISCONNECT)
    p.SessionExpiryInterval = 0
    return p


def _publish_backlog(settings: Settings, sensors: list[str], n: int) -> None:
    t0 = time.monotonic()
    t0_ms = time.time_ns() // 1_000_000 - 20 * 86_400_000 + _publish_backlog.calls * 3_600_000
    _publish_backlog.calls += 1  # type: ignore[attr-defined]
    half = n // 2
    _run_procs(
        _publish_singles,
        [
            (settings.mqtt_url_for("sim"), sensors, 0, half, t0_ms),
            (settings.mqtt_url_for("sim"), sensors, half, n - half, t0_ms),
        ],
    )
    print(f"  (backlog of {n} messages published in {time.monotonic() - t0:.1f} s)", flush=True)


_publish_backlog.calls = 0  # type: ignore[attr-defined]


def _env(settings: Settings) -> dict[str, str]:
    return {**os.environ, **settings.as_environment()}


def _start_workers(settings_list: list[Settings]) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [sys.executable, "-m", "cityops", "ingest"],
            env=_env(s),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for s in settings_list
    ]


def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(120)


def _end_sessions(url: str, client_ids: list[str]) -> None:
    """Forget the workers' persistent sessions, or they keep queueing later phases' messages."""
    ep = parse_mqtt_url(url)
    for cid in client_ids:
        c = _session_client(url, cid, [0])
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        c.connect(ep.host, ep.port, clean_start=True, properties=props)
        c.loop_start()
        time.sleep(0.2)
        c.disconnect()
        c.loop_stop()


def _stored(conn: psycopg.Connection, ids: list[str]) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(stored), 0) FROM ingest_workers WHERE client_id = ANY(%s)", (ids,)
    ).fetchone()
    return int(row[0]) if row else 0


def _wait_registered(conn: psycopg.Connection, ids: list[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM ingest_workers WHERE client_id = ANY(%s) AND state = 'running'",
            (ids,),
        ).fetchone()
        if row and row[0] == len(ids):
            return
        time.sleep(0.1)
    raise TimeoutError("workers did not start")


def ingest_drain(
    settings: Settings, sensors: list[str], n: int, workers: int, conn: psycopg.Connection
) -> float:
    """Rate [messages/s] of ``workers`` ingest processes draining a backlog of ``n``."""
    group = f"drain-{uuid.uuid4().hex[:6]}"
    sl = [
        settings.model_copy(
            update={"ingest_client_id": f"{group}-{w}", "ingest_share_group": group}
        )
        for w in range(workers)
    ]
    ids = [s.ingest_client_id for s in sl]
    procs = _start_workers(sl)  # create the sessions and subscriptions
    _wait_registered(conn, ids)
    time.sleep(0.5)
    _stop_workers(procs)
    base = _stored(conn, ids)
    _publish_backlog(settings, sensors, n)
    procs = _start_workers(sl)
    try:
        while _stored(conn, ids) == base:
            time.sleep(0.005)
        t1, s1 = time.monotonic(), _stored(conn, ids)
        deadline = t1 + 600
        while (s := _stored(conn, ids)) < base + n and time.monotonic() < deadline:
            time.sleep(0.02)
        return (s - s1) / (time.monotonic() - t1)
    finally:
        _stop_workers(procs)
        _end_sessions(settings.mqtt_url_for("ingest"), ids)


def copy_ceiling(conn: psycopg.Connection, rows: int) -> float:
    """Rows/s of raw COPY (text, built beforehand) straight into ``readings``."""
    t0_us = (time.time_ns() // 1000) - 10 * 86_400_000_000
    chunk = 100_000
    bufs = []
    for c in range(0, rows, chunk):
        lines = []
        for i in range(c, min(rows, c + chunk)):
            k, j = divmod(i, N_SENSORS)
            ts = t0_us + k * 1000
            lines.append(f"copy-{j}\tpressure\t{_iso(ts)}\t{300.0 + i % 97!r}\t{k}\n")
        bufs.append("".join(lines))
    t = time.monotonic()
    for buf in bufs:
        with (
            conn.cursor() as cur,
            cur.copy("COPY readings (sensor_id, quantity, ts, value, seq) FROM STDIN") as cp,
        ):
            cp.write(buf)
        conn.commit()
    return rows / (time.monotonic() - t)


def _iso(ts_us: int) -> str:
    s, us = divmod(ts_us, 1_000_000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s)) + f".{us:06d}+00"


def ingest_sustained(
    settings: Settings, sensors: list[str], seconds: float, conn: psycopg.Connection, senml: bool
) -> tuple[float, int]:
    """Readings/s stored by one worker while 2 publisher processes send batches of 100."""
    s = settings.model_copy(
        update={
            "ingest_client_id": f"sus-{uuid.uuid4().hex[:6]}",
            "ingest_share_group": f"sus-{uuid.uuid4().hex[:6]}",
        }
    )
    procs = _start_workers([s])
    _wait_registered(conn, [s.ingest_client_id])
    t0_ms = time.time_ns() // 1_000_000 - (25 if not senml else 15) * 86_400_000
    half = sensors[: len(sensors) // 2], sensors[len(sensors) // 2 :]
    ctx = mp.get_context("spawn")
    pubs = [
        ctx.Process(
            target=_publish_batches,
            args=(s.mqtt_url_for("sim"), half[i], 100, seconds + 5, t0_ms, senml),
        )
        for i in range(2)
    ]
    for p in pubs:
        p.start()
    try:
        time.sleep(5)  # warm-up
        a = _stored(conn, [s.ingest_client_id])
        t = time.monotonic()
        time.sleep(seconds)
        b = _stored(conn, [s.ingest_client_id])
        rate = (b - a) / (time.monotonic() - t)
    finally:
        for p in pubs:
            p.join()  # a publisher that timed out under load only shortens the offered load
        _stop_workers(procs)
        _end_sessions(s.mqtt_url_for("ingest"), [s.ingest_client_id])
    return rate, b


def latency(
    settings: Settings, sensors: list[str], rate: float, seconds: float
) -> tuple[float, float, float]:
    """p50, p99 [ms] of publish-to-commit, and the achieved rate, with an in-process worker."""
    from ingestion.classify import Decoded
    from ingestion.service import Ingestor

    s = settings.model_copy(
        update={
            "ingest_client_id": f"lat-{uuid.uuid4().hex[:6]}",
            "ingest_share_group": f"lat-{uuid.uuid4().hex[:6]}",
        }
    )
    ing = Ingestor(s)
    lat_ms: list[float] = []
    lock = threading.Lock()

    def on_commit(items, committed_ns: int) -> None:
        vals = [
            committed_ns / 1e6 - it.outcome.readings[0].ts_us / 1000
            for it in items
            if isinstance(it.outcome, Decoded)
        ]
        with lock:
            lat_ms.extend(vals)

    ing.on_commit = on_commit
    ing.start()
    try:
        t = time.monotonic()
        _run_procs(_publish_paced, [(s.mqtt_url_for("sim"), sensors, rate, seconds)])
        deadline = time.monotonic() + 30
        while len(lat_ms) < int(rate * seconds) and time.monotonic() < deadline:
            time.sleep(0.05)
        achieved = len(lat_ms) / (time.monotonic() - t)
    finally:
        ing.stop(end_session=True)
    q = statistics.quantiles(lat_ms, n=100)
    return q[49], q[98], achieved


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=60.0, help="sustained batched phase [s]")
    ap.add_argument("--senml-duration", type=float, default=20.0, help="sustained SenML phase [s]")
    ap.add_argument("--backlog", type=int, default=100_000, help="single-reading messages to drain")
    ap.add_argument("--copy-rows", type=int, default=2_000_000)
    ap.add_argument("--rate", type=float, default=10_000.0, help="latency phase [messages/s]")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--stack-dir", type=Path, default=ROOT / "var" / "bench-stack")
    ap.add_argument("--keep-stack", action="store_true")
    ap.add_argument(
        "--only",
        default="drain,copy,senml,latency",
        help="phases: drain (1-3), copy (4: raw COPY and batched), senml (5), latency (6)",
    )
    args = ap.parse_args()

    print("machine:")
    for k, v in machine().items():
        print(f"  {k}: {v}")
    # a fresh broker store: sessions left by an interrupted run would queue this run's messages
    (args.stack_dir / "mosquitto" / "mosquitto.db").unlink(missing_ok=True)
    stack = LocalStack(args.stack_dir)
    stack.start()
    dbname = f"bench_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    db_url = stack.admin_database_url(dbname)
    try:
        with psycopg.connect(db_url) as c:
            migrate(c)
            storage = c.execute("SELECT value FROM cityops_meta WHERE key='storage'").fetchone()
            pg = c.execute("SHOW server_version").fetchone()
        print(f"  postgresql: {pg[0] if pg else '?'} (storage: {storage[0] if storage else '?'})")
        settings = Settings(
            database_url=db_url,
            mqtt_url=stack.mqtt_url("cityops-admin"),
            ingest_mqtt_url=stack.mqtt_url("cityops-ingest"),
            sim_mqtt_url=stack.mqtt_url("cityops-sim"),
        )
        sensors = [f"bench-{i:04d}" for i in range(N_SENSORS)]
        with (
            psycopg.connect(db_url, autocommit=True) as c,
            c.cursor() as cur,
            cur.copy("COPY sensors (sensor_id, utility, sensor_type, name, geom) FROM STDIN") as cp,
        ):
            for sid in sensors:
                cp.write_row((sid, "water", "water_pressure", sid, "SRID=4326;POINT(104.06 30.66)"))
        conn = psycopg.connect(db_url, autocommit=True)
        only = set(args.only.split(","))
        copy_rate = 0.0
        if "drain" in only:
            print(f"\n1. bare paho subscriber draining {args.backlog} queued messages", flush=True)
            bare = bare_subscriber_ceiling(stack, settings, sensors, args.backlog)
            print(f"   {bare:,.0f} messages/s", flush=True)
            print("\n2. cityops ingest (1 worker), same backlog, single-reading messages")
            one = ingest_drain(settings, sensors, args.backlog, 1, conn)
            print(f"   {one:,.0f} readings/s = {one / bare:.2f} x bare subscriber (target >= 0.8)")
            print("\n3. two cityops ingest workers on one shared subscription, same backlog")
            two = ingest_drain(settings, sensors, args.backlog, 2, conn)
            print(f"   {two:,.0f} readings/s = {two / one:.2f} x one worker (target >= 1.6)")
        if "copy" in only:
            print(f"\n4. raw COPY of {args.copy_rows} rows into readings", flush=True)
            with psycopg.connect(db_url) as c:
                copy_rate = copy_ceiling(c, args.copy_rows)
            print(f"   {copy_rate:,.0f} rows/s", flush=True)
            print(f"   cityops ingest, batched messages of 100 readings, {args.duration:.0f} s")
            batched, _ = ingest_sustained(settings, sensors, args.duration, conn, senml=False)
            print(
                f"   {batched:,.0f} readings/s = {batched / copy_rate:.2f} x raw COPY"
                " (targets >= 0.6 and >= 150,000/s)",
                flush=True,
            )
        if "senml" in only:
            print(f"\n5. SenML packs of 100 readings, sustained {args.senml_duration:.0f} s")
            senml, _ = ingest_sustained(settings, sensors, args.senml_duration, conn, senml=True)
            ratio = f" = {senml / copy_rate:.2f} x raw COPY" if copy_rate else ""
            print(f"   {senml:,.0f} readings/s{ratio}", flush=True)
        if "latency" in only:
            print(
                f"\n6. publish-to-commit latency at {args.rate:,.0f} messages/s"
                f" for {args.latency_seconds:.0f} s",
                flush=True,
            )
            p50, p99, achieved = latency(settings, sensors, args.rate, args.latency_seconds)
            print(
                f"   p50 {p50:.1f} ms, p99 {p99:.1f} ms at {achieved:,.0f} readings/s"
                " (target p99 < 50 ms at 10,000/s) [ms resolution: the payload's timestamp]",
                flush=True,
            )
        conn.close()
    finally:
        with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        if not args.keep_stack:
            stack.stop()


if __name__ == "__main__":
    main()
