"""PostgreSQL adapter of the alerts part: the only module here that runs SQL.

Tables owned: ``alerts`` (0001, extended by 0020+), ``alert_detector_state``, ``alert_events``
(outbox). Reads ``sensors`` and ``sensor_type_quantities`` (the limits).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from alerts.balance import AREA_PARAMS, AreaSpec
from alerts.engine import AlertChange, Evaluation, Key, KeyState, SensorInfo, StreamConfig
from alerts.evaluation import LATE_S, DetectionRecord, TruthEvent
from alerts.events import (
    AlertEvent,
    Messages,
    build_alert_event,
    decode_alert_event,
    encode_alert_event,
    rfc3339_from_us,
)
from alerts.incidents import (
    DEFAULT_WINDOW_S,
    HEALTH_KINDS,
    AlertPoint,
    IncidentState,
    alert_tag,
    choose_incident,
    incident_explanation,
    incident_kind,
    join_incident,
    new_incident,
    symptom_weight,
)
from alerts.lifecycle import (
    ESCALATION_POLICY,
    Act,
    Action,
    AlertLife,
    EscalationRule,
    State,
    escalation_level_due,
    transition,
)
from alerts.messages import escalation_messages
from alerts.notify import (
    CHATTER_WINDOW_S,
    FLOOD_WINDOW_S,
    Route,
    parse_route_row,
    route_matches,
    route_problem,
    suppression_reason,
)
from alerts.params import build_stream_config
from sensors.catalogue import DEFAULT_DETECTORS, QuantityLimits
from sensors.quantities import QUANTITIES
from sensors.topics import alert_topic


def ts_from_us(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1e6, UTC)


def us_from_ts(ts: datetime) -> int:
    delta = ts - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    event_id: int
    alert_id: int
    topic: str
    payload: bytes


def read_sensors(conn: psycopg.Connection) -> dict[str, SensorInfo]:
    """Active sensors with their limits per quantity (``sensor_limit_overrides`` where a sensor
    has its own, else its type's ``sensor_type_quantities``), reporting interval and enabled
    streaming detectors (``alert_detector_settings``)."""
    rows = conn.execute(
        """
        SELECT s.sensor_id, s.utility, s.sensor_type, t.expected_interval_s, q.quantity,
               CASE WHEN o.sensor_id IS NULL THEN q.alarm_low ELSE o.alarm_low END,
               CASE WHEN o.sensor_id IS NULL THEN q.alarm_high ELSE o.alarm_high END,
               coalesce(o.deadband, q.deadband)
        FROM sensors s
        JOIN sensor_types t ON t.type_id = s.sensor_type
        LEFT JOIN sensor_type_quantities q ON q.type_id = s.sensor_type
        LEFT JOIN sensor_limit_overrides o
            ON o.sensor_id = s.sensor_id AND o.quantity = q.quantity
        WHERE s.status = 'active'
        ORDER BY s.sensor_id
        """
    ).fetchall()
    streams = read_stream_configs(conn)
    limits: dict[str, dict[str, QuantityLimits]] = {}
    meta: dict[str, tuple[str, str, float]] = {}
    for sid, utility, stype, interval, quantity, low, high, band in rows:
        meta[sid] = (utility, stype, float(interval))
        per = limits.setdefault(sid, {})
        if quantity is not None:
            per[quantity] = QuantityLimits(quantity, low, high, float(band or 0.0))
    defaults: dict[str, StreamConfig] = {}  # quantities without rows: the defaults (on-delay)

    def configs(type_id: str, quantities: Iterable[str]) -> dict[str, StreamConfig]:
        rows = streams.get(type_id, {})
        out = dict(rows)
        for q in quantities:
            if q not in out:
                out[q] = defaults.setdefault(q, build_stream_config(q, {}))
        return out

    return {
        sid: SensorInfo(sid, u, t, limits[sid], interval, configs(t, limits[sid]))
        for sid, (u, t, interval) in meta.items()
    }


def read_detector_clock(conn: psycopg.Connection) -> tuple[datetime | None, int]:
    """(the newest detector state update, how many states): it stops moving once the engine
    has nothing left to evaluate."""
    row = conn.execute("SELECT max(updated_at), count(*) FROM alert_detector_state").fetchone()
    return (row[0], int(row[1])) if row else (None, 0)


def read_evaluated_until(conn: psycopg.Connection, sensor_ids: Sequence[str]) -> datetime | None:
    """The newest reading time the engine has evaluated for any of ``sensor_ids``."""
    row = conn.execute(
        "SELECT max(last_ts) FROM alert_detector_state WHERE sensor_id = ANY(%s)",
        (list(sensor_ids),),
    ).fetchone()
    return row[0] if row else None


def write_default_detectors(conn: psycopg.Connection) -> None:
    """The streaming detectors a new installation starts with (decision 0025); a row the
    operators changed or disabled (``enabled = false``) is kept as it is."""
    conn.cursor().executemany(
        "INSERT INTO alert_detector_settings (type_id, quantity, detector, severity, params)"
        " VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
        [
            (d.type_id, d.quantity, d.detector, d.severity, json.dumps(dict(d.params)))
            for d in DEFAULT_DETECTORS
        ],
    )


def write_limit_override(
    conn: psycopg.Connection,
    user: str,
    sensor_id: str,
    quantity: str,
    alarm_low: float | None,
    alarm_high: float | None,
    deadband: float,
    reason: str,
) -> None:
    """Give one sensor its own limits for a quantity [canonical unit] (replacing any earlier
    ones); the engine picks them up within 30 s. Only quantities its type has limits for."""
    if not reason.strip() or not user.strip():
        raise ValueError("a limit override needs a reason and the acting user")
    with conn.transaction():
        known = conn.execute(
            "SELECT 1 FROM sensors s JOIN sensor_type_quantities q ON q.type_id = s.sensor_type"
            " WHERE s.sensor_id = %s AND q.quantity = %s",
            (sensor_id, quantity),
        ).fetchone()
        if known is None:
            raise LookupError(f"{sensor_id} has no limits for {quantity}")
        conn.execute(
            "INSERT INTO sensor_limit_overrides (sensor_id, quantity, alarm_low, alarm_high,"
            " deadband, reason, set_by) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (sensor_id, quantity) DO UPDATE SET alarm_low = EXCLUDED.alarm_low,"
            " alarm_high = EXCLUDED.alarm_high, deadband = EXCLUDED.deadband,"
            " reason = EXCLUDED.reason, set_by = EXCLUDED.set_by, set_at = now()",
            (sensor_id, quantity, alarm_low, alarm_high, deadband, reason, user),
        )


def write_metered_area(
    conn: psycopg.Connection,
    user: str,
    area_id: str,
    name: str,
    meters: Sequence[tuple[str, int]],
    params: dict[str, Any] | None = None,
    members: Sequence[str] = (),
    storage: Sequence[str] = (),
) -> None:
    """Define (or redefine) a metered area: its inlet flow meters, each with +1 where a positive
    flow enters the area and -1 where it leaves (alerts/balance.py), and the sensors inside it
    (``members``; the meters always are), which incident grouping uses as the network's
    topology; ``storage``: the meters on service reservoirs rather than sources; the engine
    picks it up within 30 s."""
    if not meters or any(sign not in (-1, 1) for _, sign in meters):
        raise ValueError("a metered area needs meters, each with sign +1 or -1")
    with conn.transaction():
        conn.execute(
            "INSERT INTO metered_areas (area_id, name, params, set_by) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (area_id) DO UPDATE SET name = EXCLUDED.name, params = EXCLUDED.params,"
            " set_by = EXCLUDED.set_by, enabled = true, updated_at = now()",
            (area_id, name, Jsonb(params or {}), user),
        )
        conn.execute("DELETE FROM metered_area_meters WHERE area_id = %s", (area_id,))
        for sensor_id, sign in meters:
            conn.execute(
                "INSERT INTO metered_area_meters (area_id, sensor_id, sign, storage)"
                " VALUES (%s, %s, %s, %s)",
                (area_id, sensor_id, sign, sensor_id in storage),
            )
        conn.execute("DELETE FROM metered_area_sensors WHERE area_id = %s", (area_id,))
        conn.execute(
            "INSERT INTO metered_area_sensors (area_id, sensor_id)"
            " SELECT %s, unnest(%s::text[]) ON CONFLICT DO NOTHING",
            (area_id, sorted({*members, *(m for m, _ in meters)})),
        )


def read_metered_areas(conn: psycopg.Connection) -> dict[str, AreaSpec]:
    """Enabled metered areas whose meters are all active sensors."""
    rows = conn.execute(
        "SELECT a.area_id, a.name, a.params, array_agg(m.sensor_id ORDER BY m.sensor_id),"
        " array_agg(m.sign ORDER BY m.sensor_id), bool_and(s.status = 'active'),"
        " coalesce(array_agg(m.sensor_id) FILTER (WHERE m.storage), '{}')"
        " FROM metered_areas a JOIN metered_area_meters m USING (area_id)"
        " JOIN sensors s USING (sensor_id) WHERE a.enabled GROUP BY a.area_id ORDER BY a.area_id"
    ).fetchall()
    out = {}
    for area_id, name, params, sensors, signs, all_active, storage in rows:
        if not all_active:
            continue
        known = {k: v for k, v in (params or {}).items() if k in AREA_PARAMS}
        out[area_id] = AreaSpec(
            area_id,
            name,
            tuple(zip(sensors, signs, strict=True)),
            storage=frozenset(storage),
            **known,
        )
    return out


def read_stream_configs(conn: psycopg.Connection) -> dict[str, dict[str, StreamConfig]]:
    """type_id -> quantity -> the enabled streaming detectors, defaults from alerts/params.py."""
    found: dict[tuple[str, str], dict[str, tuple[str, dict[str, Any]]]] = {}
    for type_id, quantity, detector, severity, params in conn.execute(
        "SELECT type_id, quantity, detector, severity, params FROM alert_detector_settings"
        " WHERE enabled ORDER BY type_id, quantity, detector"
    ):
        found.setdefault((type_id, quantity), {})[detector] = (severity, params or {})
    out: dict[str, dict[str, StreamConfig]] = {}
    for (type_id, quantity), dets in found.items():
        out.setdefault(type_id, {})[quantity] = build_stream_config(quantity, dets)
    return out


def read_states(conn: psycopg.Connection) -> dict[Key, KeyState]:
    """Detector state as committed: last evaluated reading and the active alert kinds."""
    last: dict[Key, int] = {
        (sid, q): us_from_ts(ts)
        for sid, q, ts in conn.execute(
            "SELECT sensor_id, quantity, last_ts FROM alert_detector_state"
        )
    }
    active: dict[Key, set[str]] = {}
    for sid, q, kind in conn.execute(
        "SELECT sensor_id, quantity, kind FROM alerts WHERE cleared_at IS NULL"
    ):
        active.setdefault((sid, q), set()).add(kind)
    return {
        key: KeyState(last.get(key), frozenset(active.get(key, ())))
        for key in last.keys() | active.keys()
    }


def read_recent_windows(
    conn: psycopg.Connection,
    sensors: dict[str, SensorInfo],
    states: dict[Key, KeyState],
) -> dict[Key, KeyState]:
    """``states`` with the windows of the windowed detectors (rate of change, stuck) refilled
    from the stored readings (``readings``, kept by ingestion), up to each key's last evaluated
    reading, so that a restarted engine does not need a fresh window before it can raise."""
    wanted: dict[tuple[str, str], float] = {}  # (type_id, quantity) -> window [s]
    for info in sensors.values():
        for quantity, cfg in info.streams.items():
            if cfg.window_s > 0:
                wanted[(info.sensor_type, quantity)] = cfg.window_s
    out = dict(states)
    if not wanted or conn.execute("SELECT to_regclass('readings')").fetchone() == (None,):
        return out
    recent: dict[Key, list[tuple[int, float]]] = {}
    for (type_id, quantity), window_s in wanted.items():
        for sid, ts, value in conn.execute(
            """
            SELECT r.sensor_id, r.ts, r.value
            FROM alert_detector_state d
            JOIN sensors s ON s.sensor_id = d.sensor_id AND s.sensor_type = %s
            JOIN readings r ON r.sensor_id = d.sensor_id AND r.quantity = d.quantity
                AND r.ts >= d.last_ts - make_interval(secs => %s) AND r.ts <= d.last_ts
            WHERE d.quantity = %s
            ORDER BY r.sensor_id, r.ts
            """,
            (type_id, window_s, quantity),
        ):
            recent.setdefault((sid, quantity), []).append((us_from_ts(ts), value))
    for key, points in recent.items():
        st = out.get(key, KeyState())
        # the key's own last reading is the detector's "current" one: the window holds the rest
        last = st.last_ts_us
        out[key] = KeyState(
            last,
            st.active,
            tuple(p for p in points if p[0] != last) + (tuple(p for p in points if p[0] == last)),
        )
    return out


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def write_evaluation(
    conn: psycopg.Connection, evaluation: Evaluation, *, group: bool = True
) -> list[OutboxEvent]:
    """Store one evaluated batch in one transaction; returns the events to publish.

    ``group``: also put each raised alert into its incident in the same transaction. The engine
    passes False and calls ``group_new_alerts`` once the events are out, so that the incident
    queries are not on the alert's path to the people it pages.

    A raise that finds the condition already active (unique index ``alerts_one_active_idx``)
    and a clear that finds nothing active change nothing and publish nothing: replays are
    harmless. The changes are written a few statements per batch, not per change (an alert
    storm of a hundred changes is one round trip per step, ``_apply_changes``).
    """
    events: list[OutboxEvent] = []
    with conn.transaction():
        if not evaluation.changes:
            # only detector clocks: losing them in a PostgreSQL crash is harmless (the readings
            # are then just evaluated against an older clock), so skip the WAL flush wait
            conn.execute("SET LOCAL synchronous_commit = off")
        else:
            lock_audit(conn)  # before any row lock (see lock_audit)
            applied = _apply_changes(conn, evaluation.changes)
            if group:
                for alert_id, ch, _states in applied:
                    if ch.event == "raised":
                        _attach_incident(conn, alert_id, ch)
                raised = [a for a, ch, _ in applied if ch.event == "raised"]
                if raised:
                    conn.execute(
                        "UPDATE alerts SET grouped_at = now() WHERE alert_id = ANY(%s)", (raised,)
                    )
            events = _queue_events(conn, applied)
        if evaluation.states:
            keys = [k for k, s in evaluation.states.items() if s.last_ts_us is not None]
            conn.execute(
                """
                INSERT INTO alert_detector_state (sensor_id, quantity, last_ts)
                SELECT * FROM unnest(%s::text[], %s::text[], %s::timestamptz[])
                ON CONFLICT (sensor_id, quantity) DO UPDATE
                SET last_ts = GREATEST(alert_detector_state.last_ts, EXCLUDED.last_ts),
                    updated_at = now()
                """,
                (
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                    [ts_from_us(evaluation.states[k].last_ts_us or 0) for k in keys],
                ),
            )
    return events


Applied = tuple[int, AlertChange, tuple[str, str]]  # (alert_id, change, (from, to) state)


def _rounds(changes: Sequence[AlertChange]) -> list[list[AlertChange]]:
    """Split the changes, in order, into rounds where each (sensor, quantity, kind) appears at
    most once: a sensor swinging across a limit raises, clears and raises again in one batch,
    and each step must see the one before it."""
    rounds: list[list[AlertChange]] = []
    last_round: dict[tuple[str, str, str], int] = {}
    for ch in changes:
        key = (ch.sensor_id, ch.quantity, ch.kind)
        i = last_round.get(key, -1) + 1
        if i == len(rounds):
            rounds.append([])
        rounds[i].append(ch)
        last_round[key] = i
    return rounds


def _apply_changes(conn: psycopg.Connection, changes: Sequence[AlertChange]) -> list[Applied]:
    """Raise and clear alerts in bulk, round by round; then chain their audit rows (computed
    here, one INSERT). Returns what was applied, in the changes' order."""
    done: dict[int, Applied] = {}  # position in ``changes`` -> applied
    position = {id(ch): i for i, ch in enumerate(changes)}
    for rnd in _rounds(changes):
        raises = [ch for ch in rnd if ch.event == "raised"]
        clears = [ch for ch in rnd if ch.event == "cleared"]
        if raises:
            rows = conn.execute(
                """
                INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state,
                                    raised_at, value, limit_value, last_value, message_zh,
                                    message_en)
                SELECT u.sensor_id, u.utility, u.quantity, u.kind, u.severity, 'open', u.ts,
                       u.value, u.lim, u.value, u.zh, u.en
                FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                            %s::timestamptz[], %s::float8[], %s::float8[], %s::text[],
                            %s::text[])
                     AS u(sensor_id, utility, quantity, kind, severity, ts, value, lim, zh, en)
                ON CONFLICT (sensor_id, quantity, kind) WHERE cleared_at IS NULL DO NOTHING
                RETURNING alert_id, sensor_id, quantity, kind
                """,
                (
                    [c.sensor_id for c in raises],
                    [c.utility for c in raises],
                    [c.quantity for c in raises],
                    [c.kind for c in raises],
                    [c.severity for c in raises],
                    [ts_from_us(c.ts_us) for c in raises],
                    [c.value for c in raises],
                    [_finite(c.limit) for c in raises],
                    [c.message_zh for c in raises],
                    [c.message_en for c in raises],
                ),
            ).fetchall()
            by_key = {(c.sensor_id, c.quantity, c.kind): c for c in raises}
            new_ids = []
            for alert_id, sid, quantity, kind in rows:
                ch = by_key[(sid, quantity, kind)]
                done[position[id(ch)]] = (alert_id, ch, ("", "open"))
                new_ids.append((alert_id, ch))
            _apply_maintenance_bulk(conn, new_ids)
        if clears:
            rows = conn.execute(
                """
                WITH c AS (
                    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[],
                                         %s::float8[]) AS c(sensor_id, quantity, kind, ts, value)
                ), old AS (
                    SELECT a.alert_id, a.state, c.ts, c.value FROM alerts a
                    JOIN c USING (sensor_id, quantity, kind)
                    WHERE a.cleared_at IS NULL FOR UPDATE OF a
                )
                UPDATE alerts a SET cleared_at = old.ts, last_value = old.value,
                    updated_at = now(),
                    state = CASE WHEN old.state IN ('open', 'acknowledged') THEN 'resolved'
                                 ELSE old.state END,
                    resolved_at = CASE WHEN old.state IN ('open', 'acknowledged') THEN old.ts
                                       ELSE a.resolved_at END,
                    resolved_by = CASE WHEN old.state IN ('open', 'acknowledged') THEN %s
                                       ELSE a.resolved_by END
                FROM old WHERE a.alert_id = old.alert_id
                RETURNING a.alert_id, a.sensor_id, a.quantity, a.kind, old.state, a.state
                """,
                (
                    [c.sensor_id for c in clears],
                    [c.quantity for c in clears],
                    [c.kind for c in clears],
                    [ts_from_us(c.ts_us) for c in clears],
                    [c.value for c in clears],
                    SYSTEM_USER,
                ),
            ).fetchall()
            by_key = {(c.sensor_id, c.quantity, c.kind): c for c in clears}
            for alert_id, sid, quantity, kind, before, after in rows:
                ch = by_key[(sid, quantity, kind)]
                done[position[id(ch)]] = (alert_id, ch, (before, after))
    applied = [done[i] for i in sorted(done)]
    _append_audit_bulk(
        conn,
        [
            AuditEntry(
                0,
                alert_id,
                ts_from_us(ch.ts_us),
                SYSTEM_USER,
                "raise" if ch.event == "raised" else "clear",
                before,
                after,
                # the console shows the comment: Chinese first, English kept in the detail
                ch.message_zh,
                {"value": ch.value, "severity": ch.severity, "message_en": ch.message_en}
                if ch.event == "raised"
                else {"value": ch.value, "message_en": ch.message_en},
            )
            for alert_id, ch, (before, after) in applied
        ],
    )
    return applied


def _apply_maintenance_bulk(
    conn: psycopg.Connection, new: Sequence[tuple[int, AlertChange]]
) -> None:
    """Mark alerts raised inside a maintenance window covering their sensor (many at once)."""
    if not new:
        return
    conn.execute(
        """
        UPDATE alerts a SET suppressed_by = 'maintenance:' || w.window_id
        FROM (
            SELECT DISTINCT ON (x.id) x.id, w.window_id
            FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::text[])
                 AS x(id, sid, ts, utility)
            LEFT JOIN sensors s ON s.sensor_id = x.sid
            JOIN maintenance_windows w
              ON w.starts_at <= x.ts AND x.ts < w.ends_at
             AND (w.sensor_id IS NULL OR w.sensor_id = x.sid)
             AND (w.utility IS NULL OR w.utility = x.utility)
             AND (w.district_adcode IS NULL OR w.district_adcode = s.district_adcode)
            ORDER BY x.id, w.window_id
        ) w
        WHERE a.alert_id = w.id
        """,
        (
            [a for a, _ in new],
            [c.sensor_id for _, c in new],
            [ts_from_us(c.ts_us) for _, c in new],
            [c.utility for _, c in new],
        ),
    )


def _append_audit_bulk(conn: psycopg.Connection, entries: Sequence[AuditEntry]) -> None:
    """Audit rows chained in order, in one INSERT (``append_audit`` for many; the caller holds
    the audit lock, so nobody appends in between)."""
    if not entries:
        return
    prev_row = conn.execute(
        "SELECT hash FROM alert_audit ORDER BY audit_id DESC LIMIT 1"
    ).fetchone()
    prev = prev_row[0] if prev_row else ""
    prevs, hashes = [], []
    for e in entries:
        h = _audit_hash(_HASH_ALG, prev, e)
        prevs.append(prev)
        hashes.append(h)
        prev = h
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


def _queue_events(conn: psycopg.Connection, applied: Sequence[Applied]) -> list[OutboxEvent]:
    """The outbox rows of the applied changes, in order, in one INSERT."""
    if not applied:
        return []
    prepared = []
    for alert_id, ch, _ in applied:
        payload = encode_alert_event(build_alert_event(alert_id, ch, _unit(ch.quantity)))
        prepared.append((alert_id, ch.event, alert_topic(ch.utility, ch.sensor_id), payload))
    ids = [
        r[0]
        for r in conn.execute(
            """
            INSERT INTO alert_events (alert_id, event, topic, payload)
            SELECT u.alert_id, u.event, u.topic, u.payload
            FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::jsonb[])
                 WITH ORDINALITY AS u(alert_id, event, topic, payload, n)
            ORDER BY u.n
            RETURNING event_id
            """,
            (
                [p[0] for p in prepared],
                [p[1] for p in prepared],
                [p[2] for p in prepared],
                [Jsonb(p[3].decode(), dumps=lambda s: s) for p in prepared],
            ),
        ).fetchall()
    ]
    ids.sort()  # sequence values follow the ORDER BY: sorted ids are the rows in order
    return [
        OutboxEvent(event_id, alert_id, topic, payload)
        for event_id, (alert_id, _e, topic, payload) in zip(ids, prepared, strict=True)
    ]


def _unit(quantity: str) -> str:
    q = QUANTITIES.get(quantity)
    return q.unit if q else ""


def write_maintenance_window(
    conn: psycopg.Connection,
    user: str,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    *,
    sensor_id: str | None = None,
    utility: str | None = None,
    district_adcode: int | None = None,
) -> int:
    """Declare planned work: alerts raised inside it are stored and published but neither
    escalated nor notified. Returns the window id."""
    if not reason.strip() or not user.strip():
        raise ValueError("a maintenance window needs a reason and the acting user")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO maintenance_windows (sensor_id, utility, district_adcode, starts_at,"
            " ends_at, reason, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " RETURNING window_id",
            (sensor_id, utility, district_adcode, starts_at, ends_at, reason, user),
        ).fetchone()
    assert row is not None
    return int(row[0])


OUTBOX_GRACE_S = 10.0


def read_unpublished_events(
    conn: psycopg.Connection, *, min_age_s: float = OUTBOX_GRACE_S, limit: int = 1000
) -> list[OutboxEvent]:
    """Events left unpublished for at least ``min_age_s`` [s]: the worker that wrote an event
    publishes it itself within milliseconds, so the sweep only picks up what a stopped (or
    another, crashed) worker left behind, instead of publishing a busy worker's events twice."""
    rows = conn.execute(
        "SELECT event_id, alert_id, topic, payload::text FROM alert_events"
        " WHERE published_at IS NULL AND created_at <= now() - make_interval(secs => %s)"
        " ORDER BY event_id LIMIT %s",
        (min_age_s, limit),
    ).fetchall()
    if not conn.autocommit:
        conn.commit()
    return [OutboxEvent(r[0], r[1], r[2], r[3].encode()) for r in rows]


def mark_published(conn: psycopg.Connection, event_ids: Sequence[int]) -> None:
    if not event_ids:
        return
    with conn.transaction():
        # a lost mark only means publishing again (at least once)
        conn.execute("SET LOCAL synchronous_commit = off")
        conn.execute(
            "UPDATE alert_events SET published_at = now()"
            " WHERE event_id = ANY(%s) AND published_at IS NULL",
            (list(event_ids),),
        )


# -- lifecycle (called by the dashboard and by the engine) ----------------------------------------
#
# Plain functions taking a psycopg connection and the acting user. Each runs in
# ``conn.transaction()``: its own transaction on an idle or autocommit connection, a savepoint
# inside the caller's. ``TransitionError`` (alerts/lifecycle.py) is raised for refused actions and
# ``LookupError`` for an unknown alert; nothing is written then. Role checks are the caller's.

SYSTEM_USER = "system"
_AUDIT_LOCK = 0x0C17_A0D1
_HASH_ALG = "sm3" if "sm3" in hashlib.algorithms_available else "sha256"

_LIFE_SELECT = sql.SQL(
    "SELECT alert_id, state, severity, raised_at, cleared_at, acknowledged_at, acknowledged_by,"
    " assigned_to, assigned_at, started_at, shelved_until, shelved_by, shelve_reason,"
    " resolved_at, resolved_by, closed_at, closed_by, escalation_level, escalated_at, created_at,"
    " suppressed_by FROM alerts"
)


def _life(row: Sequence[Any]) -> AlertLife:
    return AlertLife(row[0], State(row[1]), *row[2:])


def read_alert_life(
    conn: psycopg.Connection, alert_id: int, *, for_update: bool = False
) -> AlertLife:
    row = conn.execute(
        _LIFE_SELECT
        + sql.SQL(" WHERE alert_id = %s")
        + sql.SQL(" FOR UPDATE" if for_update else ""),
        (alert_id,),
    ).fetchone()
    if row is None:
        raise LookupError(f"no alert {alert_id}")
    return _life(row)


def _write_life(conn: psycopg.Connection, a: AlertLife) -> None:
    conn.execute(
        """
        UPDATE alerts SET state = %s, acknowledged_at = %s, acknowledged_by = %s,
            assigned_to = %s, assigned_at = %s, started_at = %s, shelved_until = %s,
            shelved_by = %s, shelve_reason = %s, resolved_at = %s, resolved_by = %s,
            closed_at = %s, closed_by = %s, escalation_level = %s, escalated_at = %s,
            updated_at = now()
        WHERE alert_id = %s
        """,
        (
            a.state.value,
            a.acknowledged_at,
            a.acknowledged_by,
            a.assigned_to,
            a.assigned_at,
            a.started_at,
            a.shelved_until,
            a.shelved_by,
            a.shelve_reason,
            a.resolved_at,
            a.resolved_by,
            a.closed_at,
            a.closed_by,
            a.escalation_level,
            a.escalated_at,
            a.alert_id,
        ),
    )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    audit_id: int
    alert_id: int
    at: datetime
    actor: str
    action: str
    from_state: str
    to_state: str
    comment: str
    detail: dict[str, Any]


def _audit_hash(alg: str, prev: str, e: AuditEntry) -> str:
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


def append_audit(
    conn: psycopg.Connection,
    alert_id: int,
    *,
    at: datetime,
    actor: str,
    action: str,
    from_state: str,
    to_state: str,
    comment: str = "",
    detail: dict[str, Any] | None = None,
) -> None:
    """One audit row, chained to the previous one (call inside a transaction)."""
    lock_audit(conn)
    prev_row = conn.execute(
        "SELECT hash FROM alert_audit ORDER BY audit_id DESC LIMIT 1"
    ).fetchone()
    prev = prev_row[0] if prev_row else ""
    entry = AuditEntry(0, alert_id, at, actor, action, from_state, to_state, comment, detail or {})
    conn.execute(
        "INSERT INTO alert_audit (alert_id, at, actor, action, from_state, to_state, comment,"
        " detail, hash_alg, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            alert_id,
            at,
            actor,
            action,
            from_state,
            to_state,
            comment,
            Jsonb(entry.detail),
            _HASH_ALG,
            prev,
            _audit_hash(_HASH_ALG, prev, entry),
        ),
    )


