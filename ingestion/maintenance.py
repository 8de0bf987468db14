"""The ingestion workers' hourly maintenance: readings partitions ahead, and retention of the
readings, the quarantine and the bookkeeping (docs/ingestion.md). A refused step is logged and
the others still run; a lost connection is raised to the caller."""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from cityops.kernel.logs import log_event
from cityops.kernel.settings import Settings
from ingestion.store import (
    IngestConnection,
    apply_retention,
    drop_old_bookkeeping,
    drop_old_quarantine,
    write_partitions,
)

log = logging.getLogger("ingestion")

MAINTENANCE_S = 3600.0  # how often a worker runs it
# rejected messages are kept this long (or CITYOPS_RETENTION_DAYS when shorter)
QUARANTINE_KEEP_DAYS = 30
# gaps and duplicate counts feed the data-trust figures: kept as long as the readings, and a
# little over a year when readings are kept for ever (they grow by sensors x hours)
BOOKKEEPING_KEEP_DAYS = 400


def quarantine_keep_days(retention_days: int) -> int:
    """Days rejected messages are kept: ``QUARANTINE_KEEP_DAYS``, or the readings' retention
    when that is shorter (0 = readings kept for ever)."""
    if retention_days <= 0:
        return QUARANTINE_KEEP_DAYS
    return min(QUARANTINE_KEEP_DAYS, retention_days)


def run_maintenance(ic: IngestConnection, settings: Settings) -> None:
    """Partitions ahead for the accepted window; retention of readings (plain PostgreSQL drops
    day partitions, TimescaleDB's retention policy is set to the horizon), of the quarantine and
    of the bookkeeping (gaps, duplicate counts)."""
    s = settings
    created = write_partitions(ic, s.accept_past_s, s.accept_future_s)
    dropped = _step(ic, "readings_retention", apply_retention, max(0, s.retention_days))
    purged = _step(
        ic, "quarantine_retention", drop_old_quarantine, quarantine_keep_days(s.retention_days)
    )
    purged += _step(
        ic,
        "bookkeeping_retention",
        drop_old_bookkeeping,
        s.retention_days if s.retention_days > 0 else BOOKKEEPING_KEEP_DAYS,
    )
    if created or dropped:
        log_event(log, "partitions", created=created, dropped=dropped)
    if purged:
        log_event(log, "quarantine_purged", rows=purged)


def _step(
    ic: IngestConnection, name: str, fn: Callable[[IngestConnection, int], int], arg: int
) -> int:
    try:
        return fn(ic, arg)
    except (psycopg.OperationalError, psycopg.InterfaceError):
        raise
    except psycopg.Error as exc:
        ic.rollback()
        log_event(log, "maintenance_failed", logging.ERROR, step=name, error=str(exc)[:300])
        return 0
