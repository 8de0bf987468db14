"""An incident waits a little for the readings after its onset before it is placed: ingestion
can be a moment behind the alert engine, and an incident placed on the readings before its
onset falls back to the nearest pipe or line for good. Shared by the water and power placing
(alerts/enrich.py, alerts/enrich_power.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import psycopg

PENDING_MAX_S = 120.0  # [s] how long an incident waits for the readings after its onset
_pending_since: dict[tuple[str, int], float] = {}  # (database, incident) -> first try


class PendingReadings(Exception):
    """No readings after the incident's onset are stored yet: try it again at the next round."""


def _waited_s(conn: psycopg.Connection, incident_id: int) -> float:
    now = time.monotonic()
    if len(_pending_since) > 10_000:  # incidents long gone
        _pending_since.clear()
    return now - _pending_since.setdefault((conn.info.dbname, incident_id), now)


def wait_for_readings(
    conn: psycopg.Connection,
    incident_id: int,
    opened_at: datetime,
    stored_until: datetime | None,
    after_s: float,
) -> None:
    """Raise ``PendingReadings`` while the readings stored so far (up to ``stored_until``) end
    less than ``after_s`` after the onset, for at most ``PENDING_MAX_S`` per incident."""
    if (
        stored_until is not None
        and stored_until < opened_at + timedelta(seconds=after_s)
        and _waited_s(conn, incident_id) < PENDING_MAX_S
    ):
        raise PendingReadings(incident_id)
