"""A database ready for cityops: the schema migrated and each part's default rows seeded."""

from __future__ import annotations

from pathlib import Path

import psycopg

from alerts.api import write_default_detectors
from cityops.kernel.migrate import MIGRATIONS_DIR, migrate
from gis.postgis import write_sensor_types

# each part's defaults, written under the migration lock after the schema is up to date
SEEDS = (write_sensor_types, write_default_detectors)


def prepare_database(
    conn: psycopg.Connection, *, use_timescale: bool | None = None, directory: Path = MIGRATIONS_DIR
) -> list[str]:
    """Migrate (``cityops.kernel.migrate.migrate``) and seed; returns the migrations applied.

    The seeds are this release's rows and need this release's schema: a database migrated only
    to an older set (``directory``, the upgrade test's previous release) gets the sensor types
    only: the detectors' defaults name detectors its constraints do not know yet."""
    seeds = SEEDS if directory == MIGRATIONS_DIR else (write_sensor_types,)
    return migrate(conn, use_timescale=use_timescale, directory=directory, seeds=seeds)
