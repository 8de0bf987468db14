"""The pure stages of ingestion, in the order a message goes through them:

    receive (cityops.kernel.mqtt)  -> decode  -> batch (ingestion.batching)  -> validate
    -> reused sequence numbers (ingestion.seqreuse, store.read_seq_conflicts; quarantine_reused)
    -> write (ingestion.store)     -> acknowledge (cityops.kernel.mqtt)

``decode`` turns one received message into an ``Item`` (decoded readings or a rejection),
``validate`` checks a batch's items against the catalogue and splits them into rows to store
and rows to quarantine. No broker, database, clock or environment here: the callers pass the
time and the catalogue.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ingestion.batching import Item
from ingestion.classify import (
    Catalogue,
    Decoded,
    Rejection,
    Row,
    check_catalogue,
    decode_item,
    sanitize_text,
)
from ingestion.seqreuse import Conflict, describe_conflict
from sensors.payload import TimeWindow

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    """A rejected message as the quarantine keeps it."""

    received_us: int
    topic: str
    payload: bytes
    reason: str
    detail: str
    sensor_id: str | None
    payload_size: int | None = None  # the real size when ``payload`` is not the whole payload


@dataclass(slots=True)
class Validated:
    """A batch after ``validate``: rows to store (``received_us[i]`` belongs to ``rows[i]``),
    rows to quarantine, and what the metrics and logs report of it."""

    rows: list[Row] = field(default_factory=list)
    received_us: list[int] = field(default_factory=list)
    rejects: list[QuarantineRow] = field(default_factory=list)
    by_reason: dict[str, int] = field(default_factory=dict)
    oldest_received_us: int | None = None
    newest_ts_us: int = 0
    defects: list[str] = field(default_factory=list)  # catalogue checks that raised
    # per stored message: (its index in the batch, its first row, the row after its last)
    spans: list[tuple[int, int, int]] = field(default_factory=list)


def decode(
    message: M,
    topic: str,
    payload: bytes,
    retain: bool,
    received_us: int,
    now_us: int,
    window: TimeWindow,
    *,
    decoder: Callable[[str, bytes, bool, int, TimeWindow], Decoded | Rejection] = decode_item,
) -> tuple[Item[M], str | None]:
    """One received message as an ``Item``, and the traceback when the decoder itself failed:
    a defect of the decoder, not of the message, keeps the message (quarantined as
    ``internal_error``, so it can be replayed once fixed) and lets the stream go on."""
    defect = None
    try:
        outcome: Decoded | Rejection = decoder(topic, payload, retain, now_us, window)
    except Exception as exc:
        outcome = Rejection("internal_error", sanitize_text(f"{type(exc).__name__}: {exc}", 300))
        defect = traceback.format_exc(limit=6)[-2000:]
    return Item(message, topic, payload, received_us, outcome), defect


def unknown_sensors(items: Sequence[Item[M]], catalogue: Catalogue) -> set[str]:
    """Sensors a batch names that the catalogue does not hold (registered since it was read)."""
    return {
        it.outcome.sensor_id
        for it in items
        if isinstance(it.outcome, Decoded) and it.outcome.sensor_id not in catalogue.sensors
    }


def validate(items: Sequence[Item[M]], catalogue: Catalogue) -> Validated:
    """Each decoded message checked against the catalogue; every message ends up as rows to
    store or as one quarantine row with its reason."""
    out = Validated()
    for n, it in enumerate(items):
        if out.oldest_received_us is None or it.received_us < out.oldest_received_us:
            out.oldest_received_us = it.received_us
        checked = _check(it.outcome, catalogue, out)
        if isinstance(checked, Rejection):
            out.rejects.append(
                QuarantineRow(
                    it.received_us,
                    sanitize_text(it.topic, 300),
                    it.payload,
                    checked.reason,
                    sanitize_text(checked.detail),
                    checked.sensor_id,
                )
            )
            out.by_reason[checked.reason] = out.by_reason.get(checked.reason, 0) + 1
            continue
        start = len(out.rows)
        out.rows.extend(checked)
        out.spans.append((n, start, start + len(checked)))
        out.received_us.extend([it.received_us] * len(checked))
        out.newest_ts_us = max(out.newest_ts_us, *(r[2] for r in checked))
    return out


def quarantine_reused(
    items: Sequence[Item[M]], checked: Validated, conflicts: Mapping[int, Conflict]
) -> Validated:
    """``checked`` with every message holding a row that reuses a sequence number
    (``conflicts``, by row index) moved to the quarantine as ``seq_reused``, whole: the detail
    names the first such row, its earlier timestamp and value and its new ones."""
    out = Validated(
        rejects=list(checked.rejects),
        by_reason=dict(checked.by_reason),
        oldest_received_us=checked.oldest_received_us,
        newest_ts_us=checked.newest_ts_us,
        defects=checked.defects,
    )
    rows, received = checked.rows, checked.received_us
    for n, start, end in checked.spans:
        hit = next((i for i in range(start, end) if i in conflicts), None)
        if hit is None:
            first = len(out.rows)
            out.rows.extend(rows[start:end])
            out.received_us.extend(received[start:end])
            out.spans.append((n, first, len(out.rows)))
            continue
        it = items[n]
        out.rejects.append(
            QuarantineRow(
                it.received_us,
                sanitize_text(it.topic, 300),
                it.payload,
                "seq_reused",
                sanitize_text(describe_conflict(rows[hit], conflicts[hit])),
                rows[hit][0],
            )
        )
        out.by_reason["seq_reused"] = out.by_reason.get("seq_reused", 0) + 1
    return out


def _check(
    outcome: Decoded | Rejection, catalogue: Catalogue, out: Validated
) -> list[Row] | Rejection:
    if not isinstance(outcome, Decoded):
        return outcome
    try:
        return check_catalogue(outcome, catalogue)
    except Exception as exc:  # a defect: quarantine this message, not the batch
        detail = f"{type(exc).__name__}: {exc}"
        out.defects.append(detail)
        return Rejection("internal_error", detail, outcome.sensor_id)


def minimal_quarantine_row(item: Item[M]) -> QuarantineRow:
    """The least the quarantine can keep of a message the database refused even there: no
    payload (its real size kept), an ASCII topic, no sensor id."""
    return QuarantineRow(
        item.received_us,
        item.topic.encode("ascii", "backslashreplace").decode("ascii")[:200],
        b"",
        "store_refused",
        "database refused the message and its quarantine record: payload not kept",
        None,
        payload_size=len(item.payload),
    )
