"""Cost of the reused-sequence-number check (decision 0015) against the write it guards.

    .venv/bin/python benchmarks/seq_reuse_bench.py [--paths timescaledb,plain] [--batches 200]

On a private PostgreSQL (its own stack under ``var/bench-stack-seq``), one database per storage
path, the writer's own functions on one connection, as a writer thread calls them: for each
batch ``store.read_seq_conflicts`` (the check, in the batch's transaction), then
``store.write_batch`` (COPY and COMMIT) and ``store.write_followup``. Three loads:

* ``batched``: 5,000 readings a batch, 50 sensors x 100 consecutive readings (gateways);
* ``singles``: 500 readings a batch from 500 sensors (single-reading messages);
* ``replayed``: the ``singles`` batches sent again (a redelivery after a crash: every row is a
  candidate, looked up in ``readings``), 1 in 10 with an altered value (quarantined).

Prints per load the median and p90 milliseconds per batch of the check and of the write, and the
check's share. No broker: the check's cost is in the database round trips and the Python loop.
Not a test: numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from benchmarks.machine import describe_machine  # noqa: E402
from cityops.shell.database import prepare_database  # noqa: E402
from cityops.shell.stack import LocalStack  # noqa: E402
from ingestion.classify import Row  # noqa: E402
from ingestion.store import (  # noqa: E402
    IngestConnection,
    read_seq_conflicts,
    write_batch,
    write_followup,
)

S = 1_000_000  # one second [us]


def _batches(kind: str, n: int, t0: int) -> list[list[Row]]:
    out: list[list[Row]] = []
    for b in range(n):
        if kind == "batched":
            rows = [
                (f"g-{s:03d}", "pressure", t0 + (b * 100 + k) * S, 300.0 + k % 7, b * 100 + k, 0)
                for s in range(50)
                for k in range(100)
            ]
        else:
            rows = [(f"s-{s:03d}", "pressure", t0 + b * S, 300.0 + s % 7, b, 0) for s in range(500)]
        out.append(rows)
    return out


def _run(ic: IngestConnection, batches: list[list[Row]]) -> tuple[list[float], list[float], int]:
    check_ms, write_ms, flagged = [], [], 0
    for rows in batches:
        t = time.perf_counter()
        conflicts = read_seq_conflicts(ic, rows)
        t1 = time.perf_counter()
        kept = [r for i, r in enumerate(rows) if i not in conflicts]
        result = write_batch(ic, kept, [r[2] for r in kept], [])
        write_followup(ic, result)
        t2 = time.perf_counter()
        check_ms.append((t1 - t) * 1000)
        write_ms.append((t2 - t1) * 1000)
        flagged += len(conflicts)
    return check_ms, write_ms, flagged


def _fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.2f} / {statistics.quantiles(xs, n=10)[-1]:7.2f}"


def run_path(stack: LocalStack, path: str, batches: int) -> None:
    dbname = f"bench_seq_{path}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{dbname}"')
    url = stack.admin_database_url(dbname)
    try:
        with psycopg.connect(url) as c:
            prepare_database(c, use_timescale=path == "timescaledb")
        with psycopg.connect(url, autocommit=True) as c:
            for prefix, n in (("g", 50), ("s", 500)):
                for s in range(n):
                    c.execute(
                        "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom)"
                        " VALUES (%s, 'water', 'water_pressure', %s,"
                        " 'SRID=4326;POINT(104.06 30.66)')",
                        (f"{prefix}-{s:03d}", f"{prefix}-{s:03d}"),
                    )
        ic = IngestConnection(url, "bench-seq")
        t0 = (time.time_ns() // 1000) - 6 * 3600 * S
        singles = _batches("singles", batches, t0)
        replayed = [
            [(r[0], r[1], r[2], r[3] + (i % 10 == 0), r[4], r[5]) for i, r in enumerate(rows)]
            for rows in singles
        ]
        loads = {
            "batched": _batches("batched", batches // 4, t0),
            "singles": singles,
            "replayed": replayed,
        }
        for name, data in loads.items():
            check, write, flagged = _run(ic, data)
            per = len(data[0])
            share = sum(check) / (sum(check) + sum(write))
            print(
                f"  [{path}] {name:8s} {per:5d} rows/batch  check {_fmt(check)} ms"
                f"  write {_fmt(write)} ms  (median / p90)  check share {share:5.1%}"
                f"  flagged {flagged}",
                flush=True,
            )
        ic.close()
    finally:
        with psycopg.connect(stack.admin_database_url(), autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--paths", default="timescaledb,plain")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--stack-dir", type=Path, default=ROOT / "var" / "bench-stack-seq")
    args = ap.parse_args()
    for k, v in describe_machine().items():
        print(f"  {k}: {v}")
    stack = LocalStack(args.stack_dir)
    stack.start()
    try:
        for path in args.paths.split(","):
            run_path(stack, path, args.batches)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
