"""Read-only SQL for the dashboard pages (PostgreSQL/PostGIS through psycopg).

Every function takes an open connection and returns frozen values from ``dashboards.model``.
``Reader`` hands out connections made by ``cityops.kernel.db.connect`` with a short statement timeout
and read-only transactions, so a slow query or a dead database raises quickly instead of hanging
a page; a broken connection is thrown away and the next request opens a new one.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from cityops.kernel.db import connect
from dashboards.model import (
    NOT_REPORTING,
    SEVERITIES,
    SILENT_FACTOR,
    AlertRow,
    District,
    IncidentFacts,
    Reading,
    SensorPoint,
    SourceLossView,
    WallIncident,
    geometry_xy,
)
from dashboards.snapshot import SensorStates
from ingestion.trust import TRUST_WINDOW_S, group_completeness

log = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = 3000
TRUST_CACHE_TTL_S = 60  # data_trust over every sensor for an hour is heavy: once a minute
# alerts in these states no longer need anyone: everything else counts as open
CLOSED_ALERT_STATES = ("cleared", "resolved", "closed")

# an alert shelved until a time still ahead (alerts.lifecycle) needs nobody now
_SHELVED = "COALESCE(a.shelved_until > now(), false)"
# One place for the state rule (model.SILENT_FACTOR), the one definition of online and silent
# on every page: no data > lost (a member of an open source loss that has sent nothing since
# the loss's start: its area is unknown) > silent (newest reading older than the factor x the
# type's interval) > alarm > normal. A sensor that stopped reporting is silent whatever alert
# it has: the alert stays in the lists, but the sensor's state is not known (issue 16).
_SENSOR_STATE_SQL = f"""
    WITH latest AS (SELECT sensor_id, max(ts) AS last_ts FROM sensor_latest GROUP BY sensor_id),
         open_alerts AS (SELECT sensor_id, count(*) AS n FROM alerts a
                         WHERE state <> ALL(%(closed)s) AND NOT {_SHELVED} GROUP BY sensor_id),
         lost AS (SELECT m.sensor_id, max(x.since) AS since FROM source_losses x,
                  unnest(x.sensors) AS m(sensor_id) WHERE x.state = 'open' GROUP BY 1)
    SELECT s.sensor_id, s.name, s.utility, s.sensor_type, s.district_adcode,
           ST_X(s.geom) AS lon, ST_Y(s.geom) AS lat,
           CASE WHEN l.last_ts IS NULL THEN 'nodata'
                WHEN l.last_ts <= x.since THEN 'lost'
                WHEN l.last_ts < now() - make_interval(secs => t.expected_interval_s * %(factor)s)
                    THEN 'silent'
                WHEN a.n > 0 THEN 'alarm'
                ELSE 'normal' END AS state,
           l.last_ts
    FROM sensors s
    JOIN sensor_types t ON t.type_id = s.sensor_type
    LEFT JOIN latest l ON l.sensor_id = s.sensor_id
    LEFT JOIN open_alerts a ON a.sensor_id = s.sensor_id
    LEFT JOIN lost x ON x.sensor_id = s.sensor_id
    WHERE s.status = 'active'
"""  # noqa: S608 - built from this module's constants


_STATES_SQL = f"SELECT * FROM ({_SENSOR_STATE_SQL}) st ORDER BY sensor_id"  # noqa: S608


class DatabaseUnavailable(RuntimeError):
    """The database could not answer (down, unreachable or too slow)."""


class Reader:
    """A small thread-safe pool of connections (the dashboard serves on threads); read-only
    unless built with ``read_only=False`` (sessions and alert actions)."""

    def __init__(
        self,
        database_url: str,
        *,
        max_idle: int = 4,
        statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
        read_only: bool = True,
    ) -> None:
        self._url = database_url
        self._read_only = read_only
        self._timeout_ms = statement_timeout_ms
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue(maxsize=max_idle)
        self._lock = threading.Lock()

    def _open(self) -> psycopg.Connection:
        conn = connect(
            self._url,
            autocommit=True,
            statement_timeout_ms=self._timeout_ms,
            application_name="cityops-dashboard",
        )
        if self._read_only:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection for one request; raises DatabaseUnavailable if the database fails."""
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = None
        try:
            if conn is None or conn.closed:
                conn = self._open()
            yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            # down, unreachable, restarted, or too slow (QueryCanceled is an OperationalError)
            if conn is not None:
                conn.close()
            raise DatabaseUnavailable(str(exc).strip().splitlines()[0] if str(exc) else "") from exc
        except BaseException:
            if conn is not None:  # a bug in a query: do not reuse a connection in an odd state
                conn.close()
            raise
        else:
            try:
                self._idle.put_nowait(conn)
            except queue.Full:
                conn.close()

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


