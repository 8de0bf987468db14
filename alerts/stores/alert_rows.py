"""``alerts`` (one row per alert: its condition, lifecycle columns, incident link) and
``maintenance_windows`` (planned work under which alerts are neither escalated nor notified).
Alerts raised during an entry of the works calendar are marked too (``works.covering``).

``cleared_at IS NULL`` is the condition being active, unique per sensor, quantity and kind
(``alerts_one_active_idx``): a raise that finds one active, or a clear that finds none, changes
nothing, so replays are harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from alerts.engine import AlertChange, Key
from alerts.incidents import HEALTH_KINDS, alert_tag
from alerts.lifecycle import AlertLife, State
from alerts.stores import works
from alerts.stores.times import finite, ts_from_us, us_from_ts

Cleared = tuple[int, AlertChange, str, str]  # (alert_id, change, state before, state after)

_LIFE_SELECT = sql.SQL(
    "SELECT alert_id, state, severity, raised_at, cleared_at, acknowledged_at, acknowledged_by,"
    " assigned_to, assigned_at, started_at, shelved_until, shelved_by, shelve_reason,"
    " resolved_at, resolved_by, closed_at, closed_by, escalation_level, escalated_at, created_at,"
    " suppressed_by FROM alerts"
)


@dataclass(frozen=True, slots=True)
class RoutingFacts:
    """What notification routing needs to know of an alert beyond its event."""

    district_adcode: int | None  # of its sensor
    suppressed_by: str | None  # maintenance:<window id>, or None
    earlier_raises: int  # of the same sensor, quantity and kind within the chattering window


def insert_raises(
    conn: psycopg.Connection, raises: Sequence[AlertChange]
) -> list[tuple[int, AlertChange]]:
    """New alerts, state ``open``, in one INSERT; returns (alert_id, change) of those stored
    (a raise whose condition is already active stores nothing). At most one raise per
    (sensor, quantity, kind) per call."""
    if not raises:
        return []
    rows = conn.execute(
        """
        INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state,
                            raised_at, value, limit_value, last_value, message_zh,
                            message_en)
        SELECT u.sensor_id, u.utility, u.quantity, u.kind, u.severity, 'open', u.ts,
               u.value, u.lim, u.value, u.zh, u.en
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                    %s::timestamptz[], %s::float8[], %s::float8[], %s::text[],
                    %s::text[])
             AS u(sensor_id, utility, quantity, kind, severity, ts, value, lim, zh, en)
        ON CONFLICT (sensor_id, quantity, kind) WHERE cleared_at IS NULL DO NOTHING
        RETURNING alert_id, sensor_id, quantity, kind
        """,
        (
            [c.sensor_id for c in raises],
            [c.utility for c in raises],
            [c.quantity for c in raises],
            [c.kind for c in raises],
            [c.severity for c in raises],
            [ts_from_us(c.ts_us) for c in raises],
            [c.value for c in raises],
            [finite(c.limit) for c in raises],
            [c.message_zh for c in raises],
            [c.message_en for c in raises],
        ),
    ).fetchall()
    by_key = {(c.sensor_id, c.quantity, c.kind): c for c in raises}
    return [(alert_id, by_key[(sid, q, kind)]) for alert_id, sid, q, kind in rows]


def mark_maintenance(conn: psycopg.Connection, new: Sequence[tuple[int, AlertChange]]) -> None:
    """Mark alerts raised inside a maintenance window covering their sensor (by sensor, utility
    and/or district): ``suppressed_by = 'maintenance:<window id>'``; failing that, inside an
    active works-calendar entry covering it (alerts/stores/works.py): ``'works:<work id>'``."""
    if not new:
        return
    _mark_maintenance_windows(conn, new)
    covered = works.covering(
        conn, [(a, c.sensor_id, c.utility, ts_from_us(c.ts_us)) for a, c in new]
    )
    if covered:
        conn.execute(
            "UPDATE alerts a SET suppressed_by = 'works:' || x.work_id"
            " FROM unnest(%s::bigint[], %s::bigint[]) AS x(id, work_id)"
            " WHERE a.alert_id = x.id AND a.suppressed_by IS NULL",
            (list(covered), list(covered.values())),
        )


def read_suppressed_by(conn: psycopg.Connection, alert_id: int) -> str | None:
    """The alert's suppression mark (maintenance:<id>, works:<id>), or None."""
    row = conn.execute(
        "SELECT suppressed_by FROM alerts WHERE alert_id = %s", (alert_id,)
    ).fetchone()
    return None if row is None else row[0]


def _mark_maintenance_windows(
    conn: psycopg.Connection, new: Sequence[tuple[int, AlertChange]]
) -> None:
    conn.execute(
        """
        UPDATE alerts a SET suppressed_by = 'maintenance:' || w.window_id
        FROM (
            SELECT DISTINCT ON (x.id) x.id, w.window_id
            FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[])
                 AS x(id, sid, ts, utility)
            LEFT JOIN sensors s ON s.sensor_id = x.sid
            JOIN maintenance_windows w
              ON w.starts_at <= x.ts AND x.ts < w.ends_at
             AND (w.sensor_id IS NULL OR w.sensor_id = x.sid)
             AND (w.utility IS NULL OR w.utility = x.utility)
             AND (w.district_adcode IS NULL OR w.district_adcode = s.district_adcode)
            ORDER BY x.id, w.window_id
        ) w
        WHERE a.alert_id = w.id
        """,
        (
            [a for a, _ in new],
            [c.sensor_id for _, c in new],
            [ts_from_us(c.ts_us) for _, c in new],
            [c.utility for _, c in new],
        ),
    )