def read_audit(conn: psycopg.Connection, alert_id: int) -> list[AuditEntry]:
    rows = conn.execute(
        "SELECT audit_id, alert_id, at, actor, action, from_state, to_state, comment, detail"
        " FROM alert_audit WHERE alert_id = %s ORDER BY audit_id",
        (alert_id,),
    ).fetchall()
    return [AuditEntry(*r) for r in rows]


class AuditChainError(RuntimeError):
    pass


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
        if prev_hash != prev or _audit_hash(alg, prev, entry) != digest:
            raise AuditChainError(f"audit row {entry.audit_id} does not match its hash chain")
        prev = digest
        n += 1
    return n


def apply_action(
    conn: psycopg.Connection, alert_id: int, action: Action, *, now: datetime | None = None
) -> AlertLife:
    """Lock the alert, apply ``action`` through the state machine, store it and audit it."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        lock_audit(conn)  # before any row lock: one lock order everywhere, no deadlock
        before = read_alert_life(conn, alert_id, for_update=True)
        after = transition(before, action, now=now)
        if after != before:
            _write_life(conn, after)
        detail: dict[str, Any] = {}
        if action.assignee:
            detail["assignee"] = action.assignee
        if action.until:
            detail["until"] = action.until.astimezone(UTC).isoformat()
        if action.reason:
            detail["reason"] = action.reason
        append_audit(
            conn,
            alert_id,
            at=now,
            actor=action.user,
            action=action.act.value,
            from_state=before.state.value,
            to_state=after.state.value,
            comment=action.comment,
            detail=detail,
        )
    return after


def acknowledge_alert(
    conn: psycopg.Connection,
    alert_id: int,
    user: str,
    comment: str = "",
    *,
    now: datetime | None = None,
) -> AlertLife:
    return apply_action(conn, alert_id, Action(Act.ACKNOWLEDGE, user, comment), now=now)


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


def start_alert(
    conn: psycopg.Connection,
    alert_id: int,
    user: str,
    comment: str = "",
    *,
    now: datetime | None = None,
) -> AlertLife:
    return apply_action(conn, alert_id, Action(Act.START, user, comment), now=now)


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


def unshelve_alert(
    conn: psycopg.Connection,
    alert_id: int,
    user: str,
    comment: str = "",
    *,
    now: datetime | None = None,
) -> AlertLife:
    return apply_action(conn, alert_id, Action(Act.UNSHELVE, user, comment), now=now)


def resolve_alert(
    conn: psycopg.Connection,
    alert_id: int,
    user: str,
    comment: str = "",
    *,
    now: datetime | None = None,
) -> AlertLife:
    return apply_action(conn, alert_id, Action(Act.RESOLVE, user, comment), now=now)


def close_alert(
    conn: psycopg.Connection,
    alert_id: int,
    user: str,
    comment: str = "",
    *,
    now: datetime | None = None,
) -> AlertLife:
    return apply_action(conn, alert_id, Action(Act.CLOSE, user, comment), now=now)


def comment_alert(
    conn: psycopg.Connection, alert_id: int, user: str, comment: str, *, now: datetime | None = None
) -> AlertLife:
    return apply_action(conn, alert_id, Action(Act.COMMENT, user, comment), now=now)


# -- escalation ------------------------------------------------------------------------------------


def escalate_due(
    conn: psycopg.Connection,
    *,
    now: datetime | None = None,
    policy: dict[str, EscalationRule] = ESCALATION_POLICY,
) -> list[OutboxEvent]:
    """Escalate every open alert not acknowledged in time (``escalation_level_due``): raise its
    level, audit it as the system, and queue an ``escalated`` event (MQTT and notifications)."""
    now = now or datetime.now(UTC)
    out: list[OutboxEvent] = []
    if not policy:
        return out
    # only alerts old enough for the shortest timeout, and only those still escalating: the
    # rest are not locked (the dashboard acknowledges them meanwhile)
    oldest = now - timedelta(seconds=min(r.ack_timeout_s for r in policy.values()))
    with conn.transaction():
        lock_audit(conn)
        rows = conn.execute(
            _LIFE_SELECT
            + sql.SQL(
                " WHERE state = 'open' AND suppressed_by IS NULL"
                " AND coalesce(created_at, raised_at) <= %s AND escalation_level < %s"
                " ORDER BY raised_at FOR UPDATE SKIP LOCKED"
            ),
            (oldest, max(r.max_level for r in policy.values())),
        ).fetchall()
        for row in rows:
            life = _life(row)
            level = escalation_level_due(life, now, policy)
            if level is None:
                continue
            _write_life(conn, replace(life, escalation_level=level, escalated_at=now))
            append_audit(
                conn,
                life.alert_id,
                at=now,
                actor=SYSTEM_USER,
                action="escalate",
                from_state=life.state.value,
                to_state=life.state.value,
                detail={"level": level},
            )
            out.append(_queue_alert_event(conn, life.alert_id, "escalated", now, level=level))
    return out


def _queue_alert_event(
    conn: psycopg.Connection, alert_id: int, event: str, now: datetime, *, level: int | None = None
) -> OutboxEvent:
    """An outbox event about an existing alert, built from its row."""
    row = conn.execute(
        "SELECT sensor_id, utility, quantity, kind, severity, coalesce(last_value, value),"
        " limit_value, raised_at FROM alerts WHERE alert_id = %s",
        (alert_id,),
    ).fetchone()
    assert row is not None
    sid, utility, quantity, kind, severity, value, limit, raised_at = row
    minutes = int((now - raised_at).total_seconds() // 60)
    zh, en = escalation_messages(sid, quantity, kind, minutes, level or 0)
    ev = AlertEvent(
        alert_id=alert_id,
        event=event,
        sensor_id=sid,
        utility=utility,
        quantity=quantity,
        kind=kind,
        severity=severity,
        value=value,
        limit=limit,
        unit=_unit(quantity),
        ts=rfc3339_from_us(us_from_ts(now)),
        messages=Messages(zh, en),
        level=level,
    )
    payload = encode_alert_event(ev)
    topic = alert_topic(utility, sid)
    r = conn.execute(
        "INSERT INTO alert_events (alert_id, event, topic, payload) VALUES (%s, %s, %s, %s)"
        " RETURNING event_id",
        (alert_id, event, topic, Jsonb(payload.decode(), dumps=lambda s: s)),
    ).fetchone()
    assert r is not None
    return OutboxEvent(r[0], alert_id, topic, payload)


# -- dead letters ---------------------------------------------------------------------------------

DEAD_LETTER_MAX_BYTES = 65536


def write_dead_letter(
    conn: psycopg.Connection, topic: str, payload: bytes, error: str, *, received_at: datetime
) -> int:
    """Keep a telemetry message the engine could not store (bounded: the first 64 KiB of the
    payload, its full size alongside); returns its id."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO alert_dead_letters (received_at, topic, payload, payload_bytes, error)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING dead_letter_id",
            (
                received_at,
                topic[:1024],
                bytes(payload[:DEAD_LETTER_MAX_BYTES]),
                len(payload),
                error[:2000],
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dead_letter_id: int
    received_at: datetime
    topic: str
    payload: bytes  # the first DEAD_LETTER_MAX_BYTES
    payload_bytes: int
    error: str


def read_dead_letters(conn: psycopg.Connection, *, limit: int = 20) -> list[DeadLetter]:
    """The newest dead letters first (``cityops dead-letters``, the dashboard)."""
    return [
        DeadLetter(r[0], r[1], r[2], bytes(r[3]), r[4], r[5])
        for r in conn.execute(
            "SELECT dead_letter_id, received_at, topic, payload, payload_bytes, error"
            " FROM alert_dead_letters ORDER BY dead_letter_id DESC LIMIT %s",
            (limit,),
        )
    ]


# -- notifications ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    delivery_id: int
    event_id: int
    attempts: int  # failed attempts so far
    route: Route
    payload: bytes  # the alert event JSON


def write_route(conn: psycopg.Connection, route: Route) -> int:
    """Add a notification route (``route.route_id`` is ignored); returns its id. A route that
    could never be delivered to (``alerts.notify.route_problem``) raises ValueError."""
    problem = route_problem(route)
    if problem:
        raise ValueError(f"route {route.name!r}: {problem}")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO notification_routes (name, channel, target, recipient, secret,"
            " min_severity, utilities, districts, events) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING route_id",
            (
                route.name,
                route.channel,
                route.target,
                route.recipient,
                route.secret,
                route.min_severity,
                list(route.utilities) if route.utilities is not None else None,
                list(route.districts) if route.districts is not None else None,
                list(route.events),
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])


def plan_deliveries(
    conn: psycopg.Connection, *, now: datetime | None = None, limit: int = 1000
) -> int:
    """Create one delivery per (new outbox event, matching route), due at ``now``: pending, or
    suppressed with a reason (``alerts.notify.suppression_reason``); returns how many are pending."""
    now = now or datetime.now(UTC)
    n = 0
    with conn.transaction():
        routes = [
            parse_route_row(r)
            for r in conn.execute(
                "SELECT r.route_id, r.name, r.channel, r.target, r.recipient, r.secret,"
                " r.min_severity, r.utilities, r.districts, r.events"
                " FROM notification_routes r WHERE r.enabled ORDER BY r.route_id"
            )
        ]
        rows = conn.execute(
            "SELECT e.event_id, e.payload::text, s.district_adcode, a.suppressed_by,"
            " (SELECT count(*) FROM alerts b WHERE b.sensor_id = a.sensor_id"
            "   AND b.quantity = a.quantity AND b.kind = a.kind AND b.raised_at < a.raised_at"
            "   AND b.raised_at > a.raised_at - make_interval(secs => %s))"
            " FROM alert_events e"
            " JOIN alerts a ON a.alert_id = e.alert_id"
            " LEFT JOIN sensors s ON s.sensor_id = a.sensor_id"
            " WHERE e.routed_at IS NULL ORDER BY e.event_id LIMIT %s"
            " FOR UPDATE OF e SKIP LOCKED",
            (CHATTER_WINDOW_S, limit),
        ).fetchall()
        recent: dict[int, int] = dict(
            conn.execute(
                "SELECT route_id, count(*) FROM notification_deliveries"
                " WHERE status <> 'suppressed' AND created_at > %s GROUP BY route_id",
                (now - timedelta(seconds=FLOOD_WINDOW_S),),
            ).fetchall()
        )
        for event_id, payload, district, suppressed_by, earlier in rows:
            ev = decode_alert_event(payload.encode())
            for route in routes:
                if not route_matches(route, ev, district):
                    continue
                reason = suppression_reason(
                    suppressed_by, int(earlier), recent.get(route.route_id, 0)
                )
                cur = conn.execute(
                    "INSERT INTO notification_deliveries (event_id, route_id, next_attempt_at,"
                    " status, suppressed_reason, created_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (
                        event_id,
                        route.route_id,
                        now,
                        "suppressed" if reason else "pending",
                        reason,
                        now,
                    ),
                )
                if not reason:
                    n += cur.rowcount
                    recent[route.route_id] = recent.get(route.route_id, 0) + cur.rowcount
        if rows:
            conn.execute(
                "UPDATE alert_events SET routed_at = now() WHERE event_id = ANY(%s)",
                ([r[0] for r in rows],),
            )
    return n


