"""``alert_balance_state``: each metered area's learnt water-balance state (alerts/balance.py)
as one JSON document, written with the engine's batch and read back at start."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

import psycopg
from psycopg.types.json import Jsonb

from alerts.balance import AreaState, state_from_doc, state_to_doc
from alerts.stores.times import ts_from_us

log = logging.getLogger("alerts.balance_state")


def read_balance_states(conn: psycopg.Connection) -> dict[str, AreaState]:
    """area id -> its state as last written; a document this version cannot read is skipped
    (logged): that area learns again rather than the engine not starting."""
    out: dict[str, AreaState] = {}
    for area_id, doc in conn.execute("SELECT area_id, state FROM alert_balance_state"):
        try:
            out[area_id] = state_from_doc(doc)
        except ValueError as exc:
            log.warning("balance state of area %s not reloaded: %s", area_id, exc)
    return out


def write_balance_states(conn: psycopg.Connection, states: Mapping[str, AreaState]) -> None:
    """Upsert the areas' states (one statement)."""
    if not states:
        return
    ids = sorted(states)
    conn.execute(
        """
        INSERT INTO alert_balance_state (area_id, state, stream_ts)
        SELECT * FROM unnest(%s::text[], %s::jsonb[], %s::timestamptz[])
        ON CONFLICT (area_id) DO UPDATE
        SET state = EXCLUDED.state, stream_ts = EXCLUDED.stream_ts, updated_at = now()
        """,
        (
            ids,
            [Jsonb(state_to_doc(states[a])) for a in ids],
            [_stream_ts(states[a]) for a in ids],
        ),
    )


def _stream_ts(st: AreaState) -> datetime | None:
    return None if st.last_point_us is None else ts_from_us(st.last_point_us)


def read_active_alert_ids(
    conn: psycopg.Connection, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], int]:
    """(sensor, quantity, kind) -> the id of its active alert. Belongs with the ``alerts`` table
    in alerts/stores/alert_rows.py (another engineer's file): to move there."""
    if not keys:
        return {}
    rows = conn.execute(
        """
        SELECT a.sensor_id, a.quantity, a.kind, a.alert_id
        FROM alerts a
        JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(sensor_id, quantity, kind)
          ON a.sensor_id = k.sensor_id AND a.quantity = k.quantity AND a.kind = k.kind
        WHERE a.cleared_at IS NULL
        """,
        ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
    ).fetchall()
    return {(sid, q, kind): int(aid) for sid, q, kind, aid in rows}
