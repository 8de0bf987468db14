"""History older than the live window: `cityops readings import FILE.csv`.

Live ingestion refuses readings older than ``CITYOPS_ACCEPT_PAST_S`` (30 days by default): a
device replaying last year is a fault. A utility's archive is not, so it has its own door:

* a CSV with columns ``sensor_id, quantity, ts, value[, seq]``; ``sensor_id`` is the catalogue
  id or the utility's own (``sensors.external_id``); ``ts`` ISO 8601 with a zone (or Unix
  seconds); ``value`` in the quantity's canonical unit (sensors/quantities.py);
* the whole file is checked first (known sensor, a quantity of its type, a finite value within
  the quantity's physical limits, a time neither in the future nor past the retention horizon,
  one value per sensor, quantity and time): any error is reported with its line and nothing is
  stored;
* then written through ingestion's own store (``ingestion.store.write_batch``: the same COPY,
  rollups and ``sensor_latest`` as live readings), in batches. A reading already stored (an
  earlier run, a live reading) is skipped, so a re-run stores nothing twice;
* every row carries ``QUALITY_HISTORY`` (bit 2 of ``readings.quality``), with ``QUALITY_SUSPECT``
  (bit 1) when outside its type's plausible band as live readings are: data-trust counts such
  rows as backfilled, never late (migration 0073, ``ingestion.trust``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from ingestion.classify import QUALITY_SUSPECT, Row, compute_plausible_band
from ingestion.trust import QUALITY_HISTORY
from sensors.quantities import QUANTITIES

BATCH_ROWS = 20_000  # rows per write_batch transaction
MAX_ERRORS_SHOWN = 20
REQUIRED = ("sensor_id", "quantity", "ts", "value")


class HistoryError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class HistorySensor:
    sensor_id: str
    sensor_type: str


@dataclass(frozen=True, slots=True)
class HistoryReport:
    rows: int  # readings in the file (after exact repeats inside it)
    stored: int  # newly stored
    skipped: int  # already stored before
    first: datetime | None
    last: datetime | None


def _parse_ts(text: str) -> int:
    """Epoch microseconds of an ISO 8601 time with a zone, or of Unix seconds."""
    t = text.strip()
    try:
        return round(float(t) * 1_000_000)
    except ValueError:
        pass
    d = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if d.tzinfo is None:
        raise ValueError(f"time {t!r} has no zone (write +08:00 or Z)")
    return round(d.timestamp() * 1_000_000)


def parse_history_csv(
    text: str,
    sensors: Mapping[str, HistorySensor],
    bands: Mapping[str, Mapping[str, tuple[float, float]]],
    *,
    now_us: int,
    oldest_us: int,
) -> list[Row]:
    """Rows to store (pure). ``sensors`` maps catalogue and external ids to the sensor;
    ``bands`` the plausible band per sensor type and quantity; times after ``now_us`` (plus five
    minutes of skew) or before ``oldest_us`` (the retention horizon) are errors. Raises
    ``HistoryError`` naming every bad line (the first ``MAX_ERRORS_SHOWN``)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        raise HistoryError(f"missing columns: {', '.join(missing)} (need {', '.join(REQUIRED)})")
    errors: list[str] = []
    by_key: dict[tuple[str, str, int], Row] = {}
    for line, rec in enumerate(reader, start=2):
        try:
            row = _row(rec, sensors, bands, now_us=now_us, oldest_us=oldest_us)
        except (ValueError, TypeError) as exc:
            errors.append(f"line {line}: {exc}")
            continue
        key = (row[0], row[1], row[2])
        other = by_key.get(key)
        if other is not None and other[3] != row[3]:
            errors.append(f"line {line}: a second value for {key[0]} {key[1]} at {rec['ts']}")
            continue
        by_key[key] = row  # an exact repeat inside the file is one reading
    if errors:
        more = len(errors) - MAX_ERRORS_SHOWN
        shown = errors[:MAX_ERRORS_SHOWN] + ([f"... and {more} more"] if more > 0 else [])
        raise HistoryError("nothing stored:\n" + "\n".join(shown))
    return sorted(by_key.values())


