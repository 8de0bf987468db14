"""Notifications, the pure part: routing, signed webhook requests, e-mails, retry schedule.

Channels (``notification_routes.channel``):

* ``webhook``: HTTP POST of the alert event JSON to ``target``, signed with HMAC-SHA256 over
  ``"<unix seconds>." + body`` using the route's ``secret``; header
  ``X-Cityops-Signature: t=<unix seconds>,v1=<hex>`` (the scheme Stripe and GitHub popularised:
  the timestamp in the MAC stops replays of old bodies). ``Idempotency-Key`` is the delivery id,
  the same on every retry: a receiver that saw it already must not act twice.
  With an SM2 signing key in the key ring, every request also carries
  ``X-Cityops-Signature-SM2: keyid=<id>,t=<unix seconds>,sm2=<base64 DER>``, the SM2 signature
  (GB/T 32918, default ID) of the same ``"<t>." + body``, which a receiver checks with the
  published public key alone (``cityops.kernel.crypto.verify_signature_header``; decision 0072).
* ``sms``: a generic SMS-gateway webhook, same signing; body ``{"to": recipient, "text": ...,
  "alert_id": ..., "event": ...}`` with the Chinese one-liner (SMS length in mind).
* ``email``: SMTP to ``recipient`` via the server in ``target`` (``smtp://[user:pass@]host:port``
  or ``smtps://``; ``?starttls=1`` to upgrade), bilingual subject and body, and a Message-ID
  derived from the delivery id, so a retried message is recognisably the same message.

Delivery is at least once: a delivery is retried (``retry_delay_s``) until the channel accepts it,
then never again; a crash between "accepted" and "recorded" can repeat it once, which the
idempotency key and Message-ID let receivers discard.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from alerts.events import AlertEvent
from alerts.messages import SEVERITIES, UTILITY_NAMES
from alerts.source_loss import LossNotice
from cityops.kernel.crypto import Keyring, signature_header

SIGNATURE_HEADER = "X-Cityops-Signature"
SM2_SIGNATURE_HEADER = "X-Cityops-Signature-SM2"
# ISA-18.2 chattering: the same alert raised 3 times in a short while; after the second, the
# route hears no more of it for CHATTER_WINDOW_S (the alerts are still stored and published)
CHATTER_RAISES = 3
CHATTER_WINDOW_S = 600
# flood: at most this many notifications per route per FLOOD_WINDOW_S; the rest are recorded as
# suppressed (visible on the dashboard) rather than paging someone 300 times
FLOOD_MAX = 20
FLOOD_WINDOW_S = 600
MAX_ATTEMPTS = 10
SIGNATURE_TOLERANCE_S = 300

_SEVERITY_ZH = {"info": "提示", "warning": "警告", "major": "重要", "critical": "紧急"}
_EVENT_ZH = {"raised": "告警", "cleared": "恢复", "escalated": "升级"}


@dataclass(frozen=True, slots=True)
class Route:
    route_id: int
    name: str
    channel: str  # webhook | email | sms
    target: str  # URL of the webhook / SMS gateway, or the SMTP server
    recipient: str | None = None  # e-mail address(es), comma separated, or phone number
    secret: str | None = None  # HMAC key (webhook, sms)
    min_severity: str = "warning"
    utilities: tuple[str, ...] | None = None  # None: every utility
    districts: tuple[int, ...] | None = None  # None: every district (adcode)
    events: tuple[str, ...] = ("raised", "escalated")


CHANNELS = ("webhook", "sms", "email")
_TARGET_SCHEMES = {
    "webhook": ("http", "https"),
    "sms": ("http", "https"),
    "email": ("smtp", "smtps"),
}


def route_problem(route: Route) -> str | None:
    """Why a route cannot be delivered to, or None: unknown channel, a target that is not an
    http(s) URL (webhook, SMS gateway) or an smtp(s) URL with a host and a numeric port, an
    e-mail route without recipients, or line breaks in a recipient (a header injection)."""
    if route.channel not in CHANNELS:
        return f"unknown channel {route.channel!r}"
    target = route.target or ""
    if any(c in target for c in "\r\n\t ") or len(target) > 2000:
        return "target has blanks or line breaks, or is too long"
    try:
        u = urlsplit(target)
        _ = u.port  # ValueError when not a number or out of range
    except ValueError as exc:
        return f"bad target URL: {exc}"
    schemes = _TARGET_SCHEMES[route.channel]
    if u.scheme not in schemes or not u.hostname:
        return f"{route.channel} target must be a {'/'.join(schemes)} URL with a host"
    if route.recipient is not None and any(c in route.recipient for c in "\r\n"):
        return "recipient has line breaks"
    if route.channel == "email" and not recipients(route):
        return "e-mail route without recipients"
    if route.channel == "sms" and not (route.recipient or "").strip():
        return "SMS route without a phone number"
    return None


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def route_matches(route: Route, event: AlertEvent, district_adcode: int | None) -> bool:
    """Routing by event type, minimum severity, utility and district."""
    if event.event not in route.events:
        return False
    if severity_rank(event.severity) < severity_rank(route.min_severity):
        return False
    if route.utilities is not None and event.utility not in route.utilities:
        return False
    return route.districts is None or district_adcode in route.districts


def loss_route_matches(route: Route, notice: LossNotice) -> bool:
    """A source loss reaches whoever would be paged by a critical alert where it is: a route
    taking raised alerts of its severity, of its utility (every utility's routes for a stream
    or a district), of its district (every district's routes for a stream or a utility).
    Its closing goes to the same routes: whoever heard it stop hears it come back."""
    if "raised" not in route.events:
        return False
    if severity_rank(notice.severity) < severity_rank(route.min_severity):
        return False
    if route.utilities is not None and notice.utility not in (None, *route.utilities):
        return False
    if notice.district_adcode is not None and route.districts is not None:
        return notice.district_adcode in route.districts
    return True


def suppression_reason(
    suppressed_by: str | None, earlier_raises: int, route_recent: int
) -> str | None:
    """Why a delivery is not sent, or None: ``maintenance`` (the alert was raised inside a
    maintenance window), ``chattering`` (``earlier_raises`` of the same sensor, quantity and kind
    within CHATTER_WINDOW_S before it), ``flood`` (``route_recent`` deliveries on this route within
    FLOOD_WINDOW_S)."""
    if suppressed_by:
        return "maintenance"
    if earlier_raises >= CHATTER_RAISES - 1:
        return "chattering"
    if route_recent >= FLOOD_MAX:
        return "flood"
    return None


def sign(secret: str, timestamp_s: int, body: bytes) -> str:
    """The value of ``X-Cityops-Signature`` for ``body`` sent at ``timestamp_s``."""
    mac = hmac.new(secret.encode(), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"t={timestamp_s},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, header: str, body: bytes, now_s: int, tolerance_s: int = SIGNATURE_TOLERANCE_S
) -> bool:
    """What a receiver does: constant-time comparison, and refuse stale timestamps."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        ts = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs(now_s - ts) > tolerance_s:
        return False
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    headers: dict[str, str]
    body: bytes


def build_webhook_request(
    route: Route,
    event_json: bytes,
    delivery_id: int,
    now_s: int,
    keyring: Keyring | None = None,
) -> HttpRequest:
    """The POST of ``event_json``: HMAC-signed with the route's secret if it has one, and
    SM2-signed when ``keyring`` has an active signing key."""
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Idempotency-Key": f"cityops-delivery-{delivery_id}",
        "User-Agent": "cityops-alerts",
    }
    if route.secret:
        headers[SIGNATURE_HEADER] = sign(route.secret, now_s, event_json)
    if keyring is not None and keyring.can_sign:
        headers[SM2_SIGNATURE_HEADER] = signature_header(keyring, event_json, now_s)
    return HttpRequest(route.target, headers, event_json)


