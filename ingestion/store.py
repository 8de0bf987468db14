"""PostgreSQL adapter of ingestion: all SQL for readings, rollups, quarantine and bookkeeping.

One batch is one transaction, its rows sent as one binary COPY built in bulk (no per-row Python
datetime, no text parsing on the server). Two ways to store it (docs/ingestion.md):

* **direct** (TimescaleDB): COPY straight into the ``readings`` hypertable; the continuous
  aggregates keep the rollups, and ``sensor_latest`` gets the batch's newest reading per sensor
  and quantity, computed here. A batch holding a reading that is already stored (a redelivery
  after a crash, a repeated message) fails on the unique key and is written again the staged way,
  so each reading is still stored once;
* **staged** (plain PostgreSQL, and that fallback): COPY into a temporary staging table, then one
  statement that inserts the readings (``ON CONFLICT DO NOTHING``) and, from the rows actually
  inserted, keeps ``sensor_latest`` (only when newer), the 1-minute and 1-hour rollups (plain
  PostgreSQL only) and the duplicate counts.

Before either, in the same transaction, ``read_seq_conflicts`` finds the rows that reuse a
sequence number (``ingestion.seqreuse``; their messages are quarantined instead). Quarantined
messages and possible gaps go in the same transaction. What every writer locks, the
``sensor_latest`` rows of a directly written batch and the worker's heartbeat row, is written
after the commit in a short transaction of its own (``write_followup``, without waiting for the
disk: it only derives from what is committed, and moves forward only), so that two writers do
not wait for each other's COMMIT. A crash between the two leaves a sensor's latest value one
batch behind until its next reading.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg

from cityops.kernel.db import connect
from cityops.kernel.migrate import ensure_partitions
from ingestion.classify import Catalogue, Row, SensorEntry, compute_plausible_band
from ingestion.seqreuse import (
    SEQ_REUSE_WINDOW_US,
    Conflict,
    batch_keys,
    find_batch_conflicts,
    find_seq_candidates,
)
from ingestion.stages import QuarantineRow

QUARANTINE_PAYLOAD_MAX = 4096  # bytes of a rejected payload kept (its full size is recorded)

# the staging table has the layout of ``readings``, so one binary COPY builder serves both ways
_STAGE_DDL = """
CREATE TEMP TABLE IF NOT EXISTS ingest_stage (
    sensor_id   text NOT NULL,
    quantity    text NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision NOT NULL,
    seq         bigint,
    quality     smallint NOT NULL,
    received_at timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""

_COLUMNS = "(sensor_id, quantity, ts, value, seq, quality, received_at)"
COPY_DIRECT = f"COPY readings {_COLUMNS} FROM STDIN (FORMAT BINARY)"
COPY_STAGE = f"COPY ingest_stage {_COLUMNS} FROM STDIN (FORMAT BINARY)"

_STAGED = """
    s AS (SELECT * FROM ingest_stage),
    ins AS (
        INSERT INTO readings (sensor_id, quantity, ts, value, seq, quality, received_at)
        SELECT sensor_id, quantity, ts, value, seq, quality, received_at FROM s
        ORDER BY sensor_id, quantity, ts
        ON CONFLICT DO NOTHING
        RETURNING sensor_id, quantity, ts, value, seq, received_at
    ),
    latest AS (
        INSERT INTO sensor_latest AS l (sensor_id, quantity, ts, value, seq, received_at)
        SELECT DISTINCT ON (sensor_id, quantity) sensor_id, quantity, ts, value, seq, received_at
        FROM ins ORDER BY sensor_id, quantity, ts DESC
        ON CONFLICT (sensor_id, quantity) DO UPDATE SET
            ts = EXCLUDED.ts, value = EXCLUDED.value, seq = EXCLUDED.seq,
            received_at = EXCLUDED.received_at
        WHERE l.ts < EXCLUDED.ts
        RETURNING 1
    ),
    dups AS (
        INSERT INTO ingest_duplicates_1h AS d (sensor_id, quantity, bucket, duplicates)
        SELECT g.sensor_id, g.quantity, g.bucket, g.n - coalesce(i.n, 0)
        FROM (SELECT sensor_id, quantity, date_trunc('hour', ts) AS bucket, count(*) AS n
              FROM s GROUP BY 1, 2, 3) g
        LEFT JOIN (SELECT sensor_id, quantity, date_trunc('hour', ts) AS bucket, count(*) AS n
                   FROM ins GROUP BY 1, 2, 3) i USING (sensor_id, quantity, bucket)
        WHERE g.n > coalesce(i.n, 0)
          AND (SELECT count(*) FROM ins) < (SELECT count(*) FROM s)  -- skip when none repeated
        ORDER BY 1, 2, 3
        ON CONFLICT (sensor_id, quantity, bucket) DO UPDATE SET
            duplicates = d.duplicates + EXCLUDED.duplicates
        RETURNING 1
    )"""

_ROLLUP = """
    {name} AS (
        INSERT INTO {table} AS r
            (sensor_id, quantity, bucket, value_min, value_max, value_sum, n, value_last, last_ts)
        SELECT sensor_id, quantity, date_trunc('{unit}', ts), min(value), max(value), sum(value),
               count(*), (array_agg(value ORDER BY ts DESC))[1], max(ts)
        FROM ins GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (sensor_id, quantity, bucket) DO UPDATE SET
            value_min = least(r.value_min, EXCLUDED.value_min),
            value_max = greatest(r.value_max, EXCLUDED.value_max),
            value_sum = r.value_sum + EXCLUDED.value_sum,
            n = r.n + EXCLUDED.n,
            value_last = CASE WHEN EXCLUDED.last_ts > r.last_ts
                              THEN EXCLUDED.value_last ELSE r.value_last END,
            last_ts = greatest(r.last_ts, EXCLUDED.last_ts)
        RETURNING 1
    )"""

_TAIL = """
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM s)
"""

WRITE_PLAIN = (
    "WITH"
    + _STAGED
    + ","
    + _ROLLUP.format(name="m1", table="readings_1m", unit="minute")
    + ","
    + _ROLLUP.format(name="h1", table="readings_1h", unit="hour")
    + _TAIL
)
WRITE_TIMESCALE = "WITH" + _STAGED + _TAIL  # continuous aggregates keep the rollups

# the newest reading per sensor and quantity of a batch written directly, merged when newer;
# arrays of plain numbers (epoch microseconds), ordered by key so that writers lock alike
WRITE_LATEST = """
INSERT INTO sensor_latest AS l (sensor_id, quantity, ts, value, seq, received_at)
SELECT sid, q, timestamptz 'epoch' + t * interval '1 microsecond', v, sq,
       timestamptz 'epoch' + r * interval '1 microsecond'
FROM unnest(%s::text[], %s::text[], %s::int8[], %s::float8[], %s::int8[], %s::int8[])
     AS x(sid, q, t, v, sq, r)
ORDER BY sid, q
ON CONFLICT (sensor_id, quantity) DO UPDATE SET
    ts = EXCLUDED.ts, value = EXCLUDED.value, seq = EXCLUDED.seq, received_at = EXCLUDED.received_at
WHERE l.ts < EXCLUDED.ts
"""


LatestColumns = tuple[list[str], list[str], list[int], list[float], list[int | None], list[int]]


@dataclass(frozen=True, slots=True)
class WriteResult:
    staged: int  # readings in the batch
    inserted: int  # readings newly stored (the rest were already there)
    quarantined: int
    latest: LatestColumns | None = None  # still to merge into sensor_latest (write_followup)


class IngestConnection:
    """One database session of a worker: its staging table and its storage mode."""

    def __init__(self, url: str, client_id: str) -> None:
        self.conn = connect(url, application_name=f"cityops-ingest:{client_id}"[:63])
        self.client_id = client_id
        self.conn.execute(_STAGE_DDL)
        row = self.conn.execute("SELECT value FROM cityops_meta WHERE key = 'storage'").fetchone()
        self.storage = row[0] if row else "plain"
        self.conn.commit()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    @property
    def broken(self) -> bool:
        return self.conn.closed or self.conn.broken

    def rollback(self) -> None:
        """Roll back after a refused statement; a failing rollback means a lost connection
        (raised as ``OperationalError``, which the callers treat as such)."""
        try:
            self.conn.rollback()
        except psycopg.Error as exc:
            raise psycopg.OperationalError(f"rollback failed: {exc}") from exc


def read_catalogue(conn: psycopg.Connection) -> Catalogue:
    """Sensors and, per sensor type, its quantities with their plausible bands."""
    sensors = {
        sid: SensorEntry(utility, stype, status == "active")
        for sid, utility, stype, status in conn.execute(
            "SELECT sensor_id, utility, sensor_type, status FROM sensors"
        )
    }
    bands: dict[str, dict[str, tuple[float, float]]] = {}
    for type_id, quantity, lo, hi in conn.execute(
        "SELECT type_id, quantity, alarm_low, alarm_high FROM sensor_type_quantities"
    ):
        bands.setdefault(type_id, {})[quantity] = compute_plausible_band(quantity, lo, hi)
    conn.commit()
    return Catalogue(sensors, bands)


def read_sensors(conn: psycopg.Connection, sensor_ids: Sequence[str]) -> dict[str, SensorEntry]:
    """The catalogue entries of some sensors (those a batch names that the cache lacks)."""
    out = {
        sid: SensorEntry(utility, stype, status == "active")
        for sid, utility, stype, status in conn.execute(
            "SELECT sensor_id, utility, sensor_type, status FROM sensors WHERE sensor_id = ANY(%s)",
            (list(sensor_ids),),
        )
    }
    conn.commit()
    return out


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in Unix microseconds: PostgreSQL's epoch
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # for bounds passed as datetimes (constants)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = b"\xff\xff"
# per row after the two text fields: ts, value, seq (or NULL), quality, received_at
_TAIL_SEQ = struct.Struct(">iqidiqihiq")
_TAIL_NOSEQ = struct.Struct(">iqidiihiq")


def build_copy_binary(rows: Sequence[Row], received_us: Sequence[int]) -> bytes:
    """The rows in PostgreSQL's binary COPY format, columns as ``_COLUMNS``: timestamps as
    microseconds since 2000-01-01, floats and integers big-endian. Built in bulk: the two text
    fields of each (sensor, quantity) are encoded once per batch."""
    heads: dict[tuple[str, str], bytes] = {}
    out = [_COPY_HEADER]
    append = out.append
    pack_seq, pack_noseq = _TAIL_SEQ.pack, _TAIL_NOSEQ.pack
    epoch = _PG_EPOCH_US
    for (sid, q, ts, v, seq, qual), rcv in zip(rows, received_us, strict=True):
        head = heads.get((sid, q))
        if head is None:
            bs, bq = sid.encode(), q.encode()
            head = heads[(sid, q)] = struct.pack(
                f">hi{len(bs)}si{len(bq)}s", 7, len(bs), bs, len(bq), bq
            )
        append(head)
        if seq is None:
            append(pack_noseq(8, ts - epoch, 8, v, -1, 2, qual, 8, rcv - epoch))
        else:
            append(pack_seq(8, ts - epoch, 8, v, 8, seq, 2, qual, 8, rcv - epoch))
    append(_COPY_TRAILER)
    return b"".join(out)


def compute_latest(rows: Sequence[Row], received_us: Sequence[int]) -> LatestColumns:
    """The newest row per (sensor, quantity) of a batch, as the columns of ``WRITE_LATEST``."""
    newest: dict[tuple[str, str], int] = {}
    for i, row in enumerate(rows):
        key = (row[0], row[1])
        j = newest.get(key)
        if j is None or rows[j][2] < row[2]:
            newest[key] = i
    picked = [newest[k] for k in sorted(newest)]
    return (
        [rows[i][0] for i in picked],
        [rows[i][1] for i in picked],
        [rows[i][2] for i in picked],
        [rows[i][3] for i in picked],
        [rows[i][4] for i in picked],
        [received_us[i] for i in picked],
    )


# the newest stored reading of some (sensor, quantity) pairs: what "moves forward" is judged by
READ_LATEST_SEQ = """
SELECT l.sensor_id, l.quantity, (extract(epoch FROM l.ts) * 1000000)::int8, coalesce(l.seq, -1)
FROM unnest(%s::text[], %s::text[]) AS k(sid, q)
JOIN sensor_latest l ON l.sensor_id = k.sid AND l.quantity = k.q
"""

# candidates (rows that do not move forward) against ``readings``: the stored readings of the
# sensor and quantity with the same seq within the window, one range scan of the primary key
# each; a conflict is one whose ts or value differs, unless the very reading is stored already
# (an exact repeat: a redelivery). The constant bounds let the planner skip the chunks or
# partitions outside the candidates' window.
READ_SEQ_CONFLICTS = """
SELECT c.i, (extract(epoch FROM x.other_ts) * 1000000)::int8, x.other_value
FROM unnest(%(i)s::int4[], %(sid)s::text[], %(q)s::text[], %(seq)s::int8[], %(t)s::int8[],
            %(v)s::float8[]) AS c(i, sid, q, sq, t, v)
CROSS JOIN LATERAL (
    SELECT bool_or(r.ts = y.ts AND r.value = c.v) AS exact,
           (array_agg(r.ts ORDER BY r.ts) FILTER (WHERE r.ts <> y.ts OR r.value <> c.v))[1]
               AS other_ts,
           (array_agg(r.value ORDER BY r.ts) FILTER (WHERE r.ts <> y.ts OR r.value <> c.v))[1]
               AS other_value
    FROM (SELECT timestamptz 'epoch' + c.t * interval '1 microsecond' AS ts) y
    JOIN readings r ON r.sensor_id = c.sid AND r.quantity = c.q AND r.seq = c.sq
      AND r.ts >= %(lo)s AND r.ts <= %(hi)s
      AND r.ts >= y.ts - %(w)s * interval '1 microsecond'
      AND r.ts <= y.ts + %(w)s * interval '1 microsecond'
) x
WHERE x.other_ts IS NOT NULL AND NOT coalesce(x.exact, false)
"""


def read_seq_conflicts(ic: IngestConnection, rows: Sequence[Row]) -> dict[int, Conflict]:
    """The rows of a batch that reuse a sequence number (``ingestion.seqreuse``), each with the
    earlier reading it conflicts with. One keyed query on ``sensor_latest`` per batch with
    sequence numbers; a second one on ``readings`` only when some rows do not move forward.
    Runs in the batch's transaction, before ``write_batch``."""
    keys = batch_keys(rows)
    if not keys:
        return {}
    sids, qs = zip(*keys, strict=True)
    latest = {
        (sid, q): (ts, seq)
        for sid, q, ts, seq in ic.conn.execute(READ_LATEST_SEQ, (list(sids), list(qs)))
    }
    candidates = find_seq_candidates(rows, latest)
    if not candidates:
        return {}
    found = find_batch_conflicts(rows, candidates)
    rest = [i for i in candidates if i not in found]
    if rest:
        ts = [rows[i][2] for i in rest]
        w = SEQ_REUSE_WINDOW_US
        params = {
            "i": rest,
            "sid": [rows[i][0] for i in rest],
            "q": [rows[i][1] for i in rest],
            "seq": [rows[i][4] for i in rest],
            "t": ts,
            "v": [rows[i][3] for i in rest],
            "w": w,
            "lo": _UNIX_EPOCH + timedelta(microseconds=min(ts) - w),
            "hi": _UNIX_EPOCH + timedelta(microseconds=max(ts) + w),
        }
        for i, ts_us, value in ic.conn.execute(READ_SEQ_CONFLICTS, params):
            found[i] = (ts_us, value, "stored")
    return found


def write_batch(
    ic: IngestConnection,
    rows: Sequence[Row],
    received_us: Sequence[int],
    quarantine: Sequence[QuarantineRow],
    gaps: Sequence[tuple[str, str]] = (),
) -> WriteResult:
    """Store one batch in one transaction and commit. ``received_us[i]`` belongs to ``rows[i]``."""
    conn = ic.conn
    inserted = 0
    data = build_copy_binary(rows, received_us) if rows else b""
    with conn.cursor() as cur:
        direct = bool(rows) and ic.storage == "timescaledb"
        if direct:
            try:
                with cur.copy(COPY_DIRECT) as copy:
                    copy.write(data)
                inserted = len(rows)
            except psycopg.errors.UniqueViolation:
                # already stored (a redelivery, a repeat): the first statement of the
                # transaction failed, so nothing else is lost by starting it again, staged
                conn.rollback()
                direct = False
        if rows and not direct:
            with cur.copy(COPY_STAGE) as copy:
                copy.write(data)
            cur.execute(WRITE_TIMESCALE if ic.storage == "timescaledb" else WRITE_PLAIN)
            got = cur.fetchone()
            inserted = int(got[0]) if got else 0
        if quarantine:
            cur.executemany(
                "INSERT INTO quarantine"
                " (received_at, topic, payload, payload_size, reason, detail, sensor_id)"
                " VALUES (timestamptz 'epoch' + %s * interval '1 microsecond',"
                " %s, %s, %s, %s, %s, %s)",
                [
                    (
                        q.received_us,
                        q.topic,
                        q.payload[:QUARANTINE_PAYLOAD_MAX],
                        len(q.payload) if q.payload_size is None else q.payload_size,
                        q.reason,
                        q.detail,
                        q.sensor_id,
                    )
                    for q in quarantine
                ],
            )
        if gaps:
            cur.executemany(
                "INSERT INTO ingest_gaps (client_id, kind, detail) VALUES (%s, %s, %s)",
                [(ic.client_id, kind, detail) for kind, detail in gaps],
            )
    conn.commit()
    latest = compute_latest(rows, received_us) if direct else None
    return WriteResult(len(rows), inserted, len(quarantine), latest)


def write_followup(ic: IngestConnection, result: WriteResult) -> None:
    """After a batch's commit: its newest readings into ``sensor_latest`` (direct writes) and
    the worker's heartbeat and counts, in one transaction that does not wait for the disk."""
    conn = ic.conn
    with conn.cursor() as cur:
        cur.execute("SET LOCAL synchronous_commit = off")
        if result.latest is not None:
            cur.execute(WRITE_LATEST, result.latest)
        cur.execute(
            "UPDATE ingest_workers SET heartbeat_at = now(), last_commit_at = now(),"
            " state = 'running', stored = stored + %s, quarantined = quarantined + %s"
            " WHERE client_id = %s",
            (result.inserted, result.quarantined, ic.client_id),
        )
    conn.commit()


def register_worker(ic: IngestConnection) -> bool:
    """Record this worker as starting; True when the client id had committed before (so the
    broker should still hold a session for it)."""
    row = ic.conn.execute(
        "SELECT last_commit_at IS NOT NULL FROM ingest_workers WHERE client_id = %s",
        (ic.client_id,),
    ).fetchone()
    ic.conn.execute(
        "INSERT INTO ingest_workers (client_id, hostname, pid, state)"
        " VALUES (%s, %s, %s, 'starting')"
        " ON CONFLICT (client_id) DO UPDATE SET hostname = EXCLUDED.hostname,"
        " pid = EXCLUDED.pid, started_at = now(), heartbeat_at = now(), state = 'starting'",
        (ic.client_id, socket.gethostname(), os.getpid()),
    )
    ic.conn.commit()
    return bool(row and row[0])


def write_heartbeat(ic: IngestConnection, state: str | None = None) -> None:
    ic.conn.execute(
        "UPDATE ingest_workers SET heartbeat_at = now(), state = coalesce(%s, state)"
        " WHERE client_id = %s",
        (state, ic.client_id),
    )
    ic.conn.commit()


def write_partitions(ic: IngestConnection, past_s: float, future_s: float) -> int:
    """Create the readings partitions that accepted timestamps can fall in (plain PostgreSQL)."""
    return ensure_partitions(
        ic.conn,
        past=timedelta(seconds=past_s + 86_400),
        future=timedelta(seconds=future_s + 86_400),
    )


def apply_retention(ic: IngestConnection, keep_days: int) -> int:
    """Retention of readings older than ``keep_days`` (0: kept for ever). Plain PostgreSQL drops
    those day partitions now and returns how many; TimescaleDB sets its retention policy to that
    horizon and its job drops the chunks (returns 0). ``cityops_apply_retention`` on both."""
    row = ic.conn.execute("SELECT cityops_apply_retention(%s)", (keep_days,)).fetchone()
    ic.conn.commit()
    return int(row[0]) if row else 0


QUARANTINE_PURGE_CHUNK = 10_000  # rows deleted per transaction, so that no lock is held long


def drop_old_bookkeeping(ic: IngestConnection, keep_days: int) -> int:
    """Retention of the ingestion bookkeeping: possible gaps detected, and hourly duplicate
    counts, older than ``keep_days``. Returns the rows deleted."""
    n = 0
    for sql in (
        "DELETE FROM ingest_gaps WHERE detected_at < now() - make_interval(days => %s)",
        "DELETE FROM ingest_duplicates_1h WHERE bucket < now() - make_interval(days => %s)",
    ):
        n += max(0, ic.conn.execute(sql, (keep_days,)).rowcount)
    ic.conn.commit()
    return n


def drop_old_quarantine(ic: IngestConnection, keep_days: int) -> int:
    """Retention of the quarantine: delete rows received more than ``keep_days`` ago, in
    chunks of ``QUARANTINE_PURGE_CHUNK`` (index ``quarantine_received_idx``). Returns the count."""
    total = 0
    while True:
        cur = ic.conn.execute(
            "DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine"
            " WHERE received_at < now() - make_interval(days => %s) LIMIT %s)",
            (keep_days, QUARANTINE_PURGE_CHUNK),
        )
        n = cur.rowcount
        ic.conn.commit()
        total += max(0, n)
        if n < QUARANTINE_PURGE_CHUNK:
            return total
