"""``alert_audit``: every action on an alert, append-only (a trigger refuses changes) and
SM3 hash-chained by the kernel's one chaining code (``cityops.kernel.crypto.append_chained``),
so that an edit, removal or reordering behind the trigger's back shows
(``verify_audit_chain``, ``cityops audit verify``; decisions 0021, 0072)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from cityops.kernel.crypto import (
    ChainBroken,
    ChainedTable,
    append_chained,
    lock_chain,
    verify_chain,
)

SYSTEM_USER = "system"  # the engine's actor name
# the columns hashed, in this order; rows chained before 0072 hash the same way (SHA-256 where
# OpenSSL lacked SM3, recorded in hash_alg)
AUDIT_CHAIN = ChainedTable(
    table="alert_audit",
    id_column="audit_id",
    columns=("alert_id", "at", "actor", "action", "from_state", "to_state", "comment", "detail"),
    lock_key=0x0C17_A0D1,
)
AuditChainError = ChainBroken


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


def lock_audit(conn: psycopg.Connection) -> None:
    """The audit chain's transaction lock. Every transaction that changes alerts takes it first,
    before any row lock, so that the engine, escalation and staff actions always lock in the
    same order (audit chain, then rows) and cannot deadlock each other."""
    lock_chain(conn, AUDIT_CHAIN)


def append_audit(conn: psycopg.Connection, entries: Sequence[AuditEntry]) -> None:
    """Audit rows chained in order, in one INSERT, inside the caller's transaction (which holds
    ``lock_audit`` already, so nobody appends in between)."""
    append_chained(
        conn,
        AUDIT_CHAIN,
        [
            (
                e.alert_id,
                e.at,
                e.actor,
                e.action,
                e.from_state,
                e.to_state,
                e.comment,
                Jsonb(e.detail),
            )
            for e in entries
        ],
    )


def read_audit(conn: psycopg.Connection, alert_id: int) -> list[AuditEntry]:
    rows = conn.execute(
        "SELECT audit_id, alert_id, at, actor, action, from_state, to_state, comment, detail"
        " FROM alert_audit WHERE alert_id = %s ORDER BY audit_id",
        (alert_id,),
    ).fetchall()
    return [AuditEntry(*r) for r in rows]


def verify_audit_chain(conn: psycopg.Connection) -> int:
    """Recompute the hash chain over the whole audit log; returns the rows checked, or raises
    ``AuditChainError`` naming the first entry edited, removed before or moved."""
    return verify_chain(conn, AUDIT_CHAIN)