# -- districts -------------------------------------------------------------------------------
def fetch_districts(conn: psycopg.Connection, *, simplify_deg: float = 0.002) -> list[District]:
    """District outlines simplified for display (``simplify_deg`` [degrees])."""
    rows = conn.execute(
        "SELECT adcode, name_zh, name_en,"
        " ST_AsGeoJSON(ST_SimplifyPreserveTopology(geom, %s), 5)"
        " FROM districts ORDER BY adcode",
        (simplify_deg,),
    ).fetchall()
    out = []
    for adcode, name_zh, name_en, geojson in rows:
        geom = json.loads(geojson)
        polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        rings = tuple(
            tuple((float(x), float(y)) for x, y, *_ in ring) for poly in polys for ring in poly
        )
        out.append(District(adcode, name_zh, name_en, rings))
    return out


# -- sensors ---------------------------------------------------------------------------------
def fetch_sensor_states(conn: psycopg.Connection) -> SensorStates:
    """Every active sensor with its state (the rule in _SENSOR_STATE_SQL), as columns."""
    rows = conn.execute(
        _STATES_SQL,
        {"closed": list(CLOSED_ALERT_STATES), "factor": SILENT_FACTOR},
    ).fetchall()
    return SensorStates.from_rows(rows)


def fetch_alert_stats(
    conn: psycopg.Connection,
) -> tuple[dict[int, tuple[int, list[str]]], dict[str, list[tuple[str, int]]]]:
    """Open, unshelved alerts counted per district (count, severities) and per utility
    ((severity, count) pairs)."""
    rows = conn.execute(
        f"SELECT s.district_adcode, a.utility, a.severity, count(*) FROM alerts a"  # noqa: S608
        f" LEFT JOIN sensors s ON s.sensor_id = a.sensor_id"
        f" WHERE a.state <> ALL(%s) AND NOT {_SHELVED} GROUP BY 1, 2, 3",
        (list(CLOSED_ALERT_STATES),),
    ).fetchall()
    by_district: dict[int, tuple[int, list[str]]] = {}
    by_utility: dict[str, dict[str, int]] = {}
    for adcode, utility, severity, n in rows:
        if adcode is not None:
            count, sevs = by_district.get(adcode, (0, []))
            by_district[adcode] = (count + n, [*sevs, severity])
        per = by_utility.setdefault(utility, {})
        per[severity] = per.get(severity, 0) + n
    return by_district, {u: sorted(d.items()) for u, d in by_utility.items()}


def trust_since(now: datetime) -> datetime:
    """The start of the window the wall and the trust page show (the last 60 minutes)."""
    return now - timedelta(seconds=TRUST_WINDOW_S)


