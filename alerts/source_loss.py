"""Source loss: many sensors falling silent together is one loss of data, not a city event (pure).

When a gateway, the broker or the ingest path stops, every sensor behind it stops at once. One
silent alert per sensor (and the power monitors' silence read as outages, the customers that
implies) would turn the city red; instead the engine opens one *source loss* that says what
stopped (the whole stream, one utility's stream, or one district's sensors) and since when.

The rule (decision 0076), on the stream's clock, per sensor (its newest reading over its keys,
and its usual interval: the larger of its type's and its own smoothed one):

* a sensor is **overdue** when nothing came for ``overdue_factor`` x its usual interval (2 by
  default: before the silent detector's 3, so a mass stop is seen as one loss before any
  single sensor is called silent);
* overdue sensors not yet in a loss, whose last readings lie within ``window_s`` of the newest
  of them, open a loss of a scope when they are at least ``min_sensors`` and at least
  ``min_share`` of that scope's sensors; the broadest scope that qualifies wins (the stream,
  then a utility, then a district), and a scope has at most one open loss;
* while a loss is open, overdue sensors of its scope that stopped with it (last reading within
  ``window_s`` before its ``since``) join it;
* the loss's members raise no silent alert and no process alarm (the engine drops them), and
  metered areas metered by a member do not step their water balance: the gap, and the backlog
  replayed after it, say nothing about the city;
* once a member reports again the loss is *back*; ``settle_s`` of stream time later it closes by
  itself. A member still silent then is an ordinary silent sensor (or part of a narrower loss).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerts.messages import source_loss_messages

US = 1_000_000
SCOPES = ("stream", "utility", "district")


@dataclass(frozen=True, slots=True)
class SourceLossRule:
    """When silence is a loss of the source rather than of sensors (configurable:
    ``source_loss_rule``, migration 0077)."""

    min_sensors: int = 5
    min_share: float = 0.5  # of the scope's sensors
    overdue_factor: float = 2.0  # x the sensor's usual interval
    window_s: float = 60.0  # members' last readings within this of each other [s]
    settle_s: float = 60.0  # stream time from the first member back to the loss closing [s]
    enabled: bool = True  # off: no new loss opens (open ones still close)


@dataclass(frozen=True, slots=True)
class SensorClock:
    """A sensor between readings, as the loss rule sees it."""

    sensor_id: str
    utility: str
    district: int | None
    last_us: int  # its newest reading [us]
    usual_us: float  # its usual interval [us]

    def scope_value(self, scope: str) -> str | None:
        if scope == "utility":
            return self.utility
        if scope == "district":
            return None if self.district is None else str(self.district)
        return None


@dataclass(frozen=True, slots=True)
class SourceLoss:
    """One loss of data: what stopped (``scope``: the whole ``stream``, one ``utility`` or one
    ``district``; ``scope_value`` names which), its sensors and since when."""

    scope: str
    scope_value: str | None
    sensors: frozenset[str]
    group_size: int  # sensors of the scope when it opened
    since_us: int  # the newest reading of its members when it opened: nothing came after [us]
    noticed_us: int  # when the rule saw it [us]
    back_us: int | None = None  # when a member was first seen reporting again [us]
    ended_us: int | None = None  # when it closed [us]

    @property
    def key(self) -> tuple[str, str | None]:
        return self.scope, self.scope_value

    @property
    def is_open(self) -> bool:
        return self.ended_us is None


@dataclass(frozen=True, slots=True)
class LossStep:
    """What one look at the clock did: the open losses after it, and every loss it opened,
    grew, found back or closed (for the store)."""

    open: tuple[SourceLoss, ...]
    changed: tuple[SourceLoss, ...]


def covered(losses: Iterable[SourceLoss]) -> frozenset[str]:
    """The sensors of the open losses."""
    return frozenset(s for loss in losses if loss.is_open for s in loss.sensors)


def _in_scope(clock: SensorClock, scope: str, value: str | None) -> bool:
    return scope == "stream" or clock.scope_value(scope) == value


def _follow(
    loss: SourceLoss,
    clocks: Mapping[str, SensorClock],
    overdue: Mapping[str, SensorClock],
    taken: set[str],
    rule: SourceLossRule,
    now_us: int,
) -> SourceLoss:
    """An open loss one look later: back once a member reports, closed ``settle_s`` after; or
    grown by the overdue sensors of its scope that stopped with it."""
    if loss.back_us is None:
        back = any(
            (c := clocks.get(s)) is not None and c.last_us > loss.since_us for s in loss.sensors
        )
        if back:
            return replace(loss, back_us=now_us)
        joining = {
            sid
            for sid, c in overdue.items()
            if sid not in taken
            and _in_scope(c, loss.scope, loss.scope_value)
            and c.last_us >= loss.since_us - rule.window_s * US
        }
        if joining:
            taken |= joining
            return replace(loss, sensors=loss.sensors | joining)
        return loss
    if now_us - loss.back_us >= rule.settle_s * US:
        return replace(loss, ended_us=now_us)
    return loss


def _open(
    clocks: Sequence[SensorClock],
    overdue: Mapping[str, SensorClock],
    taken: set[str],
    busy: set[tuple[str, str | None]],
    rule: SourceLossRule,
    now_us: int,
) -> list[SourceLoss]:
    """New losses among the overdue sensors no loss holds, broadest scope first (the scopes'
    sizes are counted only when there are enough of them to make one)."""
    opened: list[SourceLoss] = []
    need = max(rule.min_sensors, 1)
    for scope in SCOPES:
        free: dict[str | None, list[SensorClock]] = {}
        for c in overdue.values():
            value = c.scope_value(scope)
            if c.sensor_id not in taken and (scope == "stream" or value is not None):
                free.setdefault(value, []).append(c)
        if not any(len(group) >= need for group in free.values()):
            continue
        sizes = Counter(c.scope_value(scope) for c in clocks)
        for value in sorted(free, key=str):
            if (scope, value) in busy or len(free[value]) < need:
                continue
            newest = max(c.last_us for c in free[value])
            members = [c for c in free[value] if c.last_us >= newest - rule.window_s * US]
            if len(members) < need or len(members) < rule.min_share * sizes[value]:
                continue
            ids = frozenset(c.sensor_id for c in members)
            taken |= ids
            busy.add((scope, value))
            opened.append(SourceLoss(scope, value, ids, sizes[value], newest, now_us))
    return opened


def step_losses(
    clocks: Sequence[SensorClock],
    losses: Sequence[SourceLoss],
    rule: SourceLossRule,
    now_us: int,
) -> LossStep:
    """The open ``losses`` followed (back, closed, grown) and new ones opened, at ``now_us``
    [us] of the stream's clock, from every sensor's clock."""
    by_id = {c.sensor_id: c for c in clocks}
    factor = rule.overdue_factor
    overdue = {c.sensor_id: c for c in clocks if now_us - c.last_us > factor * c.usual_us}
    taken: set[str] = set(covered(losses))
    still: list[SourceLoss] = []
    changed: list[SourceLoss] = []
    for loss in losses:
        after = _follow(loss, by_id, overdue, taken, rule, now_us)
        if after != loss:
            changed.append(after)
        if after.is_open:
            still.append(after)
    busy = {loss.key for loss in still}
    opened = _open(clocks, overdue, taken, busy, rule, now_us) if rule.enabled else []
    return LossStep(tuple(still + opened), tuple(changed + opened))


def describe(loss: SourceLoss) -> tuple[str, str]:
    """(zh, en) one-liners for logs and the alert engine's record: what stopped, how many."""
    what_zh, what_en = {
        "stream": ("全部数据流", "the whole data stream"),
        "utility": (f"{loss.scope_value} 数据流", f"the {loss.scope_value} stream"),
        "district": (
            f"区县 {loss.scope_value} 的传感器",
            f"the sensors of district {loss.scope_value}",
        ),
    }[loss.scope]
    n, of = len(loss.sensors), loss.group_size
    return (
        f"数据源中断：{what_zh}（{of} 个传感器中 {n} 个）无数据",
        f"source lost: no data from {what_en} ({n} of {of} sensors)",
    )


