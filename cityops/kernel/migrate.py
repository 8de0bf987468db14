"""Versioned, idempotent schema migrations (``cityops migrate``).

Files in ``cityops/migrations`` are named ``NNNN_name.sql`` or, where the storage paths differ,
``NNNN_name.plain.sql`` and ``NNNN_name.timescale.sql``: the TimescaleDB variant is applied where
the extension is available, the plain one otherwise. Each version runs once, in its own
transaction, under an advisory lock so that concurrent ``migrate`` calls do not race.

Versions are applied in order and only in order: a database that lacks a version older than one
it has (a migration added out of order, or a restore gone wrong), or that has a version this
release does not know (made by a newer release), is refused with a message that says which. New
migrations therefore take the next number after the highest one.

The TimescaleDB extension's version is recorded in ``cityops_meta`` (``timescaledb_version``) and
updated to the installed release first when the server has a newer one (``ALTER EXTENSION
timescaledb UPDATE`` must be the first statement of its session: it gets one of its own).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from cityops.kernel.db import has_timescaledb

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_NAME_RE = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql$")
_LOCK_KEY = 0x0C17_0905


class MigrationOrderError(RuntimeError):
    """The database's applied versions do not fit this release's migrations."""


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


def check_order(planned: list[Migration], done: set[int]) -> list[Migration]:
    """The migrations still to apply, or ``MigrationOrderError`` when they would not run in
    version order (a gap below an applied version), or the database is ahead of this release."""
    known = {m.version for m in planned}
    unknown = sorted(done - known)
    if unknown:
        raise MigrationOrderError(
            f"this database has migration {unknown[-1]:04d}, which this release of cityops does"
            " not know: it was made by a newer release; run that release (or restore a backup)"
        )
    todo = [m for m in planned if m.version not in done]
    if todo and done and todo[0].version < max(done):
        first = todo[0]
        raise MigrationOrderError(
            f"migration {first.version:04d}_{first.name} is missing from this database although"
            f" the later {max(done):04d} is applied; applying it now would run it out of order."
            " Restore the database from a backup made with this release, or apply it by hand"
            " after checking that it fits"
        )
    return todo


def migrate(
    conn: psycopg.Connection,
    *,
    use_timescale: bool | None = None,
    directory: Path = MIGRATIONS_DIR,
    seeds: Sequence[Callable[[psycopg.Connection], None]] = (),
) -> list[str]:
    """Apply what is missing; returns the names applied. Safe to run again and concurrently.
    ``directory`` holds the migration set (another release's, in the upgrade tests); ``seeds``
    write each part's default rows, each in a transaction, under the same lock (the shell's
    ``prepare_database`` passes them: the kernel knows no part)."""
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
        if timescale:
            update_timescaledb(conn)
        for mig in check_order(plan_migrations(timescale, directory), done):
            with conn.transaction():
                conn.execute(mig.path.read_text(encoding="utf-8"))
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (mig.version, mig.name),
                )
            applied_now.append(f"{mig.version:04d}_{mig.name}")
        for seed in seeds:
            with conn.transaction():
                seed(conn)
        ensure_partitions(conn, past=timedelta(days=31), future=timedelta(days=2))
        if timescale:
            record_timescaledb_version(conn)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def timescaledb_versions(conn: psycopg.Connection) -> tuple[str | None, str | None]:
    """(the version the database has created, the version the server has installed)."""
    row = conn.execute(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'),"
        " (SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb')"
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def update_timescaledb(conn: psycopg.Connection) -> str | None:
    """Bring the database's TimescaleDB to the server's release when they differ (after the
    server got a newer build); returns the version now in use."""
    created, installed = timescaledb_versions(conn)
    if created is None or installed is None or created == installed:
        return created
    # must be the first statement of a session that has not loaded the old version
    dsn = make_conninfo(conn.info.dsn, password=conn.info.password)
    with psycopg.connect(dsn, autocommit=True) as fresh:
        fresh.execute("ALTER EXTENSION timescaledb UPDATE")
    return timescaledb_versions(conn)[0]


def record_timescaledb_version(conn: psycopg.Connection) -> None:
    created, _ = timescaledb_versions(conn)
    if created is not None:
        conn.execute(
            "INSERT INTO cityops_meta (key, value) VALUES ('timescaledb_version', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (created,),
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
