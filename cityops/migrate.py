"""Versioned, idempotent schema migrations (``cityops migrate``).

Files in ``cityops/migrations`` are named ``NNNN_name.sql`` or, where the storage paths differ,
``NNNN_name.plain.sql`` and ``NNNN_name.timescale.sql``: the TimescaleDB variant is applied where
the extension is available, the plain one otherwise. Each version runs once, in its own
transaction, under an advisory lock so that concurrent ``migrate`` calls do not race.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from cityops.db import has_timescaledb
from sensors.catalogue import DEFAULT_DETECTORS, SENSOR_TYPES

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_LOCK_KEY = 0x0C17_0905


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path


def plan_migrations(timescale: bool, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations to consider, one per version, in order (pure: reads file names only)."""
    chosen: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME_RE.match(path.name)
        if not m:
            raise ValueError(f"badly named migration {path.name}")
        version, name, variant = int(m.group(1)), m.group(2), m.group(3)
        if variant == ("plain" if timescale else "timescale"):
            continue
        if version in chosen:
            raise ValueError(f"two migrations for version {version}")
        chosen[version] = Migration(version, name, path)
    return [chosen[v] for v in sorted(chosen)]


def migrate(conn: psycopg.Connection, *, use_timescale: bool | None = None) -> list[str]:
    """Apply what is missing; returns the names applied. Safe to run again and concurrently."""
    applied_now: list[str] = []
    if not conn.autocommit:
        conn.commit()
        conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        storage = storage_mode(conn) if 1 in done else None
        if storage in ("plain", "timescaledb"):
            timescale = storage == "timescaledb"  # never switch paths on an existing database
        elif use_timescale is None:
            timescale = has_timescaledb(conn)
        else:
            timescale = use_timescale
        for mig in plan_migrations(timescale):
            if mig.version in done:
                continue
            with conn.transaction():
                conn.execute(mig.path.read_text(encoding="utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (mig.version, mig.name),
                )
            applied_now.append(f"{mig.version:04d}_{mig.name}")
        seed_sensor_types(conn)
        ensure_partitions(conn, past=timedelta(days=31), future=timedelta(days=2))
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def seed_sensor_types(conn: psycopg.Connection) -> None:
    """Insert the default sensor types and their default streaming detectors; limits and
    detector settings an operator already changed are kept."""
    with conn.transaction():
        for t in SENSOR_TYPES.values():
            conn.execute(
                "INSERT INTO sensor_types (type_id, utility, name_zh, name_en, expected_interval_s)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (type_id) DO NOTHING",
                (t.type_id, t.utility.value, t.name_zh, t.name_en, t.expected_interval_s),
            )
            for lim in t.limits:
                conn.execute(
                    "INSERT INTO sensor_type_quantities"
                    " (type_id, quantity, alarm_low, alarm_high, deadband)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (t.type_id, lim.quantity, lim.alarm_low, lim.alarm_high, lim.deadband),
                )
        # the streaming detectors a new installation starts with (decision 0025); a row the
        # operators changed or disabled (enabled = false) is kept as it is
        if conn.execute("SELECT to_regclass('alert_detector_settings')").fetchone() != (None,):
            for d in DEFAULT_DETECTORS:
                conn.execute(
                    "INSERT INTO alert_detector_settings"
                    " (type_id, quantity, detector, severity, params)"
                    " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                    (d.type_id, d.quantity, d.detector, d.severity, json.dumps(dict(d.params))),
                )


def ensure_partitions(
    conn: psycopg.Connection, *, past: timedelta, future: timedelta, now: datetime | None = None
) -> int:
    now = now or datetime.now(UTC)
    row = conn.execute(
        "SELECT cityops_ensure_partitions(%s, %s)", (now - past, now + future)
    ).fetchone()
    if not conn.autocommit:
        conn.commit()
    return int(row[0]) if row else 0


def storage_mode(conn: psycopg.Connection) -> str:
    row = conn.execute("SELECT value FROM cityops_meta WHERE key = 'storage'").fetchone()
    return row[0] if row else "unmigrated"