def claim_deliveries(
    conn: psycopg.Connection,
    *,
    now: datetime,
    worker: str = "",
    lease_s: float = 300.0,
    limit: int = 20,
) -> list[Delivery]:
    """Due deliveries, leased to ``worker`` for ``lease_s`` [s] (longer than ``limit`` sends at
    their 10 s timeouts) so that no other worker takes them meanwhile; a worker that dies mid-send delays them by the lease at most, or less when
    it restarts (``release_leases``)."""
    with conn.transaction():
        rows = conn.execute(
            "SELECT d.delivery_id, d.event_id, d.attempts, e.payload::text,"
            " r.route_id, r.name, r.channel, r.target, r.recipient, r.secret, r.min_severity,"
            " r.utilities, r.districts, r.events"
            " FROM notification_deliveries d"
            " JOIN alert_events e ON e.event_id = d.event_id"
            " JOIN notification_routes r ON r.route_id = d.route_id"
            " WHERE d.status = 'pending' AND d.next_attempt_at <= %s"
            " ORDER BY d.next_attempt_at, d.delivery_id LIMIT %s"
            " FOR UPDATE OF d SKIP LOCKED",
            (now, limit),
        ).fetchall()
        if rows:
            conn.execute(
                "UPDATE notification_deliveries SET next_attempt_at = %s, leased_by = %s"
                " WHERE delivery_id = ANY(%s)",
                (now + timedelta(seconds=lease_s), worker, [r[0] for r in rows]),
            )
    return [Delivery(r[0], r[1], r[2], parse_route_row(r[4:]), r[3].encode()) for r in rows]


