"""One evaluated batch into the database, in one transaction: alert rows, their audit rows,
their outbox events, the detector clocks and (when given) the metered areas' learnt balance
state (a few statements per batch, not per change: an alert storm of a hundred changes is one
round trip per step). No SQL of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import msgspec
import psycopg

from alerts.balance import AreaState
from alerts.engine import AlertChange, Evaluation
from alerts.events import OutboxRow, build_alert_event, change_row, unit_of
from alerts.stores import alert_rows, balance_state, detector_state, outbox
from alerts.stores.audit import SYSTEM_USER, AuditEntry, append_audit, lock_audit
from alerts.stores.grouping import group_raised
from alerts.stores.outbox import OutboxEvent
from alerts.stores.times import ts_from_us
from sensors.topics import alert_topic

Applied = tuple[int, AlertChange, str, str]  # (alert_id, change, state before, state after)


def write_evaluation(
    conn: psycopg.Connection,
    evaluation: Evaluation,
    *,
    group: bool = True,
    areas: Mapping[str, AreaState] | None = None,
) -> list[OutboxEvent]:
    """Store one evaluated batch in one transaction; returns the events to publish.

    ``group``: also put each raised alert into its incident in the same transaction. The engine
    passes False and has the grouper thread do it once the events are out, so that the incident
    queries are not on the alert's path to the people it pages.

    A raise that finds the condition already active (unique index ``alerts_one_active_idx``)
    and a clear that finds nothing active change nothing and publish nothing: replays are
    harmless. A ``grown`` change (an active alert's cause grew) escalates that alert, audited,
    with an ``escalated`` event; none when nothing is active.

    ``areas``: the metered areas' balance state to keep (the service passes it with every batch
    that changes an area alert, and on a timer), in the same transaction as the alerts it
    explains.
    """
    events: list[OutboxEvent] = []
    with conn.transaction():
        if evaluation.changes:
            lock_audit(conn)  # before any row lock (see lock_audit)
            plain = [c for c in evaluation.changes if c.event != "grown"]
            applied = apply_changes(conn, plain)
            if group:
                group_raised(conn, [(a, ch) for a, ch, _, _ in applied if ch.event == "raised"])
            rows = [change_row(a, ch) for a, ch, _, _ in applied]
            rows += record_growth(conn, [c for c in evaluation.changes if c.event == "grown"])
            events = outbox.queue_events(conn, rows)
        detector_state.write_last_evaluated(
            conn, evaluation.states, durable=bool(evaluation.changes) or bool(areas)
        )
        if areas:
            balance_state.write_balance_states(conn, areas)
    return events


def record_growth(conn: psycopg.Connection, grown: Sequence[AlertChange]) -> list[OutboxRow]:
    """Each grown cause on its active alert: escalation level + 1 and severity as the change
    says, an ``escalate`` audit row carrying the before/after message, an ``escalated`` event.
    Call with the audit lock held."""
    if not grown:
        return []
    ids = balance_state.read_active_alert_ids(
        conn, [(c.sensor_id, c.quantity, c.kind) for c in grown]
    )
    entries: list[AuditEntry] = []
    rows: list[OutboxRow] = []
    for ch in grown:
        alert_id = ids.get((ch.sensor_id, ch.quantity, ch.kind))
        if alert_id is None:  # cleared meanwhile (or a replay): nothing to record on
            continue
        life = alert_rows.read_alert_life(conn, alert_id, for_update=True)
        at = ts_from_us(ch.ts_us)
        level = life.escalation_level + 1
        alert_rows.write_life(conn, replace(life, escalation_level=level, escalated_at=at))
        alert_rows.write_grown(conn, alert_id, ch.severity, ch.value)
        state = life.state.value
        detail = {
            "value": ch.value,
            "severity": ch.severity,
            "message_en": ch.message_en,
            "level": level,
        }
        entries.append(
            AuditEntry(
                0, alert_id, at, SYSTEM_USER, "escalate", state, state, ch.message_zh, detail
            )
        )
        event = build_alert_event(alert_id, replace(ch, event="raised"), unit_of(ch.quantity))
        event = msgspec.structs.replace(event, event="escalated", level=level)
        payload = msgspec.json.encode(event)
        rows.append((alert_id, "escalated", alert_topic(ch.utility, ch.sensor_id), payload))
    append_audit(conn, entries)
    return rows


def rounds(changes: Sequence[AlertChange]) -> list[list[AlertChange]]:
    """Split the changes, in order, into rounds where each (sensor, quantity, kind) appears at
    most once: a sensor swinging across a limit raises, clears and raises again in one batch,
    and each step must see the one before it."""
    out: list[list[AlertChange]] = []
    last_round: dict[tuple[str, str, str], int] = {}
    for ch in changes:
        key = (ch.sensor_id, ch.quantity, ch.kind)
        i = last_round.get(key, -1) + 1
        if i == len(out):
            out.append([])
        out[i].append(ch)
        last_round[key] = i
    return out


def apply_changes(conn: psycopg.Connection, changes: Sequence[AlertChange]) -> list[Applied]:
    """Raise and clear alerts in bulk, round by round, then audit them (chained, one INSERT).
    Returns what was applied, in the changes' order."""
    position = {id(ch): i for i, ch in enumerate(changes)}
    done: dict[int, Applied] = {}
    for rnd in rounds(changes):
        raised = alert_rows.insert_raises(conn, [c for c in rnd if c.event == "raised"])
        alert_rows.mark_maintenance(conn, raised)
        for alert_id, ch in raised:
            done[position[id(ch)]] = (alert_id, ch, "", "open")
        clears = [c for c in rnd if c.event == "cleared"]
        for alert_id, ch, before, after in alert_rows.apply_clears(conn, clears, SYSTEM_USER):
            done[position[id(ch)]] = (alert_id, ch, before, after)
    applied = [done[i] for i in sorted(done)]
    append_audit(conn, [audit_entry(*a) for a in applied])
    return applied


def audit_entry(alert_id: int, ch: AlertChange, before: str, after: str) -> AuditEntry:
    """The engine's audit row of a raise or clear; the console shows the comment: Chinese
    first, English kept in the detail."""
    if ch.event == "raised":
        detail = {"value": ch.value, "severity": ch.severity, "message_en": ch.message_en}
    else:
        detail = {"value": ch.value, "message_en": ch.message_en}
    action = "raise" if ch.event == "raised" else "clear"
    at = ts_from_us(ch.ts_us)
    return AuditEntry(0, alert_id, at, SYSTEM_USER, action, before, after, ch.message_zh, detail)
