"""A retired sensor's active alerts end with it: nothing will ever clear them otherwise (its
readings are refused from then on), and the wall would show them open for ever. Cleared
through the engine's own path (``write_evaluation``: the alert resolved, its clear event
published, its incident resolved by the engine once no member alert is active), at the
retirement's time."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import psycopg

from alerts.engine import AlertChange, Evaluation
from alerts.stores.batch import write_evaluation
from alerts.stores.times import us_from_ts

RETIRED_ZH = "传感器已停用，告警随之解除"
RETIRED_EN = "sensor retired: its alert ends with it"


def clear_alerts_of_retired(
    conn: psycopg.Connection, sensor_ids: Iterable[str], *, now: datetime | None = None
) -> int:
    """Clear the active alerts of those ``sensor_ids`` that are no longer active (retired);
    returns how many. An active sensor's alerts are left to the engine."""
    ts_us = us_from_ts(now or datetime.now(UTC))
    rows = conn.execute(
        "SELECT a.sensor_id, a.utility, a.quantity, a.kind, a.severity,"
        "  coalesce(a.last_value, a.value), a.limit_value"
        " FROM alerts a JOIN sensors s USING (sensor_id)"
        " WHERE a.cleared_at IS NULL AND s.status <> 'active' AND a.sensor_id = ANY(%s)"
        " ORDER BY a.alert_id",
        (list(sensor_ids),),
    ).fetchall()
    changes = tuple(
        AlertChange(
            "cleared", sid, util, q, kind, sev, float(v), lim, ts_us, RETIRED_ZH, RETIRED_EN
        )
        for sid, util, q, kind, sev, v, lim in rows
    )
    if changes:
        write_evaluation(conn, Evaluation(changes, {}))
    return len(changes)
