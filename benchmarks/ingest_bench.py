"""Ingestion benchmark: a bounded load on loopback against a private PostgreSQL and Mosquitto.

    .venv/bin/python benchmarks/ingest_bench.py [--paths timescaledb,plain] [--duration 60]

Runs every phase on each storage path (a database of its own: TimescaleDB, then plain
PostgreSQL, on the same server) and prints, with the machine's details, one table with both
paths side by side, each figure next to its ceiling and target:

1. the ceiling of a bare paho-mqtt subscriber (QoS 1, shared subscription, counts only) draining
   a queued backlog of single-reading messages;
2. `cityops ingest` (a real subprocess) draining the same backlog: every message decoded,
   validated, stored and acknowledged after commit; ratio to (1);
3. two `cityops ingest` workers on one shared subscription, same backlog; ratio to (2);
4. the ceiling of raw binary COPY into `readings` (prebuilt buffers, 100,000 rows a statement);
   one `cityops ingest` draining a backlog of ``--batched-readings`` in batched messages (100
   readings each; at least 60 s of work), with the broker and the database alone on the machine
   as for the ceiling; ratio. Then live: two publisher processes on the same 2 cores offer
   ``--offered`` readings/s for ``--duration`` s, and what is stored and offered is printed;
5. the backlog drain for SenML packs (``--senml-readings``);
6. publish-to-commit latency p50/p99 at ``--rate`` readings/s, as single-reading messages and
   as messages of 10 (two publisher processes);
7. storage (``--storage-days`` of 1-minute readings of ``--storage-sensors`` sensors, a
   realistic pressure signal at 0.01 kPa resolution): bytes per reading as stored, and on
   TimescaleDB after compression.

Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from benchmarks.machine import describe_machine  # noqa: E402
from cityops.kernel.mqtt import Publisher, end_session  # noqa: E402
from cityops.kernel.settings import Settings, parse_mqtt_url  # noqa: E402
from cityops.shell.database import prepare_database  # noqa: E402
from cityops.shell.stack import LocalStack  # noqa: E402
from ingestion.classify import Row  # noqa: E402
from ingestion.store import COPY_DIRECT, build_copy_binary  # noqa: E402
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


def _publish_paced(
    url: str, sensors: list[str], rate: float, seconds: float, per_msg: int, part: int
) -> None:
    """``rate`` readings per second in messages of ``per_msg``; a message's newest reading is
    stamped with its publish time [ms] (older ones 1 ms apart before it)."""
    with _Publisher(url, f"bench-lat-{uuid.uuid4().hex[:8]}", max_inflight=1000) as pub:
        topics = [telemetry_topic("water", s) for s in sensors]
        msg_rate = rate / per_msg
        n = int(msg_rate * seconds)
        t_start = time.monotonic()
        last_ms: dict[int, int] = {}
        for i in range(n):
            due = t_start + i / msg_rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            j = i % len(sensors)
            ms = time.time_ns() // 1_000_000
            if last_ms.get(j, 0) + per_msg > ms:  # one reading per sensor and millisecond
                ms = last_ms[j] + per_msg
            last_ms[j] = ms
            seq = (part << 40) + i * per_msg
            if per_msg == 1:
                body = encode_reading(ms, seq, {"pressure": 300.0})
            else:
                body = encode_batch(
                    [(ms - per_msg + 1 + k, seq + k, {"pressure": 300.0}) for k in range(per_msg)]
                )
            pub.publish(topics[j], body)


def _publish_batches(
    url: str,
    sensors: list[str],
    per_msg: int,
    seconds: float,
    t0_ms: int,
    senml: bool,
    count: int | None = None,
    msgs_per_s: float = 0.0,
) -> None:
    """Gateway batches (or SenML packs) of ``per_msg`` readings for ``seconds`` or, given
    ``count``, that many messages; as fast as accepted, or ``msgs_per_s`` a second."""
    with _Publisher(url, f"bench-batch-{uuid.uuid4().hex[:8]}", max_inflight=200) as pub:
        topics = [telemetry_topic("water", s) for s in sensors]
        offset = [0] * len(sensors)
        start = time.monotonic()
        deadline = start + seconds
        i = 0
        while (time.monotonic() < deadline) if count is None else (i < count):
            if msgs_per_s and (delay := start + i / msgs_per_s - time.monotonic()) > 0:
                time.sleep(delay)
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
    # recent readings (today's chunk, as in a running city), an hour apart per backlog
    t0_ms = time.time_ns() // 1_000_000 - 12 * 3_600_000 + _publish_backlog.calls * 3_600_000
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
    for cid in client_ids:
        end_session(url, cid)


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
    """Rows/s of raw binary COPY (built beforehand, 100,000 rows a statement and a commit)
    straight into ``readings``: what the database alone can take."""
    t0_us = (time.time_ns() // 1000) - 6 * 3_600_000_000
    chunk = 100_000
    bufs = []
    for c in range(0, rows, chunk):
        part: list[Row] = []
        for i in range(c, min(rows, c + chunk)):
            k, j = divmod(i, N_SENSORS)
            part.append((f"copy-{j}", "pressure", t0_us + k * 1000, 300.0 + i % 97, k, 0))
        bufs.append(build_copy_binary(part, [t0_us] * len(part)))
    t = time.monotonic()
    for buf in bufs:
        with conn.cursor() as cur, cur.copy(COPY_DIRECT) as cp:
            cp.write(buf)
        conn.commit()
    return rows / (time.monotonic() - t)


def ingest_live(
    settings: Settings, sensors: list[str], seconds: float, offered: float, conn: psycopg.Connection
) -> tuple[float, float]:
    """(stored readings/s, offered readings/s achieved) of one worker while two publisher
    processes on the same machine offer ``offered`` readings/s in batches of 100: the load
    generator takes its share of the 2 cores here, unlike in a city."""
    s = settings.model_copy(
        update={
            "ingest_client_id": f"sus-{uuid.uuid4().hex[:6]}",
            "ingest_share_group": f"sus-{uuid.uuid4().hex[:6]}",
        }
    )
    ids = [s.ingest_client_id]
    procs = _start_workers([s])
    _wait_registered(conn, ids)
    t0_ms = time.time_ns() // 1_000_000 - 4 * 3_600_000
    half = sensors[: len(sensors) // 2], sensors[len(sensors) // 2 :]
    ctx = mp.get_context("spawn")
    warmup = 5.0
    pubs = [
        ctx.Process(
            target=_publish_batches,
            args=(
                s.mqtt_url_for("sim"),
                half[i],
                100,
                seconds + warmup,
                t0_ms + i,
                False,
                None,
                offered / 200,
            ),
        )
        for i in range(2)
    ]
    base = _stored(conn, ids)
    t_pub = time.monotonic()
    for p in pubs:
        p.start()
    try:
        time.sleep(warmup)
        a = _stored(conn, ids)
        t = time.monotonic()
        time.sleep(seconds)
        rate = (_stored(conn, ids) - a) / (time.monotonic() - t)
        for p in pubs:
            p.join()  # a publisher that fell behind only lowers the offered load
        publishing_s = time.monotonic() - t_pub
        last = -1
        while (n := _stored(conn, ids)) != last:  # what is still queued, then all is stored
            last = n
            time.sleep(1.0)
        sent = (n - base) / publishing_s
    finally:
        _stop_workers(procs)
        _end_sessions(s.mqtt_url_for("ingest"), ids)
    return rate, sent


def ingest_batched_backlog(
    settings: Settings, sensors: list[str], readings: int, conn: psycopg.Connection, senml: bool
) -> tuple[float, float]:
    """(readings/s, seconds) of one worker draining a backlog of batched messages (100 readings
    each) published beforehand: the worker, the broker and the database alone on the machine,
    as for the raw COPY ceiling."""
    s = settings.model_copy(
        update={
            "ingest_client_id": f"bl-{uuid.uuid4().hex[:6]}",
            "ingest_share_group": f"bl-{uuid.uuid4().hex[:6]}",
        }
    )
    ids = [s.ingest_client_id]
    procs = _start_workers([s])  # the session and subscription that queue the backlog
    _wait_registered(conn, ids)
    time.sleep(0.5)
    _stop_workers(procs)
    base = _stored(conn, ids)
    messages = readings // 100
    t0_ms = time.time_ns() // 1_000_000 - (2 if not senml else 1) * 3_600_000
    halves = [sensors[: len(sensors) // 2], sensors[len(sensors) // 2 :]]
    t = time.monotonic()
    _run_procs(
        _publish_batches,
        [
            (s.mqtt_url_for("sim"), halves[k], 100, 0.0, t0_ms + k, senml, messages // 2)
            for k in range(2)
        ],
    )
    print(f"  (backlog of {messages} messages published in {time.monotonic() - t:.1f} s)")
    procs = _start_workers([s])
    try:
        while _stored(conn, ids) == base:
            time.sleep(0.005)
        t1, s1 = time.monotonic(), _stored(conn, ids)
        deadline = t1 + 900
        while (n := _stored(conn, ids)) < base + 100 * (messages // 2) * 2 and (
            time.monotonic() < deadline
        ):
            time.sleep(0.02)
        elapsed = time.monotonic() - t1
        return (n - s1) / elapsed, elapsed
    finally:
        _stop_workers(procs)
        _end_sessions(s.mqtt_url_for("ingest"), ids)


def latency(
    settings: Settings, sensors: list[str], rate: float, seconds: float, per_msg: int
) -> tuple[float, float, float]:
    """p50, p99 [ms] of publish-to-commit, and the achieved readings/s, with an in-process
    worker and two publisher processes offering ``rate`` readings/s between them."""
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
    readings = [0]
    lock = threading.Lock()

    def on_commit(items, committed_ns: int) -> None:
        decoded = [it.outcome.readings for it in items if isinstance(it.outcome, Decoded)]
        vals = [committed_ns / 1e6 - max(r.ts_us for r in rs) / 1000 for rs in decoded]
        with lock:
            lat_ms.extend(vals)
            readings[0] += sum(len(rs) for rs in decoded)

    ing.on_commit = on_commit
    ing.start()
    halves = [sensors[: len(sensors) // 2], sensors[len(sensors) // 2 :]]
    try:
        t = time.monotonic()
        _run_procs(
            _publish_paced,
            [(s.mqtt_url_for("sim"), halves[k], rate / 2, seconds, per_msg, k) for k in range(2)],
        )
        expected = int(rate / per_msg) * seconds
        deadline = time.monotonic() + 30
        while len(lat_ms) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        achieved = readings[0] / (time.monotonic() - t)
    finally:
        ing.stop(end_session=True)
    q = statistics.quantiles(lat_ms, n=100)
    return q[49], q[98], achieved


def storage(stack: LocalStack, timescale: bool, sensors: int, days: int) -> tuple[float, float]:
    """Bytes per reading of ``sensors`` x ``days`` of 1-minute readings (a daily pressure cycle
    with noise, at 0.01 kPa, as a real gauge reports) in a database of their own: as written
    (table and indexes), and after compression (TimescaleDB; the same figure on plain)."""
    name = f"bench_storage_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    n = sensors * days * 1440
    try:
        with psycopg.connect(stack.admin_database_url(name), autocommit=True) as c:
            prepare_database(c, use_timescale=timescale)
            end = _DAY0 + timedelta(days=days)
            c.execute("SELECT cityops_ensure_partitions(%s, %s)", (_DAY0, end))
            c.execute(
                "INSERT INTO readings (sensor_id, quantity, ts, value, seq, quality, received_at)"
                " SELECT 'st-' || s, 'pressure', t, round((300 + 40 * sin(2 * pi() *"
                "   extract(epoch FROM t) / 86400) + mod(s, 17) + random() * 3)::numeric, 2),"
                "   (extract(epoch FROM t - %s::timestamptz) / 60)::bigint, 0,"
                "   t + interval '2 s'"
                " FROM generate_series(0, %s - 1) s,"
                "   generate_series(%s::timestamptz, %s::timestamptz - interval '1 minute',"
                "                   interval '1 minute') t",
                (_DAY0, sensors, _DAY0, end),
            )
            size = "hypertable_size('readings')" if timescale else _PLAIN_SIZE
            before = c.execute(f"SELECT {size}").fetchone()[0]
            if not timescale:
                return before / n, before / n
            for (chunk,) in c.execute(
                "SELECT format('%I.%I', chunk_schema, chunk_name)"
                " FROM timescaledb_information.chunks"
                " WHERE hypertable_name = 'readings' AND NOT is_compressed"
            ).fetchall():
                c.execute(
                    "SELECT compress_chunk(%s::regclass, if_not_compressed => true)", (chunk,)
                )
            after = c.execute(f"SELECT {size}").fetchone()[0]
            return before / n, after / n
    finally:
        with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_DAY0 = datetime(2026, 1, 5, tzinfo=UTC)
_PLAIN_SIZE = (
    "(SELECT sum(pg_total_relation_size(i.inhrelid)) FROM pg_inherits i"
    " WHERE i.inhparent = 'readings'::regclass)"
)


def run_path(
    args: argparse.Namespace, stack: LocalStack, path: str, only: set[str]
) -> dict[str, float]:
    """Every phase on one storage path, in a database of its own; the figures by name."""
    timescale = path == "timescaledb"
    dbname = f"bench_{path}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    db_url = stack.admin_database_url(dbname)
    r: dict[str, float] = {}
    try:
        with psycopg.connect(db_url) as c:
            prepare_database(c, use_timescale=timescale)
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
        say = lambda m: print(f"  [{path}] {m}", flush=True)  # noqa: E731
        if "drain" in only:
            r["bare"] = bare_subscriber_ceiling(stack, settings, sensors, args.backlog)
            say(f"1. bare subscriber {r['bare']:,.0f} msg/s")
            r["one"] = ingest_drain(settings, sensors, args.backlog, 1, conn)
            say(f"2. one worker {r['one']:,.0f} msg/s")
            r["two"] = ingest_drain(settings, sensors, args.backlog, 2, conn)
            say(f"3. two workers {r['two']:,.0f} msg/s")
        if "copy" in only or "senml" in only:
            with psycopg.connect(db_url) as c:
                r["copy"] = copy_ceiling(c, args.copy_rows)
            say(f"4. raw binary COPY {r['copy']:,.0f} rows/s")
        if "copy" in only:
            r["batched"], r["batched_s"] = ingest_batched_backlog(
                settings, sensors, args.batched_readings, conn, senml=False
            )
            say(f"4. batched {r['batched']:,.0f} readings/s for {r['batched_s']:.0f} s")
            r["live"], r["live_offered"] = ingest_live(
                settings, sensors, args.duration, args.offered, conn
            )
            say(f"4. live {r['live']:,.0f} readings/s of {r['live_offered']:,.0f} offered")
        if "senml" in only:
            r["senml"], r["senml_s"] = ingest_batched_backlog(
                settings, sensors, args.senml_readings, conn, senml=True
            )
            say(f"5. SenML {r['senml']:,.0f} readings/s for {r['senml_s']:.0f} s")
        if "latency" in only:
            for per_msg in (1, 10):
                p50, p99, got = latency(settings, sensors, args.rate, args.latency_seconds, per_msg)
                r[f"lat{per_msg}_p50"], r[f"lat{per_msg}_p99"], r[f"lat{per_msg}_rate"] = (
                    p50,
                    p99,
                    got,
                )
                say(
                    f"6. latency, {per_msg}/message: p50 {p50:.1f} p99 {p99:.1f} ms at {got:,.0f}/s"
                )
        conn.close()
        if "storage" in only:
            r["bytes"], r["bytes_compressed"] = storage(
                stack, timescale, args.storage_sensors, args.storage_days
            )
            say(f"7. {r['bytes']:.1f} B/reading, {r['bytes_compressed']:.1f} compressed")
    finally:
        with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return r


def print_table(args: argparse.Namespace, results: dict[str, dict[str, float]]) -> None:
    paths = list(results)

    def cell(path: str, fmt) -> str:
        try:
            return fmt(results[path])
        except (KeyError, ZeroDivisionError):
            return "-"

    rows = [
        (
            "1. bare paho subscriber, backlog of single readings [msg/s]",
            lambda r: f"{r['bare']:,.0f}",
            "(ceiling)",
        ),
        (
            "2. one worker, same backlog [msg/s] (ratio to 1)",
            lambda r: f"{r['one']:,.0f} ({r['one'] / r['bare']:.2f}x)",
            ">= 0.8x",
        ),
        (
            "3. two workers, shared subscription [msg/s] (ratio to 2)",
            lambda r: f"{r['two']:,.0f} ({r['two'] / r['one']:.2f}x)",
            ">= 1.6x",
        ),
        ("4. raw binary COPY into readings [rows/s]", lambda r: f"{r['copy']:,.0f}", "(ceiling)"),
        (
            "4. one worker draining batched messages of 100 [readings/s] (ratio to COPY), for",
            lambda r: (
                f"{r['batched']:,.0f} ({r['batched'] / r['copy']:.2f}x), {r['batched_s']:.0f} s"
            ),
            ">= 0.6x and >= 150,000 for 60 s",
        ),
        (
            f"4. live: {args.offered:,.0f} readings/s offered for {args.duration:.0f} s by two"
            " publishers on the same cores [readings/s stored / offered]",
            lambda r: f"{r['live']:,.0f} / {r['live_offered']:,.0f}",
            "keeps up",
        ),
        (
            "5. one worker draining SenML packs of 100 [readings/s] (ratio to COPY), for",
            lambda r: f"{r['senml']:,.0f} ({r['senml'] / r['copy']:.2f}x), {r['senml_s']:.0f} s",
            ">= 0.6x",
        ),
    ]
    for k in (1, 10):
        rows.append(
            (
                f"6. publish-to-commit, {args.rate:,.0f} readings/s offered, {k}/message:"
                " p50 / p99 [ms] at achieved [readings/s]",
                lambda r, k=k: (
                    f"{r[f'lat{k}_p50']:.0f} / {r[f'lat{k}_p99']:.0f} at {r[f'lat{k}_rate']:,.0f}"
                ),
                "p99 < 50 at 10,000",
            )
        )
    rows.append(
        (
            f"7. bytes per reading ({args.storage_sensors} sensors x {args.storage_days} days),"
            " as written / compressed (ratio)",
            lambda r: (
                f"{r['bytes']:.1f} / {r['bytes_compressed']:.1f}"
                f" ({r['bytes'] / r['bytes_compressed']:.1f}x)"
            ),
            ">= 10x smaller",
        )
    )
    print("\n| phase | " + " | ".join(paths) + " | target |")
    print("|---|" + "---|" * len(paths) + "---|")
    for name, fmt, target in rows:
        print(f"| {name} | " + " | ".join(cell(p, fmt) for p in paths) + f" | {target} |")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--paths", default="timescaledb,plain", help="storage paths, in order")
    ap.add_argument(
        "--batched-readings", type=int, default=14_000_000, help="backlog of phase 4 (readings)"
    )
    ap.add_argument("--senml-readings", type=int, default=4_000_000, help="backlog of phase 5")
    ap.add_argument("--duration", type=float, default=60.0, help="live phase 4 [s]")
    ap.add_argument("--offered", type=float, default=150_000.0, help="live phase 4 [readings/s]")
    ap.add_argument("--backlog", type=int, default=100_000, help="single-reading messages to drain")
    ap.add_argument("--copy-rows", type=int, default=2_000_000)
    ap.add_argument("--rate", type=float, default=10_000.0, help="latency phase [readings/s]")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--storage-sensors", type=int, default=1000)
    ap.add_argument("--storage-days", type=int, default=7)
    ap.add_argument("--stack-dir", type=Path, default=ROOT / "var" / "bench-stack")
    ap.add_argument("--keep-stack", action="store_true")
    ap.add_argument(
        "--only",
        default="drain,copy,senml,latency,storage",
        help="phases: drain (1-3), copy (4), senml (5), latency (6), storage (7)",
    )
    args = ap.parse_args()

    print("machine:")
    for k, v in describe_machine().items():
        print(f"  {k}: {v}")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    print(f"  cityops commit: {commit or '?'}")
    # a fresh broker store: sessions left by an interrupted run would queue this run's messages
    (args.stack_dir / "mosquitto" / "mosquitto.db").unlink(missing_ok=True)
    stack = LocalStack(args.stack_dir)
    stack.start()
    try:
        with psycopg.connect(stack.admin_database_url()) as c:
            pg = c.execute("SHOW server_version").fetchone()
            ts = c.execute(
                "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
        print(f"  postgresql: {pg[0] if pg else '?'}, timescaledb: {ts[0] if ts else 'absent'}")
        paths = [p for p in args.paths.split(",") if p != "timescaledb" or ts]
        only = set(args.only.split(","))
        results = {path: run_path(args, stack, path, only) for path in paths}
        print_table(args, results)
    finally:
        if not args.keep_stack:
            stack.stop()


if __name__ == "__main__":
    main()
