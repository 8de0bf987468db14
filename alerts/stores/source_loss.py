"""Source losses: ``source_losses`` (what the engine's loss rule opened, grew and closed) and
``source_loss_rule`` (the rule, one row); migration 0077. The rule itself is pure
(alerts/source_loss.py); here it is read and its losses written."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from alerts.source_loss import (
    SourceLoss,
    SourceLossRule,
    describe,
    encode_notice,
    loss_notice,
)
from alerts.stores.outbox import OutboxEvent, queue_loss_events
from alerts.stores.times import ts_from_us, us_from_ts
from sensors.topics import source_loss_topic


def read_rule(conn: psycopg.Connection) -> SourceLossRule:
    """The configured rule (the defaults when the row is missing)."""
    row = conn.execute(
        "SELECT min_sensors, min_share, overdue_factor, window_s, settle_s, enabled"
        " FROM source_loss_rule WHERE id = 1"
    ).fetchone()
    if row is None:
        return SourceLossRule()
    return SourceLossRule(
        int(row[0]), float(row[1]), float(row[2]), float(row[3]), float(row[4]), bool(row[5])
    )


def read_sensor_districts(conn: psycopg.Connection) -> dict[str, int | None]:
    """Active sensor -> its district's adcode (the loss rule's narrowest scope)."""
    return {
        r[0]: r[1]
        for r in conn.execute(
            "SELECT sensor_id, district_adcode FROM sensors WHERE status = 'active'"
        )
    }


def read_open_losses(conn: psycopg.Connection, worker: str) -> tuple[SourceLoss, ...]:
    """The open losses this worker (its partition ``k/n``) left, for a restart."""
    rows = conn.execute(
        "SELECT scope, scope_value, sensors, group_size, since, noticed_at, back_at"
        " FROM source_losses WHERE state = 'open' AND worker = %s ORDER BY loss_id",
        (worker,),
    ).fetchall()
    return tuple(
        SourceLoss(
            scope,
            value,
            frozenset(sensors),
            size,
            us_from_ts(since),
            us_from_ts(noticed),
            None if back is None else us_from_ts(back),
        )
        for scope, value, sensors, size, since, noticed, back in rows
    )


def write_losses(
    conn: psycopg.Connection,
    losses: Sequence[SourceLoss],
    worker: str,
    tz: str = "Asia/Shanghai",
) -> list[OutboxEvent]:
    """Each opened, grown, back or closed loss, in one transaction: a scope's open row is the
    loss (one open per worker and scope), so it is updated in place, or inserted. An opened
    loss queues its ``source_lost`` event in the outbox and a closed one its ``source_back``,
    in the same transaction (once each per loss); returns the events queued, to publish."""
    events: list[tuple[int, str, str, bytes]] = []
    with conn.transaction():
        for loss in losses:
            zh, en = describe(loss)
            values = {
                "worker": worker,
                "scope": loss.scope,
                "value": loss.scope_value,
                "sensors": sorted(loss.sensors),
                "size": loss.group_size,
                "since": ts_from_us(loss.since_us),
                "noticed": ts_from_us(loss.noticed_us),
                "back": None if loss.back_us is None else ts_from_us(loss.back_us),
                "ended": None if loss.ended_us is None else ts_from_us(loss.ended_us),
                "state": "open" if loss.is_open else "closed",
                "zh": zh,
                "en": en,
            }
            row = conn.execute(
                "UPDATE source_losses SET sensors = %(sensors)s, back_at = %(back)s,"
                " ended_at = %(ended)s, state = %(state)s, explanation_zh = %(zh)s,"
                " explanation_en = %(en)s, updated_at = now()"
                " WHERE state = 'open' AND worker = %(worker)s AND scope = %(scope)s"
                " AND coalesce(scope_value, '') = coalesce(%(value)s, '') RETURNING loss_id",
                values,
            ).fetchone()
            told: list[str] = []
            if row is None:
                row = conn.execute(
                    "INSERT INTO source_losses (worker, scope, scope_value, sensors, group_size,"
                    " since, noticed_at, back_at, ended_at, state, explanation_zh,"
                    " explanation_en) VALUES (%(worker)s, %(scope)s, %(value)s, %(sensors)s,"
                    " %(size)s, %(since)s, %(noticed)s, %(back)s, %(ended)s, %(state)s, %(zh)s,"
                    " %(en)s) RETURNING loss_id",
                    values,
                ).fetchone()
                told.append("source_lost")
            if not loss.is_open:
                told.append("source_back")
            assert row is not None
            loss_id = int(row[0])
            events += [
                (
                    loss_id,
                    e,
                    source_loss_topic(loss_id),
                    encode_notice(loss_notice(loss, loss_id, e, tz)),
                )
                for e in told
            ]
        return queue_loss_events(conn, events)


def acknowledge_loss(conn: psycopg.Connection, loss_id: int, user: str) -> str:
    """A person takes an open source loss on (it still closes by itself when the data comes
    back). Returns ``acknowledged``, ``already`` (somebody did before: who stays recorded),
    ``closed`` or ``unknown``."""
    if not user.strip():
        raise ValueError("acknowledging a source loss needs the acting user")
    with conn.transaction():
        row = conn.execute(
            "SELECT state, acknowledged_by FROM source_losses WHERE loss_id = %s FOR UPDATE",
            (loss_id,),
        ).fetchone()
        if row is None:
            return "unknown"
        if row[0] != "open":
            return "closed"
        if row[1] is not None:
            return "already"
        conn.execute(
            "UPDATE source_losses SET acknowledged_by = %s, acknowledged_at = now()"
            " WHERE loss_id = %s",
            (user, loss_id),
        )
    return "acknowledged"
