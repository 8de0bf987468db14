"""Reused sequence numbers: the pure half of the check (docs/ingestion.md, decision 0015).

A reading with a sequence number ``seq`` is **reused** (reason ``seq_reused``) when a reading of
the same sensor and quantity with the same ``seq`` is already stored, or earlier in the same
batch, with a different timestamp or value, and that earlier timestamp lies within
``SEQ_REUSE_WINDOW_US`` of the new one. An exact repeat (same seq, ts and value) is a duplicate,
stored once as before.

Cheap on the hot path because almost every reading **moves its sensor forward**: its timestamp
is later than the newest one known for its sensor and quantity (``sensor_latest``, then the
batch's own earlier readings) and its ``seq`` is greater, or ``0`` (a device restarts counting
at 0 after a reboot, and a counter that wraps does the same). A reading that moves forward is
never a reuse within its sensor's current run, so it is not looked up; only the others
(late, out-of-order, redelivered, replayed or cloned readings) are checked against the
``readings`` table (``ingestion.store.read_seq_conflicts``). A reboot is therefore told apart by
the order in which its readings arrive: 0, 1, 2 ... with newer timestamps each move forward.

Limits (decision 0015): a replay of ``seq`` 0 with a new timestamp looks like a reboot and is
stored; a late reading of a device whose previous run used the same numbers less than
``SEQ_REUSE_WINDOW_US`` before is quarantined (a device rebooting within the window and
delivering out of order); two copies committed by different workers within the same moment
(neither sees the other's uncommitted batch) are both stored; a forger who picks a fresh
sequence number is not detected by this check at all.

No broker, database, clock or environment here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from ingestion.classify import Row

SEQ_REUSE_WINDOW_US = 3600 * 1_000_000  # an earlier use of a seq counts within 1 h of the new ts

# the newest stored reading per (sensor_id, quantity): (ts [epoch us], seq or -1 when it had none)
Latest = Mapping[tuple[str, str], tuple[int, int]]

# a row found reused: what was there before, (ts [epoch us], value, "stored" | "batch")
Conflict = tuple[int, float, str]


def batch_keys(rows: Sequence[Row]) -> set[tuple[str, str]]:
    """The (sensor_id, quantity) pairs of the rows that carry a sequence number."""
    return {(r[0], r[1]) for r in rows if r[4] is not None}


def find_seq_candidates(rows: Sequence[Row], latest: Latest) -> list[int]:
    """Indices of the rows with a ``seq`` that do not move their sensor forward (see the module
    docstring): only these can reuse a number, and only these are looked up."""
    newest = dict(latest)
    out: list[int] = []
    for i, (sid, q, ts, _value, seq, _quality) in enumerate(rows):
        if seq is None:
            continue
        key = (sid, q)
        last = newest.get(key)
        if last is None or (ts > last[0] and (seq > last[1] or seq == 0)):
            newest[key] = (ts, seq)
        else:
            out.append(i)
    return out


def find_batch_conflicts(rows: Sequence[Row], candidates: Sequence[int]) -> dict[int, Conflict]:
    """Candidates that reuse a number used earlier in the same batch (in arrival order) with
    another timestamp or value within the window."""
    if not candidates:
        return {}
    wanted = {(rows[i][0], rows[i][1], rows[i][4]) for i in candidates}
    first: dict[tuple[str, str, int | None], int] = {}
    out: dict[int, Conflict] = {}
    pending = set(candidates)
    for i, r in enumerate(rows):
        k = (r[0], r[1], r[4])
        if k not in wanted:
            continue
        j = first.setdefault(k, i)
        if j == i or i not in pending:
            continue
        e = rows[j]
        if (e[2], e[3]) != (r[2], r[3]) and abs(e[2] - r[2]) <= SEQ_REUSE_WINDOW_US:
            out[i] = (e[2], e[3], "batch")
    return out


def describe_conflict(row: Row, before: Conflict) -> str:
    """The quarantine detail of a reused number: the earlier and the new timestamp and value."""
    ts_before, value_before, where = before
    return (
        f"quantity {row[1]} seq {row[4]}: {where} ts {_iso(ts_before)} value {value_before!r};"
        f" this message ts {_iso(row[2])} value {row[3]!r}"
    )


def _iso(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat(timespec="microseconds")
