"""Read-only lists of alerts and incidents for `cityops alerts list` / `cityops incidents list`
(the operators' view without SQL). Newest first; filters are optional and combine with AND."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

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
        where.append(sql.SQL("utility = %(utility)s"))
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


def read_incident_list(
    conn: psycopg.Connection,
    *,
    state: str | None = None,
    utility: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Incidents opened since ``since`` (or ever), newest first, with their centre, likely
    location, the method that placed it and its ranked candidate pipes or lines."""
    where, params = _filters(INCIDENT_STATES, state, utility, since, limit, time_col="opened_at")
    q = sql.SQL(
        "SELECT incident_id, utility, kind, severity, state, opened_at, last_alert_at,"
        " resolved_at, alert_count, kinds, ST_X(centre) AS lon, ST_Y(centre) AS lat, radius_m,"
        " district_adcode, likely_location, explanation_zh, explanation_en,"
        # how it was placed and the ranked candidates (alerts/enrich.py): what a crew searches
        " affected->>'method' AS method,"
        " CASE WHEN jsonb_typeof(affected->'candidates') = 'array' THEN ARRAY(SELECT c->>'pipe'"
        "   FROM jsonb_array_elements(affected->'candidates') c) END AS candidates"
        " FROM incidents WHERE {} ORDER BY opened_at DESC, incident_id DESC LIMIT %(limit)s"
    ).format(where)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q, params).fetchall()