def _sms_request(
    route: Route,
    text: str,
    about: dict[str, object],
    delivery_id: int,
    now_s: int,
    keyring: Keyring | None,
) -> HttpRequest:
    """The SMS gateway's request: to, text, and what it is ``about`` (the alert or the source
    loss, and the event), signed as a webhook."""
    body = json.dumps({"to": route.recipient, "text": text, **about}, ensure_ascii=False).encode()
    return build_webhook_request(route, body, delivery_id, now_s, keyring)


def build_sms_request(
    route: Route,
    event: AlertEvent,
    delivery_id: int,
    now_s: int,
    keyring: Keyring | None = None,
) -> HttpRequest:
    about = {"alert_id": event.alert_id, "event": event.event}
    return _sms_request(route, sms_text(event), about, delivery_id, now_s, keyring)


def build_loss_sms_request(
    route: Route,
    notice: LossNotice,
    delivery_id: int,
    now_s: int,
    keyring: Keyring | None = None,
) -> HttpRequest:
    """The SMS gateway's request for a source loss (its id in place of an alert's)."""
    text = f"【城市运行】{_SEVERITY_ZH[notice.severity]}：{notice.message_zh}"
    about = {"source_loss_id": notice.source_loss_id, "event": notice.event}
    return _sms_request(route, text, about, delivery_id, now_s, keyring)