def apply_clears(
    conn: psycopg.Connection, clears: Sequence[AlertChange], actor: str
) -> list[Cleared]:
    """End the active conditions named by ``clears`` in one UPDATE; an open or acknowledged
    alert is resolved by ``actor`` with it (one in progress stays with the crew). At most one
    clear per (sensor, quantity, kind) per call; a clear that finds nothing active is skipped."""
    if not clears:
        return []
    rows = conn.execute(
        """
        WITH c AS (
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[],
                                 %s::float8[]) AS c(sensor_id, quantity, kind, ts, value)
        ), old AS (
            SELECT a.alert_id, a.state, c.ts, c.value FROM alerts a
            JOIN c USING (sensor_id, quantity, kind)
            WHERE a.cleared_at IS NULL FOR UPDATE OF a
        )
        UPDATE alerts a SET cleared_at = old.ts, last_value = old.value,
            updated_at = now(),
            state = CASE WHEN old.state IN ('open', 'acknowledged') THEN 'resolved'
                         ELSE old.state END,
            resolved_at = CASE WHEN old.state IN ('open', 'acknowledged') THEN old.ts
                               ELSE a.resolved_at END,
            resolved_by = CASE WHEN old.state IN ('open', 'acknowledged') THEN %s
                               ELSE a.resolved_by END
        FROM old WHERE a.alert_id = old.alert_id
        RETURNING a.alert_id, a.sensor_id, a.quantity, a.kind, old.state, a.state
        """,
        (
            [c.sensor_id for c in clears],
            [c.quantity for c in clears],
            [c.kind for c in clears],
            [ts_from_us(c.ts_us) for c in clears],
            [c.value for c in clears],
            actor,
        ),
    ).fetchall()
    by_key = {(c.sensor_id, c.quantity, c.kind): c for c in clears}
    return [(aid, by_key[(sid, q, kind)], old, new) for aid, sid, q, kind, old, new in rows]


def read_active_kinds(conn: psycopg.Connection) -> dict[Key, set[str]]:
    """(sensor, quantity) -> the kinds of its alerts whose condition is active."""
    active: dict[Key, set[str]] = {}
    for sid, q, kind in conn.execute(
        "SELECT sensor_id, quantity, kind FROM alerts WHERE cleared_at IS NULL"
    ):
        active.setdefault((sid, q), set()).add(kind)
    return active


def _life(row: Sequence[Any]) -> AlertLife:
    return AlertLife(row[0], State(row[1]), *row[2:])