class TrustRows:
    """The per-utility data-trust rows that the wall and the trust page share (decision 0016):
    read once, synchronously, the first time; then, once they are ``ttl_s`` old, read again on
    a thread while the pages go on showing the previous rows, so that no wall refresh waits for
    ``data_trust`` (1.7-2.0 s at 10,000 sensors: benchmarks/trust_bench.py)."""

    def __init__(self, reader: Reader, ttl_s: float = TRUST_CACHE_TTL_S) -> None:
        self._reader = reader
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._rows: list[tuple] | None = None
        self._at = 0.0
        self._busy = False

    def get(self, conn: psycopg.Connection, now: datetime) -> list[tuple]:
        with self._lock:
            rows = self._rows
            stale = rows is not None and time.monotonic() - self._at >= self._ttl_s
            start = stale and not self._busy
            if start:
                self._busy = True
        if rows is None:
            rows = fetch_trust_by_group(conn, since=trust_since(now), by="utility")
            with self._lock:
                self._rows, self._at = rows, time.monotonic()
        elif start:
            threading.Thread(target=self._refresh, name="trust-rows", daemon=True).start()
        return rows

    def _refresh(self) -> None:
        try:
            with self._reader.connection() as conn:
                rows = fetch_trust_by_group(
                    conn, since=trust_since(datetime.now(UTC)), by="utility"
                )
            with self._lock:
                self._rows, self._at = rows, time.monotonic()
        except Exception as exc:  # the pages keep the previous rows; the next refresh retries
            log.warning("data-trust rows not refreshed: %s", exc)
        finally:
            with self._lock:
                self._busy = False


def cached_trust_by_utility(
    cache: Any, reader: Reader, conn: psycopg.Connection, now: datetime
) -> list[tuple]:
    """The shared per-utility data-trust rows (``TrustRows``, one per dashboard process): the
    wall and the trust page show the very same figures."""
    rows: TrustRows = cache.get("trust-rows", math.inf, lambda: TrustRows(reader))
    return rows.get(conn, now)


def completeness_by_utility(rows: list[tuple]) -> dict[str, float]:
    """utility -> completeness from ``fetch_trust_by_group(by="utility")`` rows."""
    return {str(r[0]): float(r[7]) for r in rows if r[7] is not None}


def fetch_completeness(conn: psycopg.Connection, *, since: datetime) -> dict[str, float]:
    """Completeness per utility over [since, now): the same figure as the data-trust page's
    (``fetch_trust_by_group``, ingestion's one definition ``data_trust``; decision 0016).
    Readings are counted from the raw table, not the 1-hour rollup: the wall used to show the
    rollup's last complete hour against the trust page's last 60 minutes."""
    return completeness_by_utility(fetch_trust_by_group(conn, since=since, by="utility"))


def fetch_sensor_options(
    conn: psycopg.Connection, *, search: str = "", limit: int = 200
) -> list[tuple[str, str]]:
    """(sensor_id, name) pairs for a picker, matching ``search`` in id or name."""
    pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return [
        (r[0], r[1])
        for r in conn.execute(
            "SELECT sensor_id, name FROM sensors WHERE sensor_id ILIKE %s OR name ILIKE %s"
            " ORDER BY sensor_id LIMIT %s",
            (pattern, pattern, limit),
        )
    ]


def fetch_sensor_info(conn: psycopg.Connection, sensor_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        """
        SELECT s.sensor_id, s.name, s.utility, s.sensor_type, t.name_zh, t.name_en,
               d.name_zh, d.name_en, t.expected_interval_s, ST_X(s.geom), ST_Y(s.geom), s.status
        FROM sensors s JOIN sensor_types t ON t.type_id = s.sensor_type
        LEFT JOIN districts d ON d.adcode = s.district_adcode
        WHERE s.sensor_id = %s
        """,
        (sensor_id,),
    ).fetchone()
    if row is None:
        return None
    keys = [
        "sensor_id",
        "name",
        "utility",
        "sensor_type",
        "type_zh",
        "type_en",
        "district_zh",
        "district_en",
        "expected_interval_s",
        "lon",
        "lat",
        "status",
    ]
    info = dict(zip(keys, row, strict=True))
    info["limits"] = {
        q: (lo, hi)
        for q, lo, hi in conn.execute(
            "SELECT quantity, alarm_low, alarm_high FROM sensor_type_quantities WHERE type_id = %s",
            (info["sensor_type"],),
        )
    }
    info["latest"] = {
        q: (ts, v)
        for q, ts, v in conn.execute(
            "SELECT quantity, ts, value FROM sensor_latest WHERE sensor_id = %s", (sensor_id,)
        )
    }
    return info


