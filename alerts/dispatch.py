"""Deliver notifications from the outbox: plan routes, send due deliveries, record the outcome.

Runs as the ``notifier`` thread of `cityops alerts` (its own database connection, so a slow SMTP
server never delays alert evaluation), or once per call in tests. No SQL here (alerts/stores/)
and no sockets (alerts/channels.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import psycopg

from alerts import channels
from alerts.events import decode_alert_event
from alerts.notify import (
    CHATTER_WINDOW_S,
    FLOOD_WINDOW_S,
    HttpRequest,
    Route,
    build_email,
    build_loss_email,
    build_loss_sms_request,
    build_sms_request,
    build_webhook_request,
    loss_route_matches,
    recipients,
    retry_delay_s,
    route_matches,
    route_problem,
    suppression_reason,
)
from alerts.source_loss import decode_notice
from alerts.stores import alert_rows, notifications, outbox
from alerts.stores.grouping import group_new_alerts
from alerts.stores.notifications import Claimed, open_route
from cityops.kernel.crypto import EMPTY_KEYRING, Keyring

log = logging.getLogger("alerts.notify")

DEFAULT_SENDER = "cityops-alerts@localhost"


@dataclass(frozen=True, slots=True)
class Senders:
    """The channel adapters; tests pass the real ones pointed at local servers. ``keyring``
    decrypts the routes' stored secrets and SM2-signs webhook and SMS-gateway requests."""

    http: Callable[[HttpRequest], object] = channels.post_http
    smtp: Callable[[str, EmailMessage, list[str]], None] = channels.send_smtp
    sender_address: str = DEFAULT_SENDER
    keyring: Keyring = EMPTY_KEYRING


@dataclass
class DeliveryStats:
    planned: int = 0
    delivered: int = 0
    retried: int = 0
    gave_up: int = 0
    errors: list[str] = field(default_factory=list)


def plan_deliveries(
    conn: psycopg.Connection, *, now: datetime | None = None, limit: int = 1000
) -> int:
    """Create one delivery per (new outbox event, matching route), due at ``now``: pending, or
    suppressed with a reason (``alerts.notify.suppression_reason``); returns how many are
    pending. One transaction: the events are locked (other workers skip them) until routed."""
    now = now or datetime.now(UTC)
    pending = 0
    with conn.transaction():
        routes = notifications.read_routes(conn)
        events = outbox.lock_unrouted(conn, limit)
        alert_ids = [e[1] for e in events if e[1] is not None]
        facts = alert_rows.read_routing_facts(conn, alert_ids, CHATTER_WINDOW_S)
        recent = notifications.count_recent(conn, now - timedelta(seconds=FLOOD_WINDOW_S))
        for event_id, alert_id, payload in events:
            if alert_id is None:
                pending += _plan_loss(conn, event_id, payload, routes, now)
                continue
            event, fact = decode_alert_event(payload), facts[alert_id]
            for route in routes:
                if not route_matches(route, event, fact.district_adcode):
                    continue
                seen = recent.get(route.route_id, 0)
                reason = suppression_reason(fact.suppressed_by, fact.earlier_raises, seen)
                added = notifications.add_delivery(conn, event_id, route.route_id, now, reason)
                if not reason:
                    pending += added
                    recent[route.route_id] = seen + added
        outbox.mark_routed(conn, [e[0] for e in events])
    return pending


def _plan_loss(
    conn: psycopg.Connection, event_id: int, payload: bytes, routes: list[Route], now: datetime
) -> int:
    """A source loss's deliveries: one per matching route, never suppressed (one message that
    stands for thousands of silent sensors is not a flood, and no maintenance window covers
    the whole source); returns how many were added."""
    notice = decode_notice(payload)
    if notice is None:
        return 0
    return sum(
        notifications.add_delivery(conn, event_id, route.route_id, now, None)
        for route in routes
        if loss_route_matches(route, notice)
    )


def deliver_once(
    conn: psycopg.Connection,
    *,
    now: datetime | None = None,
    senders: Senders = Senders(),
    worker: str = "",
) -> DeliveryStats:
    """Plan deliveries for new events, then try every due delivery once."""
    now = now or datetime.now(UTC)
    stats = DeliveryStats(planned=plan_deliveries(conn, now=now))
    claimed = notifications.claim_deliveries(conn, now=now, worker=worker)
    payloads = outbox.read_payloads(conn, [c.event_id for c in claimed])
    for d in claimed:
        try:
            _send(d, payloads[d.event_id], now, senders)
        except Exception as exc:
            # any failure of one delivery is that delivery's (a receiver answering garbage, a
            # body that cannot be built, a bug in an adapter): it is recorded and retried with
            # back-off like any refusal, and the rest of the claim goes on
            _record_failure(conn, d, exc, now, stats)
            continue
        notifications.record_delivered(conn, d.delivery_id, now=now)
        stats.delivered += 1
    return stats