def read_alert_life(
    conn: psycopg.Connection, alert_id: int, *, for_update: bool = False
) -> AlertLife:
    """The alert's lifecycle columns (``LookupError`` when there is no such alert)."""
    row = conn.execute(
        _LIFE_SELECT
        + sql.SQL(" WHERE alert_id = %s")
        + sql.SQL(" FOR UPDATE" if for_update else ""),
        (alert_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no alert {alert_id}")
    return _life(row)


def lock_escalating(
    conn: psycopg.Connection, raised_before: datetime, below_level: int
) -> list[AlertLife]:
    """Open, unsuppressed alerts created before ``raised_before`` and still under
    ``below_level``, oldest raise first, locked; rows another transaction holds are skipped
    (the dashboard acknowledges them meanwhile)."""
    rows = conn.execute(
        _LIFE_SELECT
        + sql.SQL(
            " WHERE state = 'open' AND suppressed_by IS NULL"
            " AND coalesce(created_at, raised_at) <= %s AND escalation_level < %s"
            " ORDER BY raised_at FOR UPDATE SKIP LOCKED"
        ),
        (raised_before, below_level),
    ).fetchall()
    return [_life(r) for r in rows]


def write_grown(conn: psycopg.Connection, alert_id: int, severity: str, value: float) -> None:
    """A grown cause (alerts/balance.py: an open leak's excess rose): the alert row shows the
    severity its escalation event carries (the pages agree with the pager) and the grown excess
    as its last value; the value at the raise stays."""
    conn.execute(
        "UPDATE alerts SET severity = %s, last_value = %s, updated_at = now() WHERE alert_id = %s",
        (severity, value, alert_id),
    )


def write_life(conn: psycopg.Connection, a: AlertLife) -> None:
    conn.execute(
        """
        UPDATE alerts SET state = %s, acknowledged_at = %s, acknowledged_by = %s,
            assigned_to = %s, assigned_at = %s, started_at = %s, shelved_until = %s,
            shelved_by = %s, shelve_reason = %s, resolved_at = %s, resolved_by = %s,
            closed_at = %s, closed_by = %s, escalation_level = %s, escalated_at = %s,
            updated_at = now()
        WHERE alert_id = %s
        """,
        (
            a.state.value,
            a.acknowledged_at,
            a.acknowledged_by,
            a.assigned_to,
            a.assigned_at,
            a.started_at,
            a.shelved_until,
            a.shelved_by,
            a.shelve_reason,
            a.resolved_at,
            a.resolved_by,
            a.closed_at,
            a.closed_by,
            a.escalation_level,
            a.escalated_at,
            a.alert_id,
        ),
    )


def read_as_change(conn: psycopg.Connection, alert_id: int) -> AlertChange:
    """An existing alert as its raise, with its last value: what a later event about it (an
    escalation) carries."""
    row = conn.execute(
        "SELECT sensor_id, utility, quantity, kind, severity, coalesce(last_value, value),"
        " limit_value, raised_at FROM alerts WHERE alert_id = %s",
        (alert_id,),
    ).fetchone()
    assert row is not None
    sid, utility, quantity, kind, severity, value, limit, raised_at = row
    return AlertChange(
        "raised",
        sid,
        utility,
        quantity,
        kind,
        severity,
        value,
        limit,
        us_from_ts(raised_at),
        "",
        "",
    )


def write_maintenance_window(
    conn: psycopg.Connection,
    user: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    *,
    sensor_id: str | None = None,
    utility: str | None = None,
    district_adcode: int | None = None,
) -> int:
    """Declare planned work: alerts raised inside it are stored and published but neither
    escalated nor notified. Returns the window id."""
    if not reason.strip() or not user.strip():
        raise ValueError("a maintenance window needs a reason and the acting user")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO maintenance_windows (sensor_id, utility, district_adcode, starts_at,"
            " ends_at, reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " RETURNING window_id",
            (sensor_id, utility, district_adcode, starts_at, ends_at, reason, user),
        ).fetchone()
    assert row is not None
    return int(row[0])


def read_ungrouped(conn: psycopg.Connection, limit: int) -> list[tuple[int, AlertChange]]:
    """Alerts not yet put into an incident, oldest raise first, as their raise."""
    rows = conn.execute(
        "SELECT alert_id, sensor_id, utility, quantity, kind, severity, value, limit_value,"
        " raised_at FROM alerts WHERE grouped_at IS NULL ORDER BY raised_at, alert_id"
        " LIMIT %s",
        (limit,),
    ).fetchall()
    return [
        (aid, AlertChange("raised", sid, u, q, kind, sev, v, lim, us_from_ts(at), "", ""))
        for aid, sid, u, q, kind, sev, v, lim, at in rows
    ]


def mark_grouped(conn: psycopg.Connection, alert_ids: Sequence[int]) -> None:
    if alert_ids:
        conn.execute(
            "UPDATE alerts SET grouped_at = now() WHERE alert_id = ANY(%s)", (list(alert_ids),)
        )


def link_incident(conn: psycopg.Connection, alert_id: int, incident_id: int) -> None:
    conn.execute("UPDATE alerts SET incident_id = %s WHERE alert_id = %s", (incident_id, alert_id))


def read_health_flags(
    conn: psycopg.Connection, sensor_id: str, except_alert: int
) -> frozenset[str]:
    """Tags (``alert_tag``) of the sensor's active sensor-health alerts other than one."""
    return frozenset(
        alert_tag(q, k)
        for q, k in conn.execute(
            "SELECT quantity, kind FROM alerts WHERE sensor_id = %s AND cleared_at IS NULL"
            " AND kind = ANY(%s) AND alert_id <> %s",
            (sensor_id, sorted(HEALTH_KINDS), except_alert),
        )
    )


def read_faulty(conn: psycopg.Connection, sensor_ids: Sequence[str]) -> frozenset[str]:
    """Those of ``sensor_ids`` with an active sensor-health alert."""
    return frozenset(
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT sensor_id FROM alerts WHERE sensor_id = ANY(%s)"
            " AND cleared_at IS NULL AND kind = ANY(%s)",
            (list(sensor_ids), sorted(HEALTH_KINDS)),
        )
    )


def read_routing_facts(
    conn: psycopg.Connection, alert_ids: Sequence[int], chatter_window_s: float
) -> dict[int, RoutingFacts]:
    """alert id -> its sensor's district, its maintenance mark, and how often the same sensor,
    quantity and kind was raised within ``chatter_window_s`` [s] before it."""
    return {
        r[0]: RoutingFacts(r[1], r[2], int(r[3]))
        for r in conn.execute(
            "SELECT a.alert_id, s.district_adcode, a.suppressed_by,"
            " (SELECT count(*) FROM alerts b WHERE b.sensor_id = a.sensor_id"
            "   AND b.quantity = a.quantity AND b.kind = a.kind AND b.raised_at < a.raised_at"
            "   AND b.raised_at > a.raised_at - make_interval(secs => %s))"
            " FROM alerts a LEFT JOIN sensors s ON s.sensor_id = a.sensor_id"
            " WHERE a.alert_id = ANY(%s)",
            (chatter_window_s, list(alert_ids)),
        )
    }