def release_leases(conn: psycopg.Connection, worker: str, *, now: datetime) -> int:
    """A restarted worker takes back what its previous incarnation had claimed: with one client
    id per worker, the earlier process holding that id is gone."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE notification_deliveries SET next_attempt_at = %s"
            " WHERE status = 'pending' AND leased_by = %s AND next_attempt_at > %s",
            (now, worker, now),
        )
    return cur.rowcount


def record_delivered(conn: psycopg.Connection, delivery_id: int, *, now: datetime) -> None:
    with conn.transaction():
        conn.execute(
            "UPDATE notification_deliveries SET status = 'delivered', delivered_at = %s,"
            " attempts = attempts + 1, last_error = NULL WHERE delivery_id = %s",
            (now, delivery_id),
        )


def record_failure(
    conn: psycopg.Connection, delivery_id: int, error: str, next_attempt_at: datetime | None
) -> None:
    """A failed attempt: retry at ``next_attempt_at``, or give up (``failed``) when None."""
    with conn.transaction():
        conn.execute(
            "UPDATE notification_deliveries SET attempts = attempts + 1, last_error = %s,"
            " status = CASE WHEN %s::timestamptz IS NULL THEN 'failed' ELSE status END,"
            " next_attempt_at = coalesce(%s::timestamptz, next_attempt_at)"
            " WHERE delivery_id = %s",
            (error[:500], next_attempt_at, next_attempt_at, delivery_id),
        )


# -- incidents ------------------------------------------------------------------------------------


def _attach_incident(conn: psycopg.Connection, alert_id: int, ch: AlertChange) -> int | None:
    """Put a newly raised alert into the incident it belongs to, or open one (same transaction
    as the alert). Alerts of sensors without a location (not in the catalogue) stay alone."""
    row = conn.execute(
        "SELECT ST_X(geom), ST_Y(geom), district_adcode FROM sensors WHERE sensor_id = %s",
        (ch.sensor_id,),
    ).fetchone()
    if row is None:
        return None
    lon, lat, district = row
    point = AlertPoint(
        alert_id,
        ch.utility,
        alert_tag(ch.quantity, ch.kind),
        ch.severity,
        ch.ts_us,
        lon,
        lat,
        symptom_weight(ch.kind, ch.value, ch.limit),
    )
    ts = ts_from_us(ch.ts_us)
    window = timedelta(seconds=DEFAULT_WINDOW_S)
    # a sensor's own problems and the process stay apart: a health alert (silent, stuck,
    # spiky) joins only sensor-health incidents or one with its own sensor's alarms; a process
    # alarm does not join another sensor's health incident. Except a silent power monitor: a
    # substation's RTU that loses its supply goes silent, a symptom of the outage around it
    health = ch.kind in HEALTH_KINDS and not (ch.utility == "power" and ch.kind == "silent")
    candidates = [
        IncidentState(
            r[0], r[1], r[2], us_from_ts(r[3]), r[4], r[5], r[6], r[7], frozenset(r[8]), r[9]
        )
        for r in conn.execute(
            "SELECT incident_id, utility, severity, last_alert_at, ST_X(centre), ST_Y(centre),"
            " alert_count, radius_m, kinds, centre_weight, kind = 'sensor_health',"
            " EXISTS (SELECT 1 FROM incident_sensors m WHERE m.incident_id = i.incident_id"
            "         AND m.sensor_id = %s)"
            " FROM incidents i"
            " WHERE state = 'open' AND utility = %s AND last_alert_at BETWEEN %s AND %s"
            " ORDER BY incident_id FOR UPDATE",
            (ch.sensor_id, ch.utility, ts - window, ts + window),
        )
        if r[11] or r[10] == health
    ]
    chosen = choose_incident(point, candidates)
    if chosen is None and ch.utility == "water" and not health:
        chosen = _area_incident(conn, ch, candidates)
    inc = join_incident(chosen, point) if chosen else new_incident(point)
    # a process alarm from a sensor already flagged faulty carries that flag into its incident
    flags = {
        alert_tag(q, k)
        for q, k in conn.execute(
            "SELECT quantity, kind FROM alerts WHERE sensor_id = %s AND cleared_at IS NULL"
            " AND kind = ANY(%s) AND alert_id <> %s",
            (ch.sensor_id, sorted(HEALTH_KINDS), alert_id),
        )
    }
    if flags and ch.kind not in HEALTH_KINDS:
        inc = replace(inc, kinds=inc.kinds | flags)
    # a faulty sensor's process alarms are put down to it: the incident is a sensor problem
    # when every sensor with a process alarm in it is flagged faulty (in it, or right now)
    is_health = ch.kind in HEALTH_KINDS
    # this alert's sensor is flagged by this alert, by an active fault alert, or by a fault
    # alert it already has in the incident
    this_flagged = is_health or bool(flags)
    if not this_flagged and chosen is not None:
        this_flagged = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM incident_sensors WHERE incident_id = %s"
            " AND sensor_id = %s AND health)",
            (chosen.incident_id, ch.sensor_id),
        ).fetchone() == (True,)
    suspect_only = False
    if this_flagged:
        # and so is every other sensor with a process alarm in the incident
        unflagged = (
            conn.execute(
                "SELECT 1 FROM incident_sensors m WHERE m.incident_id = %s AND m.process"
                " AND NOT m.health AND m.sensor_id <> %s AND NOT EXISTS (SELECT 1 FROM alerts a"
                " WHERE a.sensor_id = m.sensor_id AND a.cleared_at IS NULL AND a.kind = ANY(%s))"
                " LIMIT 1",
                (chosen.incident_id, ch.sensor_id, sorted(HEALTH_KINDS)),
            ).fetchone()
            if chosen is not None
            else None
        )
        suspect_only = unflagged is None
    zh, en = incident_explanation(inc, suspect_only=suspect_only)
    values = (
        incident_kind(inc.utility, inc.kinds, suspect_only=suspect_only),
        inc.severity,
        ts_from_us(inc.last_alert_us),
        inc.count,
        sorted(inc.kinds),
        inc.lon,
        inc.lat,
        inc.radius_m,
        zh,
        en,
        inc.weight,
    )
    if chosen:
        conn.execute(
            "UPDATE incidents SET kind = %s, severity = %s, last_alert_at = %s, alert_count = %s,"
            " kinds = %s, centre = ST_SetSRID(ST_MakePoint(%s, %s), 4326), radius_m = %s,"
            " explanation_zh = %s, explanation_en = %s, centre_weight = %s, updated_at = now()"
            " WHERE incident_id = %s",
            (*values, chosen.incident_id),
        )
        incident_id = chosen.incident_id
    else:
        r = conn.execute(
            "INSERT INTO incidents (kind, severity, last_alert_at, alert_count, kinds, centre,"
            " radius_m, explanation_zh, explanation_en, centre_weight, utility, opened_at,"
            " district_adcode) VALUES (%s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326),"
            " %s, %s, %s, %s, %s, %s, %s) RETURNING incident_id",
            (*values, inc.utility, ts, district),
        ).fetchone()
        assert r is not None
        incident_id = int(r[0])
    conn.execute("UPDATE alerts SET incident_id = %s WHERE alert_id = %s", (incident_id, alert_id))
    conn.execute(
        "INSERT INTO incident_sensors (incident_id, sensor_id, health, process)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (incident_id, sensor_id) DO UPDATE"
        " SET health = incident_sensors.health OR EXCLUDED.health,"
        " process = incident_sensors.process OR EXCLUDED.process",
        (incident_id, ch.sensor_id, is_health, not is_health),
    )
    return incident_id


_GROUP_LOCK = 0x0C17_0906  # one grouper at a time, whichever worker


AREA_INCIDENT_KINDS = ("water_burst", "water_leak")


def _area_incident(
    conn: psycopg.Connection, ch: AlertChange, candidates: Sequence[IncidentState]
) -> IncidentState | None:
    """Grouping by topology: an open burst or leak incident of a metered area this alert's
    sensor is inside belongs to it, however far from the inlet (the burst's pressure falls
    downstream). Among the candidates of the time window only."""
    if not candidates:
        return None
    row = conn.execute(
        "SELECT i.incident_id FROM incidents i"
        " JOIN incident_sensors m ON m.incident_id = i.incident_id"
        " JOIN metered_area_sensors a ON a.sensor_id = m.sensor_id"
        " JOIN metered_area_sensors mine ON mine.area_id = a.area_id AND mine.sensor_id = %s"
        " WHERE i.incident_id = ANY(%s) AND i.kind = ANY(%s)"
        " ORDER BY i.last_alert_at DESC LIMIT 1",
        (ch.sensor_id, [c.incident_id for c in candidates], list(AREA_INCIDENT_KINDS)),
    ).fetchone()
    if row is None:
        return None
    return next(c for c in candidates if c.incident_id == row[0])


def group_new_alerts(conn: psycopg.Connection, *, limit: int = 100) -> int:
    """Put alerts not yet grouped into their incidents, oldest raise first (the same order
    whatever the batching), ``limit`` per transaction; returns how many (0 when another worker
    is grouping). The alerts' rows are not locked while it thinks, so the engine's next clears
    never wait for it."""
    with conn.transaction():
        got = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (_GROUP_LOCK,)).fetchone()
        if got != (True,):
            return 0
        rows = conn.execute(
            "SELECT alert_id, sensor_id, utility, quantity, kind, severity, value, limit_value,"
            " raised_at FROM alerts WHERE grouped_at IS NULL ORDER BY raised_at, alert_id"
            " LIMIT %s",
            (limit,),
        ).fetchall()
        for alert_id, sid, utility, quantity, kind, severity, value, limit_value, at in rows:
            ch = AlertChange(
                "raised",
                sid,
                utility,
                quantity,
                kind,
                severity,
                value,
                limit_value,
                us_from_ts(at),
                "",
                "",
            )
            _attach_incident(conn, alert_id, ch)
        if rows:
            conn.execute(
                "UPDATE alerts SET grouped_at = now() WHERE alert_id = ANY(%s)",
                ([r[0] for r in rows],),
            )
    return len(rows)


def resolve_quiet_incidents(conn: psycopg.Connection, *, now: datetime | None = None) -> int:
    """Resolve open incidents with no active alert and no new alert for the grouping window."""
    now = now or datetime.now(UTC)
    with conn.transaction():
        cur = conn.execute(
            "UPDATE incidents i SET state = 'resolved', resolved_at = %s, updated_at = now()"
            " WHERE state = 'open' AND last_alert_at < %s AND NOT EXISTS"
            " (SELECT 1 FROM alerts a WHERE a.incident_id = i.incident_id AND a.cleared_at IS NULL)",
            (now, now - timedelta(seconds=DEFAULT_WINDOW_S)),
        )
    return cur.rowcount


@dataclass(frozen=True, slots=True)
class IncidentRow:
    incident_id: int
    utility: str
    kind: str
    severity: str
    state: str
    alert_count: int
    radius_m: float
    lon: float
    lat: float
    alert_ids: tuple[int, ...]
    explanation_zh: str
    explanation_en: str
    likely_location: str | None = None
    affected: dict[str, Any] | None = None  # alerts/enrich.py; None until computed


def read_open_incidents(conn: psycopg.Connection) -> list[IncidentRow]:
    """Open incidents with their alerts and network context (for the dashboard and tests)."""
    rows = conn.execute(
        "SELECT i.incident_id, i.utility, i.kind, i.severity, i.state, i.alert_count, i.radius_m,"
        " ST_X(i.centre), ST_Y(i.centre),"
        " coalesce(array_agg(a.alert_id ORDER BY a.alert_id)"
        "   FILTER (WHERE a.alert_id IS NOT NULL), '{}'),"
        " i.explanation_zh, i.explanation_en, i.likely_location,"
        " CASE WHEN i.enriched_at IS NULL THEN NULL ELSE i.affected END"
        " FROM incidents i LEFT JOIN alerts a ON a.incident_id = i.incident_id"
        " WHERE i.state = 'open' GROUP BY i.incident_id ORDER BY i.incident_id"
    ).fetchall()
    return [
        IncidentRow(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            tuple(r[9]),
            r[10],
            r[11],
            r[12],
            r[13],
        )
        for r in rows
    ]


# -- evaluation input (sim_ground_truth is written by the simulators) ------------------------------


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    scenario: str
    sensors: int
    start_us: int
    end_us: int


def read_evaluation_input(
    conn: psycopg.Connection, run_id: str, sensor_ids: Sequence[str] | None = None
) -> tuple[RunInfo, list[TruthEvent], list[DetectionRecord]]:
    """A simulator run, its ground truth, and the incidents raised during it (by reading time);
    ``sensor_ids``: only incidents with an alert of one of these sensors (the run's own, when
    other runs of the same dates share the database)."""
    run = conn.execute(
        "SELECT run_id, scenario, sensors, sim_start, sim_end FROM sim_runs WHERE run_id = %s",
        (run_id,),
    ).fetchone()
    if run is None:
        raise LookupError(f"no simulator run {run_id!r}")
    info = RunInfo(run[0], run[1], int(run[2]), us_from_ts(run[3]), us_from_ts(run[4]))
    truth = [
        TruthEvent(
            r[0],
            r[1],
            r[2],
            r[3],
            us_from_ts(r[4]),
            us_from_ts(r[5]) if r[5] else None,
            r[6],
            r[7],
            frozenset(r[8]),
        )
        for r in conn.execute(
            "SELECT event_id, kind, type, network, starts_at, ends_at, ST_X(geom), ST_Y(geom),"
            " affected_sensors FROM sim_ground_truth WHERE run_id = %s ORDER BY event_id",
            (run_id,),
        )
    ]
    detections = [
        DetectionRecord(r[0], r[1], r[2], us_from_ts(r[3]), r[4], r[5], frozenset(r[6]))
        for r in conn.execute(
            "SELECT i.incident_id, i.utility, i.kind, i.opened_at, ST_X(i.centre), ST_Y(i.centre),"
            " array_agg(DISTINCT a.sensor_id) FROM incidents i"
            " JOIN alerts a ON a.incident_id = i.incident_id"
            " WHERE i.opened_at BETWEEN %s AND %s"
            " AND (%s::text[] IS NULL OR EXISTS (SELECT 1 FROM alerts m"
            "      WHERE m.incident_id = i.incident_id AND m.sensor_id = ANY(%s::text[])))"
            " GROUP BY i.incident_id ORDER BY i.incident_id",
            (
                run[3],
                run[4] + timedelta(seconds=LATE_S),
                None if sensor_ids is None else list(sensor_ids),
                None if sensor_ids is None else list(sensor_ids),
            ),
        )
    ]
    return info, truth, detections
