"""Read-only lists of alerts and incidents for `cityops alerts list` / `cityops incidents list`
(the operators' view without SQL). Newest first; filters are optional and combine with AND."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from alerts.messages import source_loss_messages

# "active" is every state an operator still has to act on (alerts.lifecycle.ACTIVE_STATES)
ALERT_STATES = ("open", "acknowledged", "in_progress", "resolved", "closed", "active")
INCIDENT_STATES = ("open", "resolved", "closed", "active")
UTILITIES = ("water", "power", "gas")
MAX_LIMIT = 10_000


class ListingError(ValueError):
    pass


def _filters(
    states: tuple[str, ...],
    state: str | None,
    utility: str | None,
    since: datetime | None,
    limit: int,
    *,
    time_col: str,
    utility_clause: str = "utility = %(utility)s",
) -> tuple[sql.Composable, dict[str, Any]]:
    if state is not None and state not in states:
        raise ListingError(f"state must be one of {', '.join(states)}, not {state!r}")
    if utility is not None and utility not in UTILITIES:
        raise ListingError(f"utility must be one of {', '.join(UTILITIES)}, not {utility!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ListingError(f"limit must be 1-{MAX_LIMIT}, not {limit}")
    if since is not None and since.tzinfo is None:
        raise ListingError("since needs a time zone (for example 2026-12-01T00:00+08:00)")
    where: list[sql.Composable] = [sql.SQL("TRUE")]
    if state == "active":
        where.append(
            sql.SQL("state IN ('open', 'acknowledged', 'in_progress')")
            if "in_progress" in states
            else sql.SQL("state = 'open'")
        )
    elif state is not None:
        where.append(sql.SQL("state = %(state)s"))
    if utility is not None:
        where.append(sql.SQL(utility_clause))
    if since is not None:
        where.append(sql.SQL("{} >= %(since)s").format(sql.Identifier(time_col)))
    params = {"state": state, "utility": utility, "since": since, "limit": limit}
    return sql.SQL(" AND ").join(where), params


def read_alert_list(
    conn: psycopg.Connection,
    *,
    state: str | None = None,
    utility: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Alerts raised since ``since`` (or ever), newest first."""
    where, params = _filters(ALERT_STATES, state, utility, since, limit, time_col="raised_at")
    q = sql.SQL(
        "SELECT alert_id, sensor_id, utility, quantity, kind, severity, state, raised_at,"
        " cleared_at, value, limit_value, incident_id, message_zh, message_en"
        " FROM alerts WHERE {} ORDER BY raised_at DESC, alert_id DESC LIMIT %(limit)s"
    ).format(where)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q, params).fetchall()


# A source loss (alerts/source_loss.py) is listed as an incident of kind ``source_loss``: what
# stopped (scope, scope value), since when, how many sensors; no place, no alerts, no customers.
# Closed, it is ``resolved`` (it ended by itself, as quiet incidents do). ``utilities``: those
# of its sensors, so ``--utility water`` lists a stream's loss too.
_INCIDENTS_AND_LOSSES = sql.SQL("""
SELECT incident_id, NULL::bigint AS source_loss_id, utility, kind, severity, state, opened_at,
       last_alert_at, resolved_at, alert_count, kinds, ST_X(centre) AS lon, ST_Y(centre) AS lat,
       radius_m, district_adcode, likely_location, explanation_zh, explanation_en,
       affected->>'method' AS method,
       CASE WHEN jsonb_typeof(affected->'candidates') = 'array' THEN ARRAY(SELECT c->>'pipe'
         FROM jsonb_array_elements(affected->'candidates') c) END AS candidates,
       NULL::text AS scope, NULL::text AS scope_value, NULL::integer AS sensors,
       NULL::integer AS group_size, NULL::timestamptz AS since, ARRAY[utility] AS utilities
FROM incidents
UNION ALL
SELECT NULL, x.loss_id, CASE WHEN x.scope = 'utility' THEN x.scope_value END, 'source_loss',
       'critical', CASE WHEN x.state = 'open' THEN 'open' ELSE 'resolved' END, x.since,
       x.noticed_at, x.ended_at, 0, '{}'::text[], NULL, NULL, NULL,
       CASE WHEN x.scope = 'district' THEN x.scope_value::integer END, NULL, x.explanation_zh,
       x.explanation_en, NULL, NULL, x.scope, x.scope_value, cardinality(x.sensors),
       x.group_size, x.since,
       ARRAY(SELECT DISTINCT s.utility FROM sensors s WHERE s.sensor_id = ANY(x.sensors))
FROM source_losses x
""")


def read_incident_list(
    conn: psycopg.Connection,
    *,
    state: str | None = None,
    utility: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    tz: str = "Asia/Shanghai",
) -> list[dict[str, Any]]:
    """Incidents opened since ``since`` (or ever), newest first, with their centre, likely
    location, the method that placed it and its ranked candidate pipes or lines; and the
    source losses as incidents of kind ``source_loss`` (``source_loss_id``, ``scope``,
    ``scope_value``, ``sensors``, ``group_size``, ``since``; ``incident_id`` null), their
    explanation saying since when in ``tz``."""
    where, params = _filters(
        INCIDENT_STATES,
        state,
        utility,
        since,
        limit,
        time_col="opened_at",
        utility_clause="%(utility)s = ANY(utilities)",
    )
    q = sql.SQL(
        "SELECT * FROM ({}) i WHERE {}"
        " ORDER BY opened_at DESC, incident_id DESC NULLS LAST, source_loss_id DESC"
        " LIMIT %(limit)s"
    ).format(_INCIDENTS_AND_LOSSES, where)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q, params).fetchall()
    for r in rows:
        del r["utilities"]
        if r["source_loss_id"] is not None:
            local = r["since"].astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M:%S")
            r["explanation_zh"], r["explanation_en"] = source_loss_messages(
                r["scope"], r["scope_value"], r["sensors"], r["group_size"], local, "source_lost"
            )
    return rows
