"""The alert lifecycle as a pure state machine: ``transition(alert, action, now=...)``.

States (``alerts.state``)::

    open --acknowledge--> acknowledged --start--> in_progress --resolve--> resolved --close--> closed
      \\______________________start______________/^                 ^
       (open/acknowledged --resolve--> resolved once the condition has cleared)

* ``assign`` (to a person or crew) and ``shelve``/``unshelve`` do not change the state; they are
  allowed while the alert is open, acknowledged or in progress.
* ``shelve`` needs a reason and an expiry no later than ``MAX_SHELVE_S`` ahead (ISA-18.2:
  shelving is always time-limited); a shelved alert is not escalated or re-notified until the
  expiry, after which it is back without anyone acting.
* ``resolve`` is refused while the condition is still active (``cleared_at`` is null): shelve it
  instead. The engine resolves an open or acknowledged alert itself when its condition clears.
* ``close`` only after ``resolve``; ``closed`` is final (only comments are accepted).
* ``comment`` is accepted in every state and only audited.

Refusals raise ``TransitionError`` with a machine-readable ``reason``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum


class State(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Act(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    START = "start"
    SHELVE = "shelve"
    UNSHELVE = "unshelve"
    RESOLVE = "resolve"
    CLOSE = "close"
    COMMENT = "comment"


MAX_SHELVE_S = 7 * 86_400
ACTIVE_STATES = frozenset({State.OPEN, State.ACKNOWLEDGED, State.IN_PROGRESS})


class TransitionError(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AlertLife:
    """The lifecycle columns of one alert row."""

    alert_id: int
    state: State
    severity: str
    raised_at: datetime
    cleared_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    assigned_to: str | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    shelved_until: datetime | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    escalation_level: int = 0
    escalated_at: datetime | None = None
    created_at: datetime | None = None  # when cityops raised it (raised_at is the reading's time)
    suppressed_by: str | None = None  # e.g. "maintenance:12": not escalated, not notified


@dataclass(frozen=True, slots=True)
class Action:
    act: Act
    user: str
    comment: str = ""
    assignee: str | None = None  # assign
    until: datetime | None = None  # shelve
    reason: str = ""  # shelve


def is_shelved(alert: AlertLife, now: datetime) -> bool:
    return alert.shelved_until is not None and alert.shelved_until > now


def transition(alert: AlertLife, action: Action, *, now: datetime) -> AlertLife:
    """The alert after ``action`` by ``action.user`` at ``now``, or ``TransitionError``."""
    # one branch per action, in the order of the diagram above (longer than 60 lines, but read
    # against the diagram more easily than a dispatch table)
    if not action.user.strip():
        raise TransitionError("no_user", "every action needs the acting user")
    act, s = action.act, alert.state
    if act is Act.COMMENT:
        if not action.comment.strip():
            raise TransitionError("empty_comment")
        return alert
    if s is State.CLOSED:
        raise TransitionError("closed", f"alert {alert.alert_id} is closed")
    if act is Act.ACKNOWLEDGE:
        if s is not State.OPEN:
            raise TransitionError("not_open", f"cannot acknowledge an alert that is {s}")
        return replace(
            alert, state=State.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=action.user
        )
    if act is Act.ASSIGN:
        _require_active(alert, act)
        assignee = (action.assignee or "").strip()
        if not assignee:
            raise TransitionError("no_assignee")
        return replace(alert, assigned_to=assignee, assigned_at=now)
    if act is Act.START:
        if s not in (State.OPEN, State.ACKNOWLEDGED):
            raise TransitionError("not_startable", f"cannot start work on an alert that is {s}")
        ack = (
            {"acknowledged_at": now, "acknowledged_by": action.user}
            if alert.acknowledged_at is None
            else {}
        )
        return replace(alert, state=State.IN_PROGRESS, started_at=now, **ack)  # type: ignore[arg-type]
    if act is Act.SHELVE:
        _require_active(alert, act)
        if not action.reason.strip():
            raise TransitionError("no_reason", "shelving needs a reason")
        if action.until is None or action.until <= now:
            raise TransitionError("bad_expiry", "shelving needs an expiry in the future")
        if action.until - now > timedelta(seconds=MAX_SHELVE_S):
            raise TransitionError("expiry_too_far", f"at most {MAX_SHELVE_S // 86_400} days")
        return replace(
            alert, shelved_until=action.until, shelved_by=action.user, shelve_reason=action.reason
        )
    if act is Act.UNSHELVE:
        _require_active(alert, act)
        if not is_shelved(alert, now):
            raise TransitionError("not_shelved")
        return replace(alert, shelved_until=None, shelved_by=None, shelve_reason=None)
    if act is Act.RESOLVE:
        if s not in ACTIVE_STATES:
            raise TransitionError("not_resolvable", f"cannot resolve an alert that is {s}")
        if s is State.OPEN:
            raise TransitionError("not_acknowledged", "acknowledge before resolving")
        if alert.cleared_at is None:
            raise TransitionError("condition_active", "the condition is still active: shelve it")
        return replace(alert, state=State.RESOLVED, resolved_at=now, resolved_by=action.user)
    if act is Act.CLOSE:
        if s is not State.RESOLVED:
            raise TransitionError("not_resolved", f"cannot close an alert that is {s}")
        return replace(alert, state=State.CLOSED, closed_at=now, closed_by=action.user)
    raise TransitionError("unknown_action", str(act))  # pragma: no cover


def _require_active(alert: AlertLife, act: Act) -> None:
    if alert.state not in ACTIVE_STATES:
        raise TransitionError("not_active", f"cannot {act} an alert that is {alert.state}")


# -- escalation -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EscalationRule:
    ack_timeout_s: float  # not acknowledged this long after raising: escalate to level 1
    repeat_s: float  # then re-notify (next level) every this long
    max_level: int = 3


# Why these: a gas leak or burst main must reach a supervisor within minutes; a warning can wait
# for the next shift check. Info alerts never escalate.
ESCALATION_POLICY: dict[str, EscalationRule] = {
    "critical": EscalationRule(300, 300, 3),
    "major": EscalationRule(900, 900, 3),
    "warning": EscalationRule(3600, 3600, 2),
}


def escalation_level_due(
    alert: AlertLife, now: datetime, policy: dict[str, EscalationRule] = ESCALATION_POLICY
) -> int | None:
    """The escalation level the alert should be at if that is above its current one, else None.

    Only alerts nobody acknowledged (state ``open``) and not raised inside a maintenance window
    escalate; a shelved alert waits, and its
    clock runs from the shelve expiry so that it is not escalated the second the shelf ends. The
    clock starts when cityops raised the alert (``created_at``), not at the reading's time: an
    alert raised from readings replayed after an outage gives staff the full time to react.
    """
    rule = policy.get(alert.severity)
    if rule is None or alert.state is not State.OPEN or is_shelved(alert, now):
        return None
    if alert.suppressed_by is not None:
        return None
    since = alert.created_at or alert.raised_at
    if alert.shelved_until is not None and alert.shelved_until > since:
        since = alert.shelved_until
    waited = (now - since).total_seconds()
    if waited < rule.ack_timeout_s:
        return None
    level = min(rule.max_level, 1 + int((waited - rule.ack_timeout_s) // rule.repeat_s))
    return level if level > alert.escalation_level else None