def fetch_readings(
    conn: psycopg.Connection,
    sensor_id: str,
    quantity: str,
    start: datetime,
    end: datetime,
    *,
    source: str = "raw",
    bucket_s: int = 0,
) -> list[Reading]:
    """Readings of one sensor and quantity in [start, end).

    ``source`` is ``raw``, ``1m`` or ``1h`` (the rollups ``readings_1m``/``readings_1h``). With
    ``bucket_s`` > 0 raw readings are averaged into buckets of that many seconds [s] on the
    server so a long window stays small.
    """
    params = {"s": sensor_id, "q": quantity, "t0": start, "t1": end, "b": bucket_s}
    if source in ("1m", "1h"):
        table = "readings_1m" if source == "1m" else "readings_1h"
        sql = (
            f"SELECT bucket, value_mean, value_min, value_max FROM {table}"  # noqa: S608 - table from a constant
            " WHERE sensor_id = %(s)s AND quantity = %(q)s AND bucket >= %(t0)s AND bucket < %(t1)s"
            " ORDER BY bucket"
        )
    elif bucket_s > 0:
        sql = (
            "SELECT date_bin(make_interval(secs => %(b)s), ts, TIMESTAMPTZ '2000-01-01') AS b,"
            " avg(value), min(value), max(value) FROM readings"
            " WHERE sensor_id = %(s)s AND quantity = %(q)s AND ts >= %(t0)s AND ts < %(t1)s"
            " GROUP BY b ORDER BY b"
        )
    else:
        sql = (
            "SELECT ts, value, NULL, NULL FROM readings"
            " WHERE sensor_id = %(s)s AND quantity = %(q)s AND ts >= %(t0)s AND ts < %(t1)s"
            " ORDER BY ts"
        )
    return [Reading(r[0], float(r[1]), r[2], r[3]) for r in conn.execute(sql, params)]


# -- alerts ---------------------------------------------------------------------------------
# the columns of model.AlertRow, in its order
_ALERT_ROWS_SQL = """
    SELECT a.alert_id, a.raised_at, a.severity, a.state, a.sensor_id,
           COALESCE(s.name, a.sensor_id), a.utility, a.quantity, d.name_zh, d.name_en,
           a.value, a.limit_value, a.message_zh, a.message_en,
           a.assigned_to, a.shelved_until, a.shelved_by, a.shelve_reason
    FROM alerts a
    LEFT JOIN sensors s ON s.sensor_id = a.sensor_id
    LEFT JOIN districts d ON d.adcode = s.district_adcode
"""


def fetch_open_alerts(
    conn: psycopg.Connection,
    *,
    limit: int = 200,
    severities: list[str] | None = None,
    sensor_id: str | None = None,
    include_closed: bool = False,
    shelved: bool | None = False,
) -> list[AlertRow]:
    """Alerts that need someone, most severe first, then newest first.

    ``shelved=False`` (the default: what needs attention) leaves out alerts shelved until a
    time still ahead; ``True`` gives only those, soonest expiry first (the console's shelved
    section); ``None`` both (a sensor's own history)."""
    severity_order = (
        "CASE a.severity WHEN 'critical' THEN 4 WHEN 'major' THEN 3"
        " WHEN 'warning' THEN 2 ELSE 1 END DESC, a.raised_at DESC"
    )
    order = f"a.shelved_until, {severity_order}" if shelved else severity_order
    rows = conn.execute(
        f"""
        {_ALERT_ROWS_SQL}
        WHERE (%(all)s OR a.state <> ALL(%(closed)s))
          AND (%(sev)s::text[] IS NULL OR a.severity = ANY(%(sev)s))
          AND (%(sid)s::text IS NULL OR a.sensor_id = %(sid)s)
          AND (%(shelved)s::boolean IS NULL OR {_SHELVED} = %(shelved)s)
        ORDER BY {order}
        LIMIT %(limit)s
        """,
        {
            "closed": list(CLOSED_ALERT_STATES),
            "sev": severities,
            "sid": sensor_id,
            "limit": limit,
            "all": include_closed,
            "shelved": shelved,
        },
    ).fetchall()
    return [AlertRow(*r) for r in rows]


