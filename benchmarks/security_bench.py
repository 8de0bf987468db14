"""Security costs: prints figures beside their ceilings, asserts nothing (CONVENTIONS.md 14).

    .venv/bin/python benchmarks/security_bench.py [-n 300]

- SM3-chained audit append, one entry per transaction (as staff actions, logins and exports
  come) against the plain INSERT, on a private stack's database (var/bench-stack-security);
- SM2 signatures and verifications per second (one core), SM4-GCM per secret;
- the API door: an API token checked against the database per request;
- the broker's device guard: QoS 1 publishes per second through a device identity (guard and
  dynamic security on the path) against the same through a service identity (guard skipped).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg.types.json import Jsonb  # noqa: E402

from benchmarks.machine import machine_line  # noqa: E402
from cityops.kernel import crypto  # noqa: E402
from cityops.shell.database import prepare_database  # noqa: E402
from cityops.shell.stack import LocalStack  # noqa: E402


def line(name: str, value: float, unit: str, ceiling: str) -> None:
    print(f"  {name:<52} {value:>10.2f} {unit:<12} ceiling: {ceiling}")


def per_call(fn, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def bench_crypto(n: int) -> None:
    print("national cryptography (one core):")
    key = crypto.generate_sm2_key()
    body = b"x" * 2048
    sig = crypto.sm2_sign(key, body)
    pub = crypto.load_sm2_public_pem(crypto.sm2_public_pem(key))
    line(
        "SM2 signatures of a 2 KB body",
        1 / per_call(lambda: crypto.sm2_sign(key, body), n),
        "/s",
        ">= 500/s (a webhook each)",
    )
    line(
        "SM2 verifications",
        1 / per_call(lambda: crypto.sm2_verify(pub, body, sig), n),
        "/s",
        ">= 500/s",
    )
    k4 = b"k" * 16
    blob = crypto.sm4_gcm_encrypt(k4, b"smtp://user:secret@mail.example.gov.cn")
    line(
        "SM4-GCM encrypt one secret",
        per_call(lambda: crypto.sm4_gcm_encrypt(k4, b"secret"), n) * 1e6,
        "us",
        "< 1,000 us",
    )
    line(
        "SM4-GCM decrypt one secret",
        per_call(lambda: crypto.sm4_gcm_decrypt(k4, blob), n) * 1e6,
        "us",
        "< 1,000 us",
    )
    big = b"y" * 1_000_000
    line(
        "SM3 of a 1 MB export", per_call(lambda: crypto.sm3_digest(big), 20) * 1e3, "ms", "< 50 ms"
    )


def bench_audit(url: str, n: int) -> None:
    print("SM3-chained audit, one entry per transaction:")
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:

        def chained() -> None:
            crypto.append_chained(
                conn, crypto.SECURITY_AUDIT_CHAIN, [(now, "bench", "export", "t", Jsonb({}))]
            )

        def plain() -> None:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO security_audit (at, actor, action, target, detail, hash_alg,"
                    " prev_hash, hash) VALUES (%s, 'bench', 'export', 't', '{}', 'sm3', '', '')",
                    (now,),
                )

        line("chained append", per_call(chained, n) * 1e3, "ms/entry", "< 20 ms (a staff action)")
        line("plain INSERT (no chain)", per_call(plain, n) * 1e3, "ms/entry", "(reference)")


def bench_token(url: str, n: int) -> None:
    from access.accounts import write_user
    from access.http import authenticate
    from access.tokens import write_token

    with psycopg.connect(url, autocommit=True) as conn:
        write_user(conn, "bench-planner", "Bench-planner-1234", "planner")
        token, _ = write_token(conn, "bench-planner", "bench", actor="bench", now=datetime.now(UTC))
        headers = {"Authorization": f"Bearer {token}"}
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            authenticate(conn, headers, {}, datetime.now(UTC))
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print("the API door:")
    line("token check p50", statistics.median(times), "ms", "< 5 ms per request")
    line("token check p95", times[int(0.95 * len(times))], "ms", "< 5 ms per request")


def bench_guard(stack: LocalStack, n: int) -> None:
    from cityops.kernel.mqtt import Publisher
    from sensors.topics import telemetry_topic
    from simulators.devices import enrol_devices, make_credentials

    sid = f"bench-{uuid.uuid4().hex[:6]}"
    creds = make_credentials([sid])
    stack.device_max_rate = 10**6  # measure the path, not the flood limit
    stack.stop_mosquitto()
    stack.start_mosquitto()
    enrol_devices(stack.mqtt_url(), creds)
    device_url = f"mqtt://{sid}:{creds[sid]}@127.0.0.1:{stack.state.mqtt_port}"
    print("the broker's device guard (QoS 1, 200 in flight, nobody subscribed):")
    for name, url in (
        ("service identity (guard skips)", stack.mqtt_url("cityops-sim")),
        ("device identity (guard + role)", device_url),
    ):
        with Publisher(url, f"bench-{uuid.uuid4().hex[:6]}") as pub:
            t0 = time.perf_counter()
            for _ in range(n):
                pub.publish(telemetry_topic("water", sid), b'{"v":1}')
            pub.flush()
            rate = n / (time.perf_counter() - t0)
        line(name, rate, "msg/s", ">= 1,000/s per device (sensors send 1 per few s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=300)
    args = ap.parse_args()
    print(f"[{machine_line()}]")
    bench_crypto(args.n)
    stack = LocalStack(ROOT / "var" / "bench-stack-security")
    stack.start()
    try:
        url = stack.admin_database_url()
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS security_bench WITH (FORCE)")
            c.execute("CREATE DATABASE security_bench")
        url = stack.admin_database_url("security_bench")
        with psycopg.connect(url, autocommit=True) as conn:
            prepare_database(conn)
        bench_audit(url, args.n)
        bench_token(url, args.n)
        bench_guard(stack, 20 * args.n)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
