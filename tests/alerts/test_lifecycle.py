"""The lifecycle state machine (pure) and through the store on the real database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.engine import AlertChange, Evaluation
from alerts.events import decode_alert_event
from alerts.lifecycle import (
    Act,
    Action,
    AlertLife,
    State,
    TransitionError,
    escalation_level_due,
    is_shelved,
    transition,
)
from alerts.stores import actions
from alerts.stores.alert_rows import read_alert_life
from alerts.stores.audit import AuditChainError, read_audit, verify_audit_chain
from alerts.stores.batch import write_evaluation
from alerts.stores.times import us_from_ts
from tests.alerts.conftest import add_sensors

T = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
OPEN = AlertLife(1, State.OPEN, "critical", raised_at=T)


def act(alert: AlertLife, a: Act, minutes: float = 1, **kw) -> AlertLife:
    return transition(
        alert, Action(a, kw.pop("user", "zhang.wei"), **kw), now=T + timedelta(minutes=minutes)
    )


def test_happy_path() -> None:
    a = act(OPEN, Act.ACKNOWLEDGE)
    assert (a.state, a.acknowledged_by, a.acknowledged_at) == (
        State.ACKNOWLEDGED,
        "zhang.wei",
        T + timedelta(minutes=1),
    )
    a = act(a, Act.ASSIGN, 2, assignee="crew-7")
    assert (a.state, a.assigned_to) == (State.ACKNOWLEDGED, "crew-7")
    a = act(a, Act.START, 3)
    assert a.state is State.IN_PROGRESS and a.started_at == T + timedelta(minutes=3)
    a = replace(a, cleared_at=T + timedelta(minutes=30))
    a = act(a, Act.RESOLVE, 40, user="li.na")
    assert (a.state, a.resolved_by) == (State.RESOLVED, "li.na")
    a = act(a, Act.CLOSE, 50)
    assert a.state is State.CLOSED and a.closed_at == T + timedelta(minutes=50)
    assert act(a, Act.COMMENT, 60, comment="root cause: valve") == a


def test_start_from_open_acknowledges_implicitly() -> None:
    a = act(OPEN, Act.START)
    assert a.state is State.IN_PROGRESS and a.acknowledged_by == "zhang.wei"


@pytest.mark.parametrize(
    ("state", "action", "reason"),
    [
        (State.ACKNOWLEDGED, Act.ACKNOWLEDGE, "not_open"),
        (State.IN_PROGRESS, Act.ACKNOWLEDGE, "not_open"),
        (State.RESOLVED, Act.ACKNOWLEDGE, "not_open"),
        (State.OPEN, Act.RESOLVE, "not_acknowledged"),
        (State.OPEN, Act.CLOSE, "not_resolved"),
        (State.IN_PROGRESS, Act.CLOSE, "not_resolved"),
        (State.RESOLVED, Act.RESOLVE, "not_resolvable"),
        (State.RESOLVED, Act.START, "not_startable"),
        (State.IN_PROGRESS, Act.START, "not_startable"),
        (State.RESOLVED, Act.ASSIGN, "not_active"),
        (State.RESOLVED, Act.SHELVE, "not_active"),
        (State.CLOSED, Act.ACKNOWLEDGE, "closed"),
        (State.CLOSED, Act.ASSIGN, "closed"),
        (State.CLOSED, Act.CLOSE, "closed"),
    ],
)
def test_forbidden_transitions(state: State, action: Act, reason: str) -> None:
    alert = replace(OPEN, state=state, cleared_at=T)
    with pytest.raises(TransitionError) as exc:
        act(alert, action, assignee="crew-1", until=T + timedelta(hours=1), reason="x")
    assert exc.value.reason == reason


def test_resolve_refused_while_condition_active_and_bad_inputs() -> None:
    a = act(OPEN, Act.ACKNOWLEDGE)
    with pytest.raises(TransitionError, match="condition_active"):
        act(a, Act.RESOLVE)
    for kw, reason in [
        ({"user": " "}, "no_user"),
        ({}, "no_assignee"),
    ]:
        with pytest.raises(TransitionError) as exc:
            act(a, Act.ASSIGN, **kw)
        assert exc.value.reason == reason
    with pytest.raises(TransitionError, match="empty_comment"):
        act(a, Act.COMMENT, comment="  ")


def test_shelve_with_expiry_and_reason() -> None:
    until = T + timedelta(hours=2)
    a = act(OPEN, Act.SHELVE, until=until, reason="planned maintenance 检修")
    assert (a.state, a.shelved_until, a.shelve_reason) == (
        State.OPEN,
        until,
        "planned maintenance 检修",
    )
    assert is_shelved(a, T + timedelta(hours=1)) and not is_shelved(a, until)
    a = act(a, Act.UNSHELVE, 10)
    assert a.shelved_until is None
    with pytest.raises(TransitionError, match="not_shelved"):
        act(a, Act.UNSHELVE)
    for kw, reason in [
        ({"until": until}, "no_reason"),
        ({"reason": "x"}, "bad_expiry"),
        ({"reason": "x", "until": T}, "bad_expiry"),
        ({"reason": "x", "until": T + timedelta(days=8)}, "expiry_too_far"),
    ]:
        with pytest.raises(TransitionError) as exc:
            act(OPEN, Act.SHELVE, **kw)
        assert exc.value.reason == reason


def test_escalation_policy() -> None:
    # critical: 5 min to acknowledge, then every 5 min, at most level 3
    assert escalation_level_due(OPEN, T + timedelta(minutes=4, seconds=59)) is None
    assert escalation_level_due(OPEN, T + timedelta(minutes=5)) == 1
    assert escalation_level_due(replace(OPEN, escalation_level=1), T + timedelta(minutes=9)) is None
    assert escalation_level_due(replace(OPEN, escalation_level=1), T + timedelta(minutes=10)) == 2
    assert escalation_level_due(OPEN, T + timedelta(hours=5)) == 3
    assert escalation_level_due(replace(OPEN, escalation_level=3), T + timedelta(hours=5)) is None
    acked = act(OPEN, Act.ACKNOWLEDGE)
    assert escalation_level_due(acked, T + timedelta(hours=1)) is None
    assert escalation_level_due(replace(OPEN, severity="info"), T + timedelta(days=1)) is None
    shelved = replace(OPEN, shelved_until=T + timedelta(hours=1))
    assert escalation_level_due(shelved, T + timedelta(minutes=30)) is None
    # after the shelf expires, the clock starts again from the expiry
    assert escalation_level_due(shelved, T + timedelta(minutes=62)) is None
    assert escalation_level_due(shelved, T + timedelta(minutes=65)) == 1
    # raised from replayed old readings: the clock starts when cityops created the alert
    replayed = replace(OPEN, created_at=T + timedelta(hours=2))
    assert escalation_level_due(replayed, T + timedelta(hours=2, minutes=4)) is None
    assert escalation_level_due(replayed, T + timedelta(hours=2, minutes=5)) == 1


# -- through the stores --------------------------------------------------------------------------


def _raise(conn: psycopg.Connection, sensor: str, ts: datetime, severity: str = "critical") -> int:
    ch = AlertChange(
        "raised",
        sensor,
        "gas",
        "gas_concentration",
        "threshold_high",
        severity,
        35.0,
        20.0,
        us_from_ts(ts),
        "zh",
        "en",
    )
    events = write_evaluation(conn, Evaluation((ch,), {}))
    # as if cityops had raised it at the reading's time (the escalation clock's start)
    conn.execute(
        "UPDATE alerts SET created_at = raised_at WHERE alert_id = %s", (events[0].alert_id,)
    )
    return events[0].alert_id


def _clear(conn: psycopg.Connection, sensor: str, ts: datetime) -> None:
    ch = AlertChange(
        "cleared",
        sensor,
        "gas",
        "gas_concentration",
        "threshold_high",
        "critical",
        3.0,
        20.0,
        us_from_ts(ts),
        "zh",
        "en",
    )
    write_evaluation(conn, Evaluation((ch,), {}))


def test_store_actions_are_applied_and_audited(db_url: str) -> None:
    add_sensors(db_url, [("gd-1", "gas", "gas_detector")])
    with psycopg.connect(db_url, autocommit=True) as conn:
        aid = _raise(conn, "gd-1", T)
        actions.acknowledge_alert(conn, aid, "zhang.wei", "on my way", now=T + timedelta(minutes=1))
        actions.assign_alert(conn, aid, "zhang.wei", "crew-7", now=T + timedelta(minutes=2))
        actions.shelve_alert(
            conn,
            aid,
            "zhang.wei",
            T + timedelta(hours=1),
            "detector being recalibrated",
            now=T + timedelta(minutes=3),
        )
        with pytest.raises(TransitionError, match="condition_active"):
            actions.resolve_alert(conn, aid, "zhang.wei", now=T + timedelta(minutes=4))
        with pytest.raises(LookupError):
            actions.acknowledge_alert(conn, 999_999, "zhang.wei")
        _clear(conn, "gd-1", T + timedelta(minutes=20))  # acknowledged -> resolved by the system
        with pytest.raises(TransitionError, match="not_resolvable"):
            actions.resolve_alert(conn, aid, "zhang.wei")
        actions.close_alert(conn, aid, "li.na", "checked on site", now=T + timedelta(minutes=30))
        with pytest.raises(TransitionError, match="closed"):
            actions.assign_alert(conn, aid, "li.na", "crew-1")
        actions.comment_alert(
            conn, aid, "li.na", "<script>x</script> stays text", now=T + timedelta(minutes=31)
        )

        life = read_alert_life(conn, aid)
        assert (life.state, life.acknowledged_by, life.assigned_to, life.closed_by) == (
            State.CLOSED,
            "zhang.wei",
            "crew-7",
            "li.na",
        )
        assert (life.resolved_by, life.resolved_at) == ("system", T + timedelta(minutes=20))
        audit = read_audit(conn, aid)
        assert [(e.actor, e.action, e.from_state, e.to_state) for e in audit] == [
            ("system", "raise", "", "open"),
            ("zhang.wei", "acknowledge", "open", "acknowledged"),
            ("zhang.wei", "assign", "acknowledged", "acknowledged"),
            ("zhang.wei", "shelve", "acknowledged", "acknowledged"),
            ("system", "clear", "acknowledged", "resolved"),
            ("li.na", "close", "resolved", "closed"),
            ("li.na", "comment", "closed", "closed"),
        ]
        assert audit[1].comment == "on my way" and audit[2].detail == {"assignee": "crew-7"}
        assert audit[3].detail["reason"] == "detector being recalibrated"
        assert audit[1].at == T + timedelta(minutes=1)
        assert verify_audit_chain(conn) == 7

        # append-only, and an edit behind the trigger's back breaks the chain
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE alert_audit SET actor = 'mallory'")
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM alert_audit")
        with conn.transaction():
            conn.execute("ALTER TABLE alert_audit DISABLE TRIGGER alert_audit_no_update")
            conn.execute("UPDATE alert_audit SET actor = 'mallory' WHERE action = 'acknowledge'")
            conn.execute("ALTER TABLE alert_audit ENABLE TRIGGER alert_audit_no_update")
        with pytest.raises(AuditChainError, match="does not match"):
            verify_audit_chain(conn)


def test_in_progress_alert_is_not_auto_resolved(db_url: str) -> None:
    add_sensors(db_url, [("gd-2", "gas", "gas_detector")])
    with psycopg.connect(db_url, autocommit=True) as conn:
        aid = _raise(conn, "gd-2", T)
        actions.start_alert(conn, aid, "li.na", now=T + timedelta(minutes=1))
        _clear(conn, "gd-2", T + timedelta(minutes=10))
        life = read_alert_life(conn, aid)
        assert life.state is State.IN_PROGRESS and life.cleared_at == T + timedelta(minutes=10)
        assert actions.resolve_alert(conn, aid, "li.na").state is State.RESOLVED


def test_escalation_fires_when_nobody_acknowledges_and_not_when_someone_does(db_url: str) -> None:
    add_sensors(db_url, [("gd-3", "gas", "gas_detector"), ("gd-4", "gas", "gas_detector")])
    with psycopg.connect(db_url, autocommit=True) as conn:
        ignored = _raise(conn, "gd-3", T)
        seen = _raise(conn, "gd-4", T)
        actions.acknowledge_alert(conn, seen, "zhang.wei", now=T + timedelta(minutes=2))
        assert actions.escalate_due(conn, now=T + timedelta(minutes=4)) == []
        first = actions.escalate_due(conn, now=T + timedelta(minutes=6))
        assert [e.alert_id for e in first] == [ignored]
        ev = decode_alert_event(first[0].payload)
        assert (ev.event, ev.level, ev.severity) == ("escalated", 1, "critical")
        assert "6 分钟无人确认" in ev.messages.zh
        # no re-notification before the repeat interval, then level 2
        assert actions.escalate_due(conn, now=T + timedelta(minutes=9)) == []
        again = actions.escalate_due(conn, now=T + timedelta(minutes=10, seconds=1))
        assert [decode_alert_event(e.payload).level for e in again] == [2]
        assert read_alert_life(conn, ignored).escalation_level == 2
        assert read_alert_life(conn, seen).escalation_level == 0
        audit = [(e.actor, e.action, e.detail) for e in read_audit(conn, ignored)]
        assert audit[-2:] == [
            ("system", "escalate", {"level": 1}),
            ("system", "escalate", {"level": 2}),
        ]
        n_events = conn.execute(
            "SELECT count(*) FROM alert_events WHERE event = 'escalated'"
        ).fetchone()
        assert n_events == (2,)