def fetch_recent_alerts(conn: psycopg.Connection, *, limit: int = 10) -> list[AlertRow]:
    """The newest alerts raised, whatever their state (the wall's ticker)."""
    rows = conn.execute(
        f"{_ALERT_ROWS_SQL} ORDER BY a.raised_at DESC LIMIT %s",
        (limit,),
    ).fetchall()
    return [AlertRow(*r) for r in rows]


def fetch_alert_trend(
    conn: psycopg.Connection, *, hours: int = 6, bucket_s: int = 600
) -> list[tuple[datetime, str, int]]:
    """Alerts raised per ``bucket_s`` [s] and utility over the last ``hours``."""
    return conn.execute(
        "SELECT date_bin(make_interval(secs => %(b)s), raised_at, TIMESTAMPTZ '2000-01-01'),"
        " utility, count(*) FROM alerts"
        " WHERE raised_at >= now() - make_interval(hours => %(h)s)"
        " GROUP BY 1, 2 ORDER BY 1",
        {"b": bucket_s, "h": hours},
    ).fetchall()


# -- data trust ------------------------------------------------------------------------------
def fetch_quarantine_by_reason(
    conn: psycopg.Connection, *, hours: int = 24
) -> list[tuple[str, int, datetime]]:
    """(reason, count, newest) of quarantined messages over the last ``hours``."""
    return conn.execute(
        "SELECT reason, count(*), max(received_at) FROM quarantine"
        " WHERE received_at >= now() - make_interval(hours => %s)"
        " GROUP BY reason ORDER BY count(*) DESC",
        (hours,),
    ).fetchall()


def fetch_recent_quarantine(
    conn: psycopg.Connection, *, limit: int = 20
) -> list[tuple[datetime, str, str, str | None, str]]:
    """(received_at, reason, topic, sensor_id, detail) of the newest quarantined messages."""
    return conn.execute(
        "SELECT received_at, reason, topic, sensor_id, left(detail, 200) FROM quarantine"
        " ORDER BY received_at DESC LIMIT %s",
        (limit,),
    ).fetchall()


def fetch_silent_sensors(conn: psycopg.Connection, *, limit: int = 500) -> list[SensorPoint]:
    """The sensors not reporting (``model.NOT_REPORTING``: the state rule above), those quiet
    longest first: the same sensors the wall's online figure leaves out."""
    rows = conn.execute(
        f"SELECT * FROM ({_SENSOR_STATE_SQL}) st WHERE state = ANY(%(quiet)s)"  # noqa: S608
        " ORDER BY last_ts NULLS FIRST, sensor_id LIMIT %(limit)s",
        {
            "closed": list(CLOSED_ALERT_STATES),
            "factor": SILENT_FACTOR,
            "quiet": list(NOT_REPORTING),
            "limit": limit,
        },
    ).fetchall()
    return [SensorPoint(*r) for r in rows]


def fetch_source_losses(conn: psycopg.Connection) -> list[SourceLossView]:
    """The open source losses (alerts/source_loss.py), the broadest and oldest first."""
    rows = conn.execute(
        "SELECT x.loss_id, x.scope, x.scope_value, d.name_zh, d.name_en,"
        " cardinality(x.sensors), x.group_size, x.since, x.back_at, x.acknowledged_by,"
        " x.acknowledged_at FROM source_losses x LEFT JOIN districts d"
        "   ON x.scope = 'district' AND d.adcode::text = x.scope_value"
        " WHERE x.state = 'open'"
        " ORDER BY array_position(ARRAY['stream', 'utility', 'district'], x.scope), x.since"
    ).fetchall()
    return [SourceLossView(*r) for r in rows]