def _record_failure(
    conn: psycopg.Connection, d: Claimed, exc: Exception, now: datetime, stats: DeliveryStats
) -> None:
    """Retry with back-off, or give up after the last attempt."""
    error = str(exc) if isinstance(exc, channels.DeliveryError) else _describe(exc)
    delay = retry_delay_s(d.attempts + 1)
    retry_at = now + timedelta(seconds=delay) if delay else None
    notifications.record_failure(conn, d.delivery_id, error, retry_at)
    stats.errors.append(error)
    if delay is None:
        stats.gave_up += 1
        log.error("gave up delivery %s via %s: %s", d.delivery_id, d.route.name, error)
    else:
        stats.retried += 1
        log.warning(
            "delivery %s via %s failed (%s); retry in %.0f s",
            d.delivery_id,
            d.route.name,
            error,
            delay,
        )


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _send(d: Claimed, payload: bytes, now: datetime, senders: Senders) -> None:
    """One attempt at one delivery of ``payload`` (the alert event JSON). The route's secrets
    are decrypted here, for this attempt only; a key missing from the key ring fails this
    delivery (recorded, retried), not the others. No decrypted value is logged: errors name
    the route, and the channels' errors never quote a URL's credentials."""
    route = open_route(d.route, senders.keyring)
    problem = route_problem(route)  # a route written before validation, or behind its back
    if problem:
        raise channels.DeliveryError(f"bad route: {problem}")
    now_s = int(now.timestamp())
    keyring = senders.keyring
    if route.channel == "webhook":
        senders.http(build_webhook_request(route, payload, d.delivery_id, now_s, keyring))
    elif route.channel == "sms":
        if notice := decode_notice(payload):
            request = build_loss_sms_request(route, notice, d.delivery_id, now_s, keyring)
        else:
            event = decode_alert_event(payload)
            request = build_sms_request(route, event, d.delivery_id, now_s, keyring)
        senders.http(request)
    elif route.channel == "email":
        if notice := decode_notice(payload):
            msg = build_loss_email(route, notice, d.delivery_id, senders.sender_address, now)
        else:
            event = decode_alert_event(payload)
            msg = build_email(route, event, d.delivery_id, senders.sender_address, now)
        senders.smtp(route.target, msg, recipients(route))
    else:
        raise channels.DeliveryError(f"unknown channel {route.channel!r}")


def run_notifier(
    connect: Callable[[], psycopg.Connection],
    stop: threading.Event,
    *,
    worker: str,
    interval_s: float = 0.5,
    senders: Senders = Senders(),
) -> None:
    """Loop until ``stop``: deliver, then wait ``interval_s``; reconnect after database errors.
    ``worker`` names this notifier in leases (the engine's client id)."""
    conn: psycopg.Connection | None = None
    released = False
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = connect()
            if not released:
                notifications.release_leases(conn, worker, now=datetime.now(UTC))
                released = True
            stats = deliver_once(conn, senders=senders, worker=worker)
            if stats.delivered == 20:  # a full claim: more may be due, do not wait
                continue
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("notifier: database error (%s); retrying", exc)
            if conn is not None:
                conn.close()
            conn = None
            released = False  # take back what this worker claimed before the error
        except Exception:  # a bug in one delivery must not silence all notifications
            log.exception("notifier: unexpected error")
        stop.wait(interval_s)
    if conn is not None:
        conn.close()


def run_enricher(
    connect: Callable[[], psycopg.Connection], stop: threading.Event, *, interval_s: float = 5.0
) -> None:
    """Loop until ``stop``: put new and grown incidents in their network (alerts/enrich.py).
    Its own thread and connection: building a network graph must not delay evaluation.

    Every worker of the engine runs this loop, but only the one holding the enricher role (an
    advisory lock on its connection, ``take_enricher_role``) enriches; the others stand by and
    one of them takes over when that worker's connection goes."""
    from alerts.enrich import enrich_incidents, take_enricher_role  # the GIS stack loads here
    from gis.analysis import NetworkCache

    cache = NetworkCache()
    conn: psycopg.Connection | None = None
    leader = False
    while not stop.wait(interval_s):
        try:
            if conn is None or conn.closed:
                conn = connect()
                leader = False
            if not leader:
                leader = take_enricher_role(conn)
                if leader:
                    log.info("enricher: this worker enriches incidents")
            if leader:
                enrich_incidents(conn, cache)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("enricher: database error (%s); retrying", exc)
            if conn is not None:
                conn.close()
            conn = None
            leader = False
        except Exception:  # one odd incident must not stop the others' enrichment
            log.exception("enricher: unexpected error")
    if conn is not None:
        conn.close()


def run_grouper(
    connect: Callable[[], psycopg.Connection],
    stop: threading.Event,
    wake: threading.Event,
    *,
    interval_s: float = 1.0,
) -> None:
    """Loop until ``stop``: put newly stored alerts into incidents (``group_new_alerts``),
    at once when the engine ``wake``s it after publishing, else every ``interval_s``. Its own
    thread and connection, so that an alert storm's grouping never holds up the next batch's
    alerts; oldest raise first, whatever the batching."""
    conn: psycopg.Connection | None = None
    while not stop.is_set():
        wake.wait(interval_s)
        wake.clear()
        try:
            if conn is None or conn.closed:
                conn = connect()
            while group_new_alerts(conn) and not stop.is_set():
                pass
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            log.warning("grouper: database error (%s); retrying", exc)
            if conn is not None:
                conn.close()
            conn = None
            stop.wait(1.0)
        except Exception:  # keep grouping the others; the failed one is retried next round
            log.exception("grouper: unexpected error")
            stop.wait(1.0)
    if conn is not None:
        conn.close()