def _row(
    rec: Mapping[str, str | None],
    sensors: Mapping[str, HistorySensor],
    bands: Mapping[str, Mapping[str, tuple[float, float]]],
    *,
    now_us: int,
    oldest_us: int,
) -> Row:
    sid = (rec.get("sensor_id") or "").strip()
    sensor = sensors.get(sid)
    if sensor is None:
        raise ValueError(f"unknown sensor {sid!r}")
    quantity = (rec.get("quantity") or "").strip()
    band = bands.get(sensor.sensor_type, {}).get(quantity)
    if band is None:
        raise ValueError(f"{sid}: {quantity!r} is not a quantity of {sensor.sensor_type}")
    value = float(rec.get("value") or "nan")
    q = QUANTITIES[quantity]
    if not math.isfinite(value) or not q.physical_min <= value <= q.physical_max:
        raise ValueError(
            f"{sid}: {quantity} {rec.get('value')!r} is not a number within"
            f" [{q.physical_min}, {q.physical_max}] {q.unit}"
        )
    ts_us = _parse_ts(rec.get("ts") or "")
    if ts_us > now_us + 300_000_000:
        raise ValueError(f"{sid}: time {rec.get('ts')} is in the future")
    if ts_us < oldest_us:
        raise ValueError(f"{sid}: time {rec.get('ts')} is older than the retention horizon")
    seq_text = (rec.get("seq") or "").strip()
    seq = int(seq_text) if seq_text else None
    quality = QUALITY_HISTORY | (0 if band[0] <= value <= band[1] else QUALITY_SUSPECT)
    return (sensor.sensor_id, quantity, ts_us, value, seq, quality)


# --- I/O: the catalogue, what is already stored, and the writes through ingestion's store ----


def read_history_catalogue(
    conn: psycopg.Connection,
) -> tuple[dict[str, HistorySensor], dict[str, dict[str, tuple[float, float]]]]:
    """Every sensor (active or retired: history predates retirement) by catalogue id and by the
    utility's id, and the plausible bands per type and quantity."""
    sensors: dict[str, HistorySensor] = {}
    for sid, ext, stype in conn.execute(
        "SELECT sensor_id, external_id, sensor_type FROM sensors ORDER BY sensor_id"
    ):
        s = HistorySensor(sid, stype)
        sensors[sid] = s
        if ext:
            sensors.setdefault(ext, s)
    bands: dict[str, dict[str, tuple[float, float]]] = {}
    for type_id, quantity, lo, hi in conn.execute(
        "SELECT type_id, quantity, alarm_low, alarm_high FROM sensor_type_quantities"
    ):
        bands.setdefault(type_id, {})[quantity] = compute_plausible_band(quantity, lo, hi)
    return sensors, bands


def read_stored(conn: psycopg.Connection, rows: Sequence[Row]) -> set[int]:
    """Indexes of ``rows`` whose (sensor, quantity, time) is already in ``readings``."""
    if not rows:
        return set()
    found = conn.execute(
        """
        SELECT x.i FROM unnest(%s::text[], %s::text[], %s::int8[], %s::int8[]) AS x(sid, q, t, i)
        JOIN readings r ON r.sensor_id = x.sid AND r.quantity = x.q
         AND r.ts = timestamptz 'epoch' + x.t * interval '1 microsecond'
        """,
        (
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            list(range(len(rows))),
        ),
    ).fetchall()
    return {int(i) for (i,) in found}


def _batches(rows: Sequence[Row], n: int) -> Iterable[Sequence[Row]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def import_history(url: str, text: str, *, retention_days: int) -> HistoryReport:
    """Check a history CSV whole, then store it through ``ingestion.store`` (see the module)."""
    from datetime import timedelta

    from cityops.kernel.db import connect
    from cityops.kernel.migrate import ensure_partitions
    from ingestion.store import IngestConnection, write_batch, write_followup

    now = datetime.now(UTC)
    now_us = round(now.timestamp() * 1_000_000)
    oldest_us = (
        round((now - timedelta(days=retention_days)).timestamp() * 1_000_000)
        if retention_days > 0
        else -(2**62)
    )
    with connect(url) as conn:
        sensors, bands = read_history_catalogue(conn)
    rows = parse_history_csv(text, sensors, bands, now_us=now_us, oldest_us=oldest_us)
    if not rows:
        return HistoryReport(0, 0, 0, None, None)
    first_us = min(r[2] for r in rows)
    first = datetime.fromtimestamp(first_us / 1e6, UTC)
    last = datetime.fromtimestamp(max(r[2] for r in rows) / 1e6, UTC)
    ic = IngestConnection(url, "history-import")
    stored = skipped = 0
    try:
        # day partitions back to the oldest row (plain PostgreSQL; a no-op on TimescaleDB)
        ensure_partitions(ic.conn, past=now - first + timedelta(days=1), future=timedelta(days=1))
        for batch in _batches(rows, BATCH_ROWS):
            known = read_stored(ic.conn, batch)
            fresh = [r for i, r in enumerate(batch) if i not in known]
            skipped += len(known)
            if not fresh:
                ic.conn.commit()
                continue
            # received "now": the row is history by its quality bit, not by a faked arrival
            result = write_batch(ic, fresh, [now_us] * len(fresh), [])
            write_followup(ic, result)
            stored += result.inserted
            skipped += len(fresh) - result.inserted
    finally:
        ic.close()
    return HistoryReport(len(rows), stored, skipped, first, last)