def sms_text(event: AlertEvent) -> str:
    return f"【城市运行】{_SEVERITY_ZH.get(event.severity, event.severity)}{_EVENT_ZH.get(event.event, event.event)}：{event.messages.zh}"


def _email(
    route: Route,
    subject: str,
    id_header: tuple[str, str],
    lines: list[str],
    delivery_id: int,
    sender: str,
    now: datetime,
) -> EmailMessage:
    """A plain-text e-mail with a stable Message-ID per delivery, and the id of what it is
    about in ``id_header`` (name, value)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = route.recipient or ""
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Message-ID"] = f"<cityops-delivery-{delivery_id}@cityops.local>"
    msg[id_header[0]] = id_header[1]
    msg.set_content("\n".join(lines))
    return msg


def build_email(
    route: Route, event: AlertEvent, delivery_id: int, sender: str, now: datetime
) -> EmailMessage:
    """A bilingual plain-text e-mail with a stable Message-ID per delivery."""
    u_zh, u_en = UTILITY_NAMES.get(event.utility, (event.utility, event.utility))
    sev_zh = _SEVERITY_ZH.get(event.severity, event.severity)
    ev_zh = _EVENT_ZH.get(event.event, event.event)
    subject = f"[{sev_zh}/{event.severity}] {u_zh}{ev_zh} #{event.alert_id}: {event.messages.zh}"
    lines = [
        event.messages.zh,
        event.messages.en,
        "",
        f"告警编号 / alert: {event.alert_id}   事件 / event: {event.event}",
        f"级别 / severity: {sev_zh} / {event.severity}",
        f"网络 / network: {u_zh} / {u_en}   传感器 / sensor: {event.sensor_id}",
        f"数值 / value: {event.value} {event.unit}   限值 / limit: {event.limit} {event.unit}",
        f"时间 / time (UTC): {event.ts}",
    ]
    header = ("X-Cityops-Alert-Id", str(event.alert_id))
    return _email(route, subject, header, lines, delivery_id, sender, now)


def build_loss_email(
    route: Route, notice: LossNotice, delivery_id: int, sender: str, now: datetime
) -> EmailMessage:
    """A bilingual plain-text e-mail about a source loss, stable Message-ID per delivery."""
    sev_zh = _SEVERITY_ZH[notice.severity]
    subject = (
        f"[{sev_zh}/{notice.severity}] 数据源中断 #{notice.source_loss_id}: {notice.message_zh}"
    )
    ended = f"   结束 / ended (UTC): {notice.ended_at}" if notice.ended_at else ""
    lines = [
        notice.message_zh,
        notice.message_en,
        "",
        f"数据源中断编号 / source loss: {notice.source_loss_id}   事件 / event: {notice.event}",
        f"传感器 / sensors: {notice.sensors} / {notice.group_size}",
        f"自 / since (UTC): {notice.since}{ended}",
    ]
    header = ("X-Cityops-Source-Loss-Id", str(notice.source_loss_id))
    return _email(route, subject, header, lines, delivery_id, sender, now)


def recipients(route: Route) -> list[str]:
    return [r.strip() for r in (route.recipient or "").split(",") if r.strip()]


def retry_delay_s(attempts: int) -> float | None:
    """Seconds before the next attempt after ``attempts`` failures; None: give up.

    Exponential from 5 s, capped at 30 min: ten attempts span about two hours.
    """
    if attempts >= MAX_ATTEMPTS:
        return None
    return float(min(5 * 2 ** (attempts - 1), 1800))


def parse_route_row(row: Sequence[Any]) -> Route:
    """A ``notification_routes`` row (route_id ... events, in table order) as a Route."""
    rid, name, channel, target, recipient, secret, min_sev, utilities, districts, events = row
    return Route(
        int(rid),
        str(name),
        str(channel),
        str(target),
        recipient,
        secret,
        str(min_sev),
        tuple(utilities) if utilities is not None else None,
        tuple(districts) if districts is not None else None,
        tuple(events),
    )