def fetch_ingest_silence(conn: psycopg.Connection) -> tuple[datetime, float] | None:
    """(the newest heartbeat of any ingestion worker, its age [s]), or None when no worker has
    ever run against this database (ingestion writes one every 5 s, or with every commit)."""
    row = conn.execute(
        "SELECT max(heartbeat_at), extract(epoch FROM now() - max(heartbeat_at))"
        " FROM ingest_workers"
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], float(row[1])


def fetch_alert_timeline(
    conn: psycopg.Connection, alert_id: int, *, limit: int = 50
) -> list[tuple[datetime, str, str, str, str, str | None]]:
    """(at, actor, action, to_state, comment, comment in English) of one alert's audited
    actions, newest first (``alert_audit`` of alerts.lifecycle; the engine writes its comment in
    Chinese and keeps the English in the row's detail, people write theirs in one language)."""
    return conn.execute(
        "SELECT at, actor, action, to_state, comment, detail ->> 'message_en' FROM alert_audit"
        " WHERE alert_id = %s ORDER BY audit_id DESC LIMIT %s",
        (alert_id, limit),
    ).fetchall()


TRUST_COLUMNS = (
    "sensor_id",
    "quantity",
    "expected",
    "received",
    "completeness",
    "seq_gaps",
    "duplicates",
    "late",
    "lag_p50_s",
    "silent_s",
)


def fetch_sensor_trust(
    conn: psycopg.Connection, sensor_id: str, since: datetime
) -> list[dict[str, Any]]:
    """Data-trust figures of one sensor per quantity since ``since`` (ingestion's
    ``data_trust`` function)."""
    rows = conn.execute(
        "SELECT sensor_id, quantity, expected, received, completeness, seq_gaps, duplicates,"
        " late, lag_p50_s, silent_s FROM data_trust(%s, now()) WHERE sensor_id = %s"
        " ORDER BY quantity",
        (since, sensor_id),
    ).fetchall()
    return [dict(zip(TRUST_COLUMNS, r, strict=True)) for r in rows]


def fetch_trust_by_group(
    conn: psycopg.Connection, *, since: datetime, by: str = "utility"
) -> list[tuple[Any, ...]]:
    """(group, expected, received, seq_gaps, duplicates, late, silent sensors, completeness)
    per utility or district over [since, now), from ``data_trust`` (migration 0073): the
    completeness is ``sum(counted) / sum(expected)`` (ingestion.trust.group_completeness), the
    one the wall shows too."""
    group = {"utility": "t.utility", "district": "COALESCE(d.name_zh, '—')"}[by]
    order = {
        "utility": "array_position(ARRAY['water', 'power', 'gas'], t.utility)",
        "district": "min(s.district_adcode)",
    }[by]
    rows = conn.execute(
        f"""
        SELECT {group} AS g, sum(t.expected), sum(t.received), sum(t.seq_gaps),
               sum(t.duplicates), sum(t.late),
               count(DISTINCT t.sensor_id) FILTER (WHERE t.silent_s IS NULL
                   OR t.silent_s > 3 * st.expected_interval_s),
               sum(t.counted)
        FROM data_trust(%s, now()) t
        JOIN sensors s ON s.sensor_id = t.sensor_id
        JOIN sensor_types st ON st.type_id = s.sensor_type
        LEFT JOIN districts d ON d.adcode = s.district_adcode
        GROUP BY 1 ORDER BY {order}
        """,  # noqa: S608 - group and order are constants
        (since,),
    ).fetchall()
    return [(*r[:7], group_completeness(r[7], r[1])) for r in rows]


NETWORK_TABLES = {"water": "water_pipes", "gas": "gas_pipes", "power": "power_lines"}


