"""The engine's clock per key: ``alert_detector_state`` (the newest reading evaluated per
sensor and quantity, and its learnt arrival rhythm), and the stored readings (``readings``, kept by ingestion) that refill the
windowed detectors after a restart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import psycopg

from alerts.engine import Key, KeyState
from alerts.stores.times import ts_from_us, us_from_ts


def read_last_evaluated(conn: psycopg.Connection) -> dict[Key, int]:
    """(sensor, quantity) -> the newest reading time evaluated [us], as committed."""
    return {
        (sid, q): us_from_ts(ts)
        for sid, q, ts in conn.execute(
            "SELECT sensor_id, quantity, last_ts FROM alert_detector_state"
        )
    }


def read_intervals(conn: psycopg.Connection) -> dict[Key, float]:
    """(sensor, quantity) -> its learnt interval between arrivals [us], where one was kept."""
    return {
        (sid, q): float(s) * 1e6
        for sid, q, s in conn.execute(
            "SELECT sensor_id, quantity, interval_s FROM alert_detector_state"
            " WHERE interval_s IS NOT NULL"
        )
    }


def write_last_evaluated(
    conn: psycopg.Connection, states: Mapping[Key, KeyState], *, durable: bool = True
) -> None:
    """Move each key's clock forward (never back) to its state's last reading, and keep its
    learnt rhythm (``interval_us``; an unknown one keeps the stored one). ``durable``
    False: the transaction writes nothing else, so it need not wait for the WAL flush (losing
    clocks in a PostgreSQL crash only means evaluating again against an older clock)."""
    if not durable:
        conn.execute("SET LOCAL synchronous_commit = off")
    keys = [k for k, s in states.items() if s.last_ts_us is not None]
    if not keys:
        return
    conn.execute(
        """
        INSERT INTO alert_detector_state (sensor_id, quantity, last_ts, interval_s)
        SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::float8[])
        ON CONFLICT (sensor_id, quantity) DO UPDATE
        SET last_ts = GREATEST(alert_detector_state.last_ts, EXCLUDED.last_ts),
            interval_s = coalesce(EXCLUDED.interval_s, alert_detector_state.interval_s),
            updated_at = now()
        """,
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [ts_from_us(states[k].last_ts_us or 0) for k in keys],
            [_interval_s(states[k]) for k in keys],
        ),
    )


def _interval_s(st: KeyState) -> float | None:
    return None if st.interval_us is None else st.interval_us / 1e6


def read_recent_readings(
    conn: psycopg.Connection, wanted: Mapping[tuple[str, str], float]
) -> dict[Key, list[tuple[int, float]]]:
    """Per key, the stored readings ``(ts_us, value)``, oldest first, within ``wanted[(sensor
    type, quantity)]`` seconds up to and including its last evaluated one; nothing where
    ingestion keeps no ``readings`` table in this database."""
    recent: dict[Key, list[tuple[int, float]]] = {}
    if not wanted or conn.execute("SELECT to_regclass('readings')").fetchone() == (None,):
        return recent
    for (type_id, quantity), window_s in wanted.items():
        for sid, ts, value in conn.execute(
            """
            SELECT r.sensor_id, r.ts, r.value
            FROM alert_detector_state d
            JOIN sensors s ON s.sensor_id = d.sensor_id AND s.sensor_type = %s
            JOIN readings r ON r.sensor_id = d.sensor_id AND r.quantity = d.quantity
                AND r.ts >= d.last_ts - make_interval(secs => %s) AND r.ts <= d.last_ts
            WHERE d.quantity = %s
            ORDER BY r.sensor_id, r.ts
            """,
            (type_id, window_s, quantity),
        ):
            recent.setdefault((sid, quantity), []).append((us_from_ts(ts), value))
    return recent


def read_detector_clock(conn: psycopg.Connection) -> tuple[datetime | None, int]:
    """(the newest detector state update, how many states): it stops moving once the engine
    has nothing left to evaluate."""
    row = conn.execute("SELECT max(updated_at), count(*) FROM alert_detector_state").fetchone()
    return (row[0], int(row[1])) if row else (None, 0)


def read_evaluated_until(conn: psycopg.Connection, sensor_ids: Sequence[str]) -> datetime | None:
    """The newest reading time the engine has evaluated for any of ``sensor_ids``."""
    row = conn.execute(
        "SELECT max(last_ts) FROM alert_detector_state WHERE sensor_id = ANY(%s)",
        (list(sensor_ids),),
    ).fetchone()
    return row[0] if row else None
