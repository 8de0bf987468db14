"""Staff actions on an alert and escalation, each in one transaction: the alert's lifecycle
columns, its audit row and (escalation) its outbox event. The rules are pure
(alerts/lifecycle.py); no SQL of its own.

Plain functions taking a psycopg connection and the acting user. Each runs in
``conn.transaction()``: its own transaction on an idle or autocommit connection, a savepoint
inside the caller's. ``TransitionError`` is raised for refused actions and ``LookupError`` for
an unknown alert; nothing is written then. Role checks are the caller's.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import psycopg

from alerts.events import escalation_row
from alerts.lifecycle import (
    ESCALATION_POLICY,
    Act,
    Action,
    AlertLife,
    EscalationRule,
    escalation_level_due,
    transition,
)
from alerts.stores import alert_rows, outbox
from alerts.stores.audit import SYSTEM_USER, AuditEntry, append_audit, lock_audit
from alerts.stores.outbox import OutboxEvent
from alerts.stores.times import us_from_ts


def apply_action(
    conn: psycopg.Connection, alert_id: int, action: Action, *, now: datetime | None = None
) -> AlertLife:
    """Lock the alert, apply ``action`` through the state machine, store it and audit it."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        lock_audit(conn)  # before any row lock: one lock order everywhere, no deadlock
        before = alert_rows.read_alert_life(conn, alert_id, for_update=True)
        after = transition(before, action, now=now)
        if after != before:
            alert_rows.write_life(conn, after)
        detail: dict[str, Any] = {}
        if action.assignee:
            detail["assignee"] = action.assignee
        if action.until:
            detail["until"] = action.until.astimezone(UTC).isoformat()
        if action.reason:
            detail["reason"] = action.reason
        entry = AuditEntry(
            0,
            alert_id,
            now,
            action.user,
            action.act.value,
            before.state.value,
            after.state.value,
            action.comment,
            detail,
        )
        append_audit(conn, [entry])
    return after


class SimpleAction(Protocol):
    def __call__(
        self,
        conn: psycopg.Connection,
        alert_id: int,
        user: str,
        comment: str = "",
        *,
        now: datetime | None = None,
    ) -> AlertLife: ...


def _simple(act: Act) -> SimpleAction:
    """The action ``act`` by ``user`` with an optional comment: ``apply_action`` with no other
    field (acknowledge, start, unshelve, resolve, close, comment)."""

    def run(
        conn: psycopg.Connection,
        alert_id: int,
        user: str,
        comment: str = "",
        *,
        now: datetime | None = None,
    ) -> AlertLife:
        return apply_action(conn, alert_id, Action(act, user, comment), now=now)

    run.__name__ = run.__qualname__ = f"{act.name.lower()}_alert"
    return run


acknowledge_alert = _simple(Act.ACKNOWLEDGE)
start_alert = _simple(Act.START)
unshelve_alert = _simple(Act.UNSHELVE)
resolve_alert = _simple(Act.RESOLVE)
close_alert = _simple(Act.CLOSE)
comment_alert = _simple(Act.COMMENT)


def assign_alert(
    conn: psycopg.Connection,
    alert_id: int,
    user: str,
    assignee: str,
    comment: str = "",
    *,
    now: datetime | None = None,
) -> AlertLife:
    return apply_action(
        conn, alert_id, Action(Act.ASSIGN, user, comment, assignee=assignee), now=now
    )


def shelve_alert(
    conn: psycopg.Connection,
    alert_id: int,
    user: str,
    until: datetime,
    reason: str,
    comment: str = "",
    *,
    now: datetime | None = None,
) -> AlertLife:
    return apply_action(
        conn, alert_id, Action(Act.SHELVE, user, comment, until=until, reason=reason), now=now
    )


def escalate_due(
    conn: psycopg.Connection,
    *,
    now: datetime | None = None,
    policy: dict[str, EscalationRule] = ESCALATION_POLICY,
) -> list[OutboxEvent]:
    """Escalate every open alert not acknowledged in time (``escalation_level_due``): raise its
    level, audit it as the system, and queue an ``escalated`` event (MQTT and notifications)."""
    now = now or datetime.now(UTC)
    if not policy:
        return []
    # only alerts old enough for the shortest timeout, and only those still escalating: the
    # rest are not locked (the dashboard acknowledges them meanwhile)
    oldest = now - timedelta(seconds=min(r.ack_timeout_s for r in policy.values()))
    top = max(r.max_level for r in policy.values())
    entries: list[AuditEntry] = []
    rows: list[tuple[int, str, str, bytes]] = []
    with conn.transaction():
        lock_audit(conn)
        for life in alert_rows.lock_escalating(conn, oldest, top):
            level = escalation_level_due(life, now, policy)
            if level is None:
                continue
            alert_rows.write_life(conn, replace(life, escalation_level=level, escalated_at=now))
            state = life.state.value
            detail = {"level": level}
            entries.append(
                AuditEntry(0, life.alert_id, now, SYSTEM_USER, "escalate", state, state, "", detail)
            )
            raised = alert_rows.read_as_change(conn, life.alert_id)
            rows.append(escalation_row(life.alert_id, raised, us_from_ts(now), level))
        append_audit(conn, entries)
        return outbox.queue_events(conn, rows)