def fetch_network_lines(
    conn: psycopg.Connection,
    utility: str,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    simplify_deg: float = 0.0001,
    limit: int = 20_000,
) -> tuple[list[float | None], list[float | None], int]:
    """One utility's pipes or lines as x/y arrays separated by None (one Plotly trace), and
    how many features there were (none until the GIS layer is loaded)."""
    table = NETWORK_TABLES[utility]
    rows = conn.execute(
        f"SELECT ST_AsGeoJSON(ST_Simplify(geom, %(tol)s), 5) FROM {table}"  # noqa: S608 - constant
        " WHERE %(x0)s::float8 IS NULL OR geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326)"
        " LIMIT %(limit)s",
        {
            "tol": simplify_deg,
            "x0": bbox[0] if bbox else None,
            "y0": bbox[1] if bbox else None,
            "x1": bbox[2] if bbox else None,
            "y1": bbox[3] if bbox else None,
            "limit": limit,
        },
    ).fetchall()
    xs, ys, _px, _py = geometry_xy(json.loads(text) for (text,) in rows)
    return xs, ys, len(rows)


def fetch_facilities(
    conn: psycopg.Connection, *, limit: int = 5000
) -> list[tuple[str, str, str, str, float, float]]:
    """(facility_id, kind, name_zh, name_en, lon, lat) of the facilities layer."""
    return [
        (r[0], r[1], r[2], r[3], float(r[4]), float(r[5]))
        for r in conn.execute(
            "SELECT facility_id, kind, name_zh, name_en, ST_X(geom), ST_Y(geom) FROM facilities"
            " ORDER BY facility_id LIMIT %s",
            (limit,),
        )
    ]


def fetch_alert_asset(conn: psycopg.Connection, alert_id: int) -> tuple[str, str] | None:
    """(network, link id) when the alert's sensor sits on a pipe or line of a loaded network."""
    row = conn.execute(
        "SELECT s.utility, s.asset_id FROM alerts a JOIN sensors s ON s.sensor_id = a.sensor_id"
        " WHERE a.alert_id = %s AND s.asset_id IS NOT NULL",
        (alert_id,),
    ).fetchone()
    if row is None or row[0] not in NETWORK_TABLES:
        return None
    table = NETWORK_TABLES[row[0]]
    key = "line_id" if row[0] == "power" else "pipe_id"
    found = conn.execute(
        f"SELECT 1 FROM {table} WHERE {key} = %s",  # noqa: S608 - table and key are constants
        (row[1],),
    ).fetchone()
    return (row[0], row[1]) if found else None


def fetch_alert_location(conn: psycopg.Connection, alert_id: int) -> tuple[float, float] | None:
    """(lon, lat) [degrees] of the alert's sensor."""
    row = conn.execute(
        "SELECT ST_X(s.geom), ST_Y(s.geom) FROM alerts a JOIN sensors s USING (sensor_id)"
        " WHERE a.alert_id = %s",
        (alert_id,),
    ).fetchone()
    return (float(row[0]), float(row[1])) if row else None


def fetch_interruptions(conn: psycopg.Connection) -> dict[str, tuple[int, int, int]]:
    """Per utility: (open incidents, customers, people without supply) from the incidents the
    alert engine groups and enriches (migrations 0024/0027). Customers and people count only
    for open incidents, and not for one whose alerts have all cleared: it is waiting out its
    quiet window with supply back (the wall used to show 145 customers beside zero open
    alerts). No open incident: no row, and the wall shows 0 (decision 0016)."""
    return {
        r[0]: (int(r[1]), int(r[2]), int(r[3]))
        for r in conn.execute(
            "SELECT i.utility, count(*),"
            " COALESCE(sum((i.affected ->> 'customers_without_supply')::numeric)"
            "   FILTER (WHERE NOT x.recovered), 0),"
            " COALESCE(sum((i.affected ->> 'population_without_supply')::numeric)"
            "   FILTER (WHERE NOT x.recovered), 0)"
            " FROM incidents i CROSS JOIN LATERAL (SELECT"
            "   EXISTS (SELECT 1 FROM alerts a WHERE a.incident_id = i.incident_id)"
            "   AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.incident_id = i.incident_id"
            "                   AND a.cleared_at IS NULL) AS recovered) x"
            " WHERE i.state = 'open' GROUP BY i.utility"
        )
    }


