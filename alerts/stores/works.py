"""``works``: the works calendar of planned operations (migration 0075, decision 0074).

A valve operation, a network reconfiguration or maintenance, with its time, the metered areas,
assets and sensors it touches and who recorded it. Alerts raised while an entry is active on
their sensor are marked ``suppressed_by = 'works:<id>'`` (``alert_rows.mark_maintenance``
asks ``covering``) and grouped as a ``planned_operation`` (alerts/incidents.py).

An entry covers a sensor named in ``sensor_ids``, a sensor at one of ``asset_ids``
(``sensors.asset_id``), or a sensor of one of ``area_ids`` (``metered_area_sensors``); an
entry naming none of them covers every sensor of its utility.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

KINDS = ("valve_operation", "reconfiguration", "maintenance")
UTILITIES = ("water", "power", "gas")


@dataclass(frozen=True, slots=True)
class Work:
    work_id: int
    kind: str
    utility: str
    starts_at: datetime
    ends_at: datetime
    area_ids: tuple[str, ...]
    asset_ids: tuple[str, ...]
    sensor_ids: tuple[str, ...]
    description: str
    recorded_by: str
    recorded_at: datetime
    cancelled_at: datetime | None
    cancelled_by: str | None


_SELECT = (
    "SELECT work_id, kind, utility, starts_at, ends_at, area_ids, asset_ids, sensor_ids,"
    " description, recorded_by, recorded_at, cancelled_at, cancelled_by FROM works"
)


def _work(row: Sequence[object]) -> Work:
    r = list(row)
    r[5], r[6], r[7] = tuple(r[5]), tuple(r[6]), tuple(r[7])  # type: ignore[arg-type]
    return Work(*r)  # type: ignore[arg-type]


def add_work(
    conn: psycopg.Connection,
    *,
    kind: str,
    utility: str,
    starts_at: datetime,
    ends_at: datetime,
    description: str,
    recorded_by: str,
    area_ids: Sequence[str] = (),
    asset_ids: Sequence[str] = (),
    sensor_ids: Sequence[str] = (),
) -> int:
    """Record a planned operation; returns its id. Bad input raises ``ValueError`` and stores
    nothing (an unknown area or sensor included)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if utility not in UTILITIES:
        raise ValueError(f"utility must be one of {', '.join(UTILITIES)}, not {utility!r}")
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise ValueError("starts_at and ends_at need a time zone")
    if ends_at <= starts_at:
        raise ValueError("ends_at must be after starts_at")
    if not description.strip() or not recorded_by.strip():
        raise ValueError("a works entry needs a description and who recorded it")
    with conn.transaction():
        _check_known(conn, "metered_areas", "area_id", area_ids, "metered area")
        _check_known(conn, "sensors", "sensor_id", sensor_ids, "sensor")
        row = conn.execute(
            "INSERT INTO works (kind, utility, starts_at, ends_at, area_ids, asset_ids,"
            " sensor_ids, description, recorded_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING work_id",
            (
                kind,
                utility,
                starts_at,
                ends_at,
                list(area_ids),
                list(asset_ids),
                list(sensor_ids),
                description.strip(),
                recorded_by.strip(),
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def _check_known(
    conn: psycopg.Connection, table: str, column: str, ids: Sequence[str], what: str
) -> None:
    if not ids:
        return
    # table and column are this module's constants, never user input
    known = {
        r[0]
        for r in conn.execute(
            f"SELECT {column} FROM {table} WHERE {column} = ANY(%s)",  # noqa: S608
            (list(ids),),
        )
    }
    missing = sorted(set(ids) - known)
    if missing:
        raise ValueError(f"unknown {what}: {', '.join(missing)}")


def list_works(
    conn: psycopg.Connection,
    *,
    active_at: datetime | None = None,
    include_cancelled: bool = False,
) -> list[Work]:
    """Entries, earliest start first; ``active_at``: only those running then."""
    where, args = [], []
    if not include_cancelled:
        where.append("cancelled_at IS NULL")
    if active_at is not None:
        where.append("starts_at <= %s AND %s < ends_at")
        args += [active_at, active_at]
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    rows = conn.execute(_SELECT + clause + " ORDER BY starts_at, work_id", args).fetchall()
    return [_work(r) for r in rows]


def cancel_work(conn: psycopg.Connection, work_id: int, user: str) -> Work:
    """Cancel an entry (kept, with who cancelled it). ``LookupError``: no such entry;
    ``ValueError``: already cancelled, or no user."""
    if not user.strip():
        raise ValueError("cancelling needs the acting user")
    with conn.transaction():
        row = conn.execute(_SELECT + " WHERE work_id = %s FOR UPDATE", (work_id,)).fetchone()
        if row is None:
            raise LookupError(f"no works entry {work_id}")
        if row[11] is not None:
            raise ValueError(f"works entry {work_id} was already cancelled")
        row = conn.execute(
            "UPDATE works SET cancelled_at = now(), cancelled_by = %s WHERE work_id = %s"
            " RETURNING work_id, kind, utility, starts_at, ends_at, area_ids, asset_ids,"
            " sensor_ids, description, recorded_by, recorded_at, cancelled_at, cancelled_by",
            (user.strip(), work_id),
        ).fetchone()
    assert row is not None
    return _work(row)


def covering(
    conn: psycopg.Connection, items: Sequence[tuple[int, str, str, datetime]]
) -> dict[int, int]:
    """(key, sensor id, utility, time) -> the earliest active entry covering that sensor then:
    key -> work id, for the keys covered."""
    if not items:
        return {}
    rows = conn.execute(
        """
        SELECT DISTINCT ON (x.k) x.k, w.work_id
        FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[])
             AS x(k, sid, utility, ts)
        JOIN works w
          ON w.cancelled_at IS NULL AND w.utility = x.utility
         AND w.starts_at <= x.ts AND x.ts < w.ends_at
        LEFT JOIN sensors s ON s.sensor_id = x.sid
        WHERE x.sid = ANY(w.sensor_ids)
           OR s.asset_id = ANY(w.asset_ids)
           OR EXISTS (SELECT 1 FROM metered_area_sensors m
                      WHERE m.sensor_id = x.sid AND m.area_id = ANY(w.area_ids))
           OR (w.sensor_ids = '{}' AND w.asset_ids = '{}' AND w.area_ids = '{}')
        ORDER BY x.k, w.starts_at, w.work_id
        """,
        (
            [k for k, _, _, _ in items],
            [s for _, s, _, _ in items],
            [u for _, _, u, _ in items],
            [t for _, _, _, t in items],
        ),
    ).fetchall()
    return {int(k): int(w) for k, w in rows}
