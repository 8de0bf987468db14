"""Adapters to the outside notification channels: HTTP (webhooks, SMS gateways) and SMTP.

Each call either returns (the channel accepted the message) or raises ``DeliveryError``. The
routes' targets and recipients are secrets at rest (SM4-GCM, decision 0072) and may carry
tokens or credentials, so no error message quotes them: they go to ``last_error`` and the log.
"""

from __future__ import annotations

import http.client
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

from alerts.notify import HttpRequest

HTTP_TIMEOUT_S = 10.0
SMTP_TIMEOUT_S = 10.0


class DeliveryError(RuntimeError):
    pass


def post_http(req: HttpRequest, timeout_s: float = HTTP_TIMEOUT_S) -> int:
    """POST; any 2xx is accepted. Only http(s) URLs (no file:, ftp: ...)."""
    try:
        scheme = urlsplit(req.url).scheme
    except ValueError as exc:
        raise DeliveryError(f"bad URL: {exc}") from None
    if scheme not in ("http", "https"):
        raise DeliveryError(f"refusing non-HTTP URL (scheme {scheme[:10]!r})")
    try:
        request = urllib.request.Request(req.url, data=req.body, headers=req.headers, method="POST")
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        # a receiver answering garbage (BadStatusLine, IncompleteRead), a URL urllib refuses
        # (InvalidURL, ValueError): this delivery failed, not the notifier
        text = str(exc).replace(req.url, "<url>")[:200]
        raise DeliveryError(f"{type(exc).__name__}: {text}") from None
    if not 200 <= status < 300:
        raise DeliveryError(f"HTTP {status}")
    return status


def send_smtp(
    server_url: str, msg: EmailMessage, to: list[str], timeout_s: float = SMTP_TIMEOUT_S
) -> None:
    """Send through ``smtp://[user:pass@]host:port[?starttls=1]`` or ``smtps://...``."""
    if not to:
        raise DeliveryError("no recipient")
    try:
        u = urlsplit(server_url)
    except ValueError as exc:
        raise DeliveryError(f"bad SMTP URL: {exc}") from None
    if u.scheme not in ("smtp", "smtps"):
        raise DeliveryError(f"not an SMTP URL: {u.scheme!r}")
    try:
        host = u.hostname or "127.0.0.1"
        if u.scheme == "smtps":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, u.port or 465, timeout=timeout_s, context=ssl.create_default_context()
            )
        else:
            client = smtplib.SMTP(host, u.port or 25, timeout=timeout_s)
        with client:
            if parse_qs(u.query).get("starttls") == ["1"]:
                client.starttls(context=ssl.create_default_context())
            if u.username:
                client.login(unquote(u.username), unquote(u.password or ""))
            refused = client.send_message(msg, to_addrs=to)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        # ValueError: a port that is not a number, a header with a line break
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from None
    if refused:
        raise DeliveryError(f"{len(refused)} of {len(to)} recipients refused")