def fetch_alert_explanation(conn: psycopg.Connection, alert_id: int) -> tuple[str, str] | None:
    """(zh, en) explanation of the incident the alert belongs to, if the engine grouped it."""
    row = conn.execute(
        "SELECT i.explanation_zh, i.explanation_en FROM alerts a"
        " JOIN incidents i ON i.incident_id = a.incident_id WHERE a.alert_id = %s",
        (alert_id,),
    ).fetchone()
    return (row[0], row[1]) if row else None


# -- incidents: the wall's headline and the console's facts ----------------------------------
# open incidents with alerts that need someone, worst first
_OPEN_INCIDENTS_SQL = f"""
    SELECT i.kind, i.utility, i.severity, d.name_zh, d.name_en, x.n
    FROM incidents i LEFT JOIN districts d ON d.adcode = i.district_adcode
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM alerts a WHERE a.incident_id = i.incident_id
          AND a.state <> ALL(%(closed)s) AND NOT {_SHELVED}) x
    WHERE i.state = 'open' AND x.n > 0
    ORDER BY array_position(%(order)s, i.severity), i.last_alert_at DESC
    LIMIT 50
"""  # noqa: S608 (a constant fragment, no input)
_UNGROUPED_SQL = f"""
    SELECT count(*) FROM alerts a WHERE a.incident_id IS NULL
      AND a.state <> ALL(%(closed)s) AND NOT {_SHELVED}
"""  # noqa: S608


def fetch_attention(conn: psycopg.Connection) -> tuple[list[WallIncident], int]:
    """(open incidents that need someone, open alerts in no incident yet)."""
    args = {"closed": list(CLOSED_ALERT_STATES), "order": list(SEVERITIES)}
    incidents = [WallIncident(*r) for r in conn.execute(_OPEN_INCIDENTS_SQL, args)]
    row = conn.execute(_UNGROUPED_SQL, args).fetchone()
    return incidents, int(row[0]) if row else 0


# the alert's incident and its members
_INCIDENT_FACTS_SQL = """
    SELECT i.utility, i.kind, i.likely_location, i.affected, i.explanation_zh,
           i.explanation_en, m.n, m.n_open, m.n_sensors,
           COALESCE(ST_Length(ST_LongestLine(m.points, m.points)::geography), 0)
    FROM alerts a0 JOIN incidents i ON i.incident_id = a0.incident_id
    CROSS JOIN LATERAL (
        SELECT count(*) AS n, count(*) FILTER (WHERE a.state <> ALL(%(closed)s)) AS n_open,
               count(DISTINCT a.sensor_id) AS n_sensors, ST_Collect(s.geom) AS points
        FROM alerts a LEFT JOIN sensors s ON s.sensor_id = a.sensor_id
        WHERE a.incident_id = i.incident_id) m
    WHERE a0.alert_id = %(alert)s
"""


def fetch_incident_facts(conn: psycopg.Connection, alert_id: int) -> IncidentFacts | None:
    row = conn.execute(
        _INCIDENT_FACTS_SQL, {"alert": alert_id, "closed": list(CLOSED_ALERT_STATES)}
    ).fetchone()
    if row is None:
        return None
    utility, kind, location, affected, zh, en, n, n_open, n_sensors, extent = row
    return IncidentFacts(
        utility, kind, location, dict(affected or {}), (zh, en), n, n_open, n_sensors, extent
    )


def fetch_alert_district(conn: psycopg.Connection, alert_id: int) -> int | None:
    """The district code of the alert's sensor."""
    row = conn.execute(
        "SELECT s.district_adcode FROM alerts a JOIN sensors s USING (sensor_id)"
        " WHERE a.alert_id = %s",
        (alert_id,),
    ).fetchone()
    return row[0] if row else None