# A loss is paged like a critical alert: the whole city, a utility or a district is unwatched.
LOSS_SEVERITY = "critical"
LOSS_EVENTS = ("source_lost", "source_back")  # opened; closed (back and settled)


@dataclass(frozen=True, slots=True)
class LossNotice:
    """The outbox event (published on ``city/alerts/source_loss/<loss_id>`` and routed to the
    notification routes) saying that a source loss opened or closed."""

    source_loss_id: int
    event: str  # LOSS_EVENTS
    scope: str
    scope_value: str | None
    utility: str | None  # a utility's stream; None: every utility
    district_adcode: int | None  # a district's sensors; None: every district
    severity: str
    sensors: int  # how many stopped
    group_size: int  # of how many in its scope
    since: str  # RFC 3339, UTC: nothing came after it
    ended_at: str | None
    message_zh: str
    message_en: str
    kind: str = "source_loss"


def _rfc3339(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / US, UTC).isoformat().replace("+00:00", "Z")


def loss_notice(
    loss: SourceLoss, loss_id: int, event: str, tz: str = "Asia/Shanghai"
) -> LossNotice:
    """What to tell people about ``loss`` (stored as ``loss_id``) on ``event``; the message
    names what stopped and since when, in the operators' time zone ``tz``."""
    since_local = datetime.fromtimestamp(loss.since_us / US, ZoneInfo(tz))
    zh, en = source_loss_messages(
        loss.scope,
        loss.scope_value,
        len(loss.sensors),
        loss.group_size,
        since_local.strftime("%Y-%m-%d %H:%M:%S"),
        event,
    )
    return LossNotice(
        source_loss_id=loss_id,
        event=event,
        scope=loss.scope,
        scope_value=loss.scope_value,
        utility=loss.scope_value if loss.scope == "utility" else None,
        district_adcode=(
            int(loss.scope_value)
            if loss.scope == "district" and loss.scope_value is not None
            else None
        ),
        severity=LOSS_SEVERITY,
        sensors=len(loss.sensors),
        group_size=loss.group_size,
        since=_rfc3339(loss.since_us),
        ended_at=None if loss.ended_us is None else _rfc3339(loss.ended_us),
        message_zh=zh,
        message_en=en,
    )


def encode_notice(notice: LossNotice) -> bytes:
    return json.dumps(asdict(notice), ensure_ascii=False).encode()


def decode_notice(payload: bytes) -> LossNotice | None:
    """The loss notice in an outbox payload, or None when the payload is an alert event."""
    data = json.loads(payload)
    if not isinstance(data, dict) or data.get("kind") != "source_loss":
        return None
    return LossNotice(**data)
