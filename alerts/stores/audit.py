"""``alert_audit``: every action on an alert, append-only (a trigger refuses changes) and
hash-chained (SM3 where the platform has it, else SHA-256), so that an edit behind the
trigger's back shows (``verify_audit_chain``; decision 0021)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

SYSTEM_USER = "system"  # the engine's actor name
_AUDIT_LOCK = 0x0C17_A0D1
_HASH_ALG = "sm3" if "sm3" in hashlib.algorithms_available else "sha256"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    audit_id: int  # 0 until stored
    alert_id: int
    at: datetime
    actor: str
    action: str
    from_state: str
    to_state: str
    comment: str
    detail: dict[str, Any]


class AuditChainError(RuntimeError):
    pass


def audit_hash(alg: str, prev: str, e: AuditEntry) -> str:
    """The entry's link in the chain: hash of the previous link and the entry's content."""
    body = json.dumps(
        [
            e.alert_id,
            e.at.astimezone(UTC).isoformat(),
            e.actor,
            e.action,
            e.from_state,
            e.to_state,
            e.comment,
            e.detail,
        ],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.new(alg, (prev + body).encode()).hexdigest()


def lock_audit(conn: psycopg.Connection) -> None:
    """The audit chain's transaction lock. Every transaction that changes alerts takes it first,
    before any row lock, so that the engine, escalation and staff actions always lock in the
    same order (audit chain, then rows) and cannot deadlock each other."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_AUDIT_LOCK,))


def append_audit(conn: psycopg.Connection, entries: Sequence[AuditEntry]) -> None:
    """Audit rows chained in order, in one INSERT. The caller holds ``lock_audit`` (in the
    same transaction), so nobody appends in between."""
    if not entries:
        return
    row = conn.execute("SELECT hash FROM alert_audit ORDER BY audit_id DESC LIMIT 1").fetchone()
    prev = row[0] if row else ""
    prevs, hashes = [], []
    for e in entries:
        prevs.append(prev)
        prev = audit_hash(_HASH_ALG, prev, e)
        hashes.append(prev)
    conn.execute(
        """
        INSERT INTO alert_audit (alert_id, at, actor, action, from_state, to_state, comment,
                                 detail, hash_alg, prev_hash, hash)
        SELECT u.alert_id, u.at, u.actor, u.action, u.from_state, u.to_state, u.comment,
               u.detail, %s, u.prev_hash, u.hash
        FROM unnest(%s::bigint[], %s::timestamptz[], %s::text[], %s::text[], %s::text[],
                    %s::text[], %s::text[], %s::jsonb[], %s::text[], %s::text[])
             WITH ORDINALITY AS u(alert_id, at, actor, action, from_state, to_state, comment,
                                  detail, prev_hash, hash, n)
        ORDER BY u.n
        """,
        (
            _HASH_ALG,
            [e.alert_id for e in entries],
            [e.at for e in entries],
            [e.actor for e in entries],
            [e.action for e in entries],
            [e.from_state for e in entries],
            [e.to_state for e in entries],
            [e.comment for e in entries],
            [Jsonb(e.detail) for e in entries],
            prevs,
            hashes,
        ),
    )


def read_audit(conn: psycopg.Connection, alert_id: int) -> list[AuditEntry]:
    rows = conn.execute(
        "SELECT audit_id, alert_id, at, actor, action, from_state, to_state, comment, detail"
        " FROM alert_audit WHERE alert_id = %s ORDER BY audit_id",
        (alert_id,),
    ).fetchall()
    return [AuditEntry(*r) for r in rows]


def verify_audit_chain(conn: psycopg.Connection) -> int:
    """Recompute the hash chain over the whole audit log; returns the rows checked."""
    prev = ""
    n = 0
    for row in conn.execute(
        "SELECT audit_id, alert_id, at, actor, action, from_state, to_state, comment, detail,"
        " hash_alg, prev_hash, hash FROM alert_audit ORDER BY audit_id"
    ):
        entry = AuditEntry(*row[:9])
        alg, prev_hash, digest = row[9:]
        if prev_hash != prev or audit_hash(alg, prev, entry) != digest:
            raise AuditChainError(f"audit row {entry.audit_id} does not match its hash chain")
        prev = digest
        n += 1
    return n
