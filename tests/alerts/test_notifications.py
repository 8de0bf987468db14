"""Notifications: signing and routing (pure), and delivery to a local HTTP server and a local
SMTP server (aiosmtpd) through the real database, with retries and no duplicates."""

from __future__ import annotations

import contextlib
import dataclasses
import email
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import msgspec
import psycopg
import pytest
from aiosmtpd.controller import Controller

from alerts.dispatch import Senders, deliver_once
from alerts.engine import AlertChange, Evaluation
from alerts.events import AlertEvent, Messages, decode_alert_event
from alerts.notify import (
    MAX_ATTEMPTS,
    SM2_SIGNATURE_HEADER,
    Route,
    build_email,
    retry_delay_s,
    route_matches,
    sign,
    sms_text,
    verify_signature,
)
from alerts.stores.batch import write_evaluation
from alerts.stores.notifications import reencrypt_routes, write_route
from alerts.stores.times import us_from_ts
from cityops.kernel.crypto import (
    Keyring,
    generate_keys,
    load_keyring,
    load_sm2_public_pem,
    revoke_key,
    sm2_public_path,
    verify_signature_header,
)
from cityops.shell.stack import free_port
from tests.alerts.conftest import HttpSink, SmtpSink, add_sensors

T = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
EVENT = AlertEvent(
    alert_id=7,
    event="raised",
    sensor_id="gd-1",
    utility="gas",
    quantity="gas_concentration",
    kind="threshold_high",
    severity="critical",
    value=35.0,
    limit=20.0,
    unit="%LEL",
    ts="2026-11-26T08:00:00.000Z",
    messages=Messages("gd-1 可燃气体浓度 35 %LEL，超过上限 20 %LEL", "gd-1: above"),
)


def test_signature_round_trip_and_refusals() -> None:
    body = b'{"alert_id": 7}'
    header = sign("s3cret", 1_764_144_000, body)
    assert header.startswith("t=1764144000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature("s3cret", header, body, 1_764_144_000 + 10)
    assert not verify_signature("s3cret", header, body + b" ", 1_764_144_000)
    assert not verify_signature("other", header, body, 1_764_144_000)
    assert not verify_signature("s3cret", header, body, 1_764_144_000 + 301)  # replayed later
    assert not verify_signature("s3cret", "garbage", body, 1_764_144_000)


def test_routing_by_event_severity_utility_and_district() -> None:
    r = Route(
        1,
        "gas ops",
        "webhook",
        "http://x",
        min_severity="major",
        utilities=("gas",),
        districts=(510104,),
    )
    assert route_matches(r, EVENT, 510104)
    assert not route_matches(r, EVENT, 510105)
    assert not route_matches(r, EVENT, None)
    assert not route_matches(r, msgspec.structs.replace(EVENT, severity="warning"), 510104)
    assert not route_matches(r, msgspec.structs.replace(EVENT, utility="water"), 510104)
    assert not route_matches(r, msgspec.structs.replace(EVENT, event="cleared"), 510104)
    assert route_matches(dataclasses.replace(r, districts=None, utilities=None), EVENT, None)


def test_retry_schedule_and_messages() -> None:
    assert [retry_delay_s(n) for n in (1, 2, 3, 9)] == [5.0, 10.0, 20.0, 1280.0]
    assert retry_delay_s(MAX_ATTEMPTS) is None
    msg = build_email(Route(1, "m", "email", "smtp://x", "a@b.cn"), EVENT, 42, "c@d.cn", T)
    assert msg["Message-ID"] == "<cityops-delivery-42@cityops.local>"
    assert "紧急" in msg["Subject"] and "#7" in msg["Subject"]
    assert sms_text(EVENT) == "【城市运行】紧急告警：gd-1 可燃气体浓度 35 %LEL，超过上限 20 %LEL"


# -- local servers ---------------------------------------------------------------------------------


@pytest.fixture
def http_sink() -> Iterator[HttpSink]:
    sink = HttpSink({"/hook": 1, "/broken": 10_000})
    yield sink
    sink.close()


def _raise_gas_alert(conn: psycopg.Connection, sensor: str) -> int:
    ch = AlertChange(
        "raised",
        sensor,
        "gas",
        "gas_concentration",
        "threshold_high",
        "critical",
        35.0,
        20.0,
        us_from_ts(T),
        "燃气浓度超限",
        "gas above limit",
    )
    return write_evaluation(conn, Evaluation((ch,), {}))[0].alert_id


def test_webhook_email_and_sms_delivered_once_each_with_retries(
    db_url: str, http_sink: HttpSink, keyring: Keyring
) -> None:
    add_sensors(db_url, [("gd-n1", "gas", "gas_detector")])
    senders = Senders(keyring=keyring)
    smtp_port = free_port()
    smtp = SmtpSink()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE sensors SET district_adcode = 510104")
        write_route(
            conn,
            Route(
                0,
                "ops hook",
                "webhook",
                f"{http_sink.url}/hook",
                secret="k3y",
                min_severity="major",
            ),
            keyring,
        )
        write_route(
            conn,
            Route(
                0,
                "duty mail",
                "email",
                f"smtp://127.0.0.1:{smtp_port}",
                recipient="duty@gas.chengdu.example, chief@gas.chengdu.example",
                utilities=("gas",),
                districts=(510104,),
            ),
            keyring,
        )
        write_route(
            conn,
            Route(
                0, "sms", "sms", f"{http_sink.url}/sms", recipient="+8613800000000", secret="k3y"
            ),
            keyring,
        )
        write_route(
            conn,
            Route(0, "power only", "webhook", f"{http_sink.url}/power", utilities=("power",)),
            keyring,
        )
        write_route(
            conn,
            Route(0, "other district", "webhook", f"{http_sink.url}/west", districts=(510115,)),
            keyring,
        )
        alert_id = _raise_gas_alert(conn, "gd-n1")

        # first round: the webhook answers 503, the SMTP server is down, the SMS gateway is up
        s1 = deliver_once(conn, now=T, senders=senders)
        assert (s1.planned, s1.delivered, s1.retried, s1.gave_up) == (3, 1, 2, 0)
        # nothing is due again before the 5 s back-off
        assert deliver_once(conn, now=T + timedelta(seconds=2), senders=senders).delivered == 0
        controller = Controller(smtp, hostname="127.0.0.1", port=smtp_port)
        controller.start()
        try:
            s2 = deliver_once(conn, now=T + timedelta(seconds=6), senders=senders)
            assert (s2.delivered, s2.retried) == (2, 0)
            # later rounds and new rounds find nothing more to send
            assert deliver_once(conn, now=T + timedelta(hours=3), senders=senders).delivered == 0
        finally:
            controller.stop()
        rows = conn.execute(
            "SELECT r.name, d.status, d.attempts FROM notification_deliveries d"
            " JOIN notification_routes r USING (route_id) ORDER BY r.name"
        ).fetchall()
        stored = conn.execute(
            "SELECT name, target, recipient, secret FROM notification_routes ORDER BY route_id"
        ).fetchall()
    assert rows == [
        ("duty mail", "delivered", 2),
        ("ops hook", "delivered", 2),
        ("sms", "delivered", 1),
    ]

    # secrets at rest: every target, recipient and secret is an SM4-GCM envelope under the
    # active key; neither the URLs, the addresses, the phone number nor the HMAC key show
    assert len(stored) == 5
    for _name, *values in stored:
        for v in values:
            assert v is None or v.startswith(f"sm4gcm:v1:{keyring.sm4_active_id}:")
    raw = repr(stored)
    for plain in ("k3y", "duty@gas", "+8613800000000", "127.0.0.1", "smtp://"):
        assert plain not in raw

    hooks = [(h, b) for p, h, b in http_sink.requests if p == "/hook"]
    assert len(hooks) == 2  # one refused, one accepted
    assert hooks[0][0]["Idempotency-Key"] == hooks[1][0]["Idempotency-Key"]
    headers, body = hooks[1]
    assert verify_signature("k3y", headers["X-Cityops-Signature"], body, int(T.timestamp()) + 6)
    # the SM2 signature checks with the published public key file alone
    key_id = keyring.sm2_active_id
    assert key_id is not None
    published = load_sm2_public_pem(sm2_public_path(Path(keyring.source), key_id).read_bytes())
    sm2_header = _header(headers, SM2_SIGNATURE_HEADER)
    assert sm2_header.startswith(f"keyid={key_id},t={int(T.timestamp()) + 6},sm2=")
    now_s = int(T.timestamp()) + 6
    assert verify_signature_header(published, sm2_header, body, now_s)
    assert not verify_signature_header(published, sm2_header, body + b" ", now_s)
    assert not verify_signature_header(published, sm2_header, body, now_s + 301)
    sms_headers = next(h for p, h, _ in http_sink.requests if p == "/sms")
    assert _header(sms_headers, SM2_SIGNATURE_HEADER).startswith(f"keyid={key_id},")
    ev = decode_alert_event(body)
    assert (ev.alert_id, ev.event, ev.severity) == (alert_id, "raised", "critical")
    sms = [json.loads(b) for p, _, b in http_sink.requests if p == "/sms"]
    assert sms == [
        {
            "to": "+8613800000000",
            "text": "【城市运行】紧急告警：燃气浓度超限",
            "alert_id": alert_id,
            "event": "raised",
        }
    ]
    assert not [p for p, _, _ in http_sink.requests if p in ("/power", "/west")]

    assert len(smtp.messages) == 1
    rcpts, raw = smtp.messages[0]
    assert sorted(rcpts) == ["chief@gas.chengdu.example", "duty@gas.chengdu.example"]
    mail = email.message_from_bytes(raw, policy=policy.default)
    assert f"#{alert_id}" in mail["Subject"] and "紧急" in mail["Subject"]
    assert "燃气浓度超限" in mail.get_content()


def test_delivery_gives_up_after_max_attempts(
    db_url: str, http_sink: HttpSink, keyring: Keyring
) -> None:
    add_sensors(db_url, [("gd-n2", "gas", "gas_detector")])
    senders = Senders(keyring=keyring)
    with psycopg.connect(db_url, autocommit=True) as conn:
        write_route(conn, Route(0, "broken", "webhook", f"{http_sink.url}/broken"), keyring)
        _insert_route_unchecked(conn, "not http", "webhook", "file:///etc/passwd")
        _raise_gas_alert(conn, "gd-n2")
        now, gave_up = T, 0
        for _ in range(MAX_ATTEMPTS + 2):
            gave_up += deliver_once(conn, now=now, senders=senders).gave_up
            now += timedelta(hours=1)
        rows = conn.execute(
            "SELECT status, attempts, last_error FROM notification_deliveries ORDER BY delivery_id"
        ).fetchall()
    assert gave_up == 2
    assert rows[0] == ("failed", MAX_ATTEMPTS, "HTTP 503")
    assert rows[1][:2] == ("failed", MAX_ATTEMPTS) and "http/https URL" in rows[1][2]
    assert len([p for p, _, _ in http_sink.requests if p == "/broken"]) == MAX_ATTEMPTS


def _header(headers: dict[str, str], name: str) -> str:
    """A header by name, whatever case the HTTP stack gave it (``X-Cityops-Signature-Sm2``)."""
    return {k.lower(): v for k, v in headers.items()}[name.lower()]


def _insert_route_unchecked(
    conn: psycopg.Connection, name: str, channel: str, target: str, recipient: str | None = None
) -> None:
    """A route written behind write_route's back (an older tool, a manual INSERT)."""
    conn.execute(
        "INSERT INTO notification_routes (name, channel, target, recipient) VALUES (%s, %s, %s, %s)",
        (name, channel, target, recipient),
    )


class GarbageServer:
    """A raw TCP server answering every request with an invalid HTTP status line."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            with client:
                self.connections += 1
                client.settimeout(2)
                with contextlib.suppress(OSError):
                    client.recv(65536)
                    client.sendall(b"NOT HTTP AT ALL\r\n\r\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_routes_are_validated_where_they_are_written(db_url: str, keyring: Keyring) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for bad in (
            Route(0, "file", "webhook", "file:///etc/passwd"),
            Route(0, "no host", "webhook", "http:///x"),
            Route(0, "port", "webhook", "http://127.0.0.1:http/x"),
            Route(0, "blank", "sms", "http://gw.example/ x", recipient="+86138"),
            Route(0, "no phone", "sms", "http://gw.example/x"),
            Route(0, "mail via http", "email", "http://mail.example", recipient="a@b.cn"),
            Route(0, "no rcpt", "email", "smtp://127.0.0.1:25"),
            Route(0, "inject", "email", "smtp://127.0.0.1:25", recipient="a@b.cn\r\nBcc: x@y.z"),
            Route(0, "pager", "pager", "http://gw.example/x"),
        ):
            with pytest.raises(ValueError, match=f"route '{bad.name}'"):
                write_route(conn, bad, keyring)
        assert conn.execute("SELECT count(*) FROM notification_routes").fetchone() == (0,)
        write_route(
            conn, Route(0, "ok", "email", "smtps://u:p@mail.example:465", "a@b.cn"), keyring
        )


def test_a_receiver_answering_garbage_fails_alone_and_the_claim_goes_on(
    db_url: str, http_sink: HttpSink, keyring: Keyring
) -> None:
    """A receiver that answers an invalid status line (http.client.BadStatusLine) and an e-mail
    route whose message cannot be built (a line break in the sender address: ValueError from
    the e-mail library, not a DeliveryError) are each
    retried with back-off and finally failed; the healthy route in the same claim is delivered
    exactly once, in the first round."""
    add_sensors(db_url, [("gd-n3", "gas", "gas_detector")])
    garbage = GarbageServer()
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            # claimed first (lower delivery ids), ahead of the healthy route
            write_route(conn, Route(0, "a garbage", "webhook", garbage.url), keyring)
            write_route(
                conn, Route(0, "b bad mail", "email", "smtp://127.0.0.1:9", "a@b.cn"), keyring
            )
            write_route(conn, Route(0, "c healthy", "webhook", f"{http_sink.url}/ok"), keyring)
            _raise_gas_alert(conn, "gd-n3")
            senders = Senders(sender_address="cityops@localhost\nBcc: x@y.z", keyring=keyring)
            s1 = deliver_once(conn, now=T, senders=senders)
            assert (s1.planned, s1.delivered, s1.retried, s1.gave_up) == (3, 1, 2, 0)
            assert any("BadStatusLine" in e for e in s1.errors)
            # not leased for 300 s: due again after the 5 s back-off
            due = conn.execute(
                "SELECT r.name, d.next_attempt_at FROM notification_deliveries d"
                " JOIN notification_routes r USING (route_id) WHERE d.status = 'pending'"
                " ORDER BY r.name"
            ).fetchall()
            assert due == [
                ("a garbage", T + timedelta(seconds=5)),
                ("b bad mail", T + timedelta(seconds=5)),
            ]
            now, gave_up = T + timedelta(seconds=5), 0
            for _ in range(MAX_ATTEMPTS + 1):
                gave_up += deliver_once(conn, now=now, senders=senders).gave_up
                now += timedelta(hours=1)
            rows = conn.execute(
                "SELECT r.name, d.status, d.attempts, d.last_error FROM notification_deliveries d"
                " JOIN notification_routes r USING (route_id) ORDER BY r.name"
            ).fetchall()
    finally:
        garbage.close()
    assert gave_up == 2
    assert rows[0][:3] == ("a garbage", "failed", MAX_ATTEMPTS) and "BadStatusLine" in rows[0][3]
    assert rows[1][:3] == ("b bad mail", "failed", MAX_ATTEMPTS) and "ValueError" in rows[1][3]
    assert rows[2] == ("c healthy", "delivered", 1, None)
    assert garbage.connections == MAX_ATTEMPTS
    assert len([p for p, _, _ in http_sink.requests if p == "/ok"]) == 1


def test_plain_routes_rotation_reencryption_and_revocation(
    db_url: str, http_sink: HttpSink, tmp_path: Path
) -> None:
    """A route written before encryption (plain columns) is still delivered; after a key
    rotation the old key still decrypts; ``reencrypt_routes`` moves every value to the new key
    (plain ones too), after which the old key can be revoked and delivery goes on. A route
    whose key is not in the key ring fails alone, and its error quotes no secret."""
    keys = tmp_path / "keys"
    add_sensors(db_url, [(f"gd-n{i}", "gas", "gas_detector") for i in (4, 5, 6)])
    old_ids = generate_keys(keys)
    ring = load_keyring(keys, environ={})
    with psycopg.connect(db_url, autocommit=True) as conn:
        _insert_route_unchecked(conn, "legacy", "sms", f"{http_sink.url}/legacy", "+8613900000000")
        write_route(conn, Route(0, "old key", "webhook", f"{http_sink.url}/old", secret="s1"), ring)
        new_ids = generate_keys(keys)  # rotation: new keys active, old ones kept
        ring = load_keyring(keys, environ={})
        assert ring.sm4_active_id == new_ids["sm4"] and old_ids["sm4"] in ring.sm4
        write_route(conn, Route(0, "new key", "webhook", f"{http_sink.url}/new"), ring)
        _raise_gas_alert(conn, "gd-n4")
        s1 = deliver_once(conn, now=T, senders=Senders(keyring=ring))
        assert (s1.planned, s1.delivered) == (3, 3)

        assert reencrypt_routes(conn, ring) == (2, 3)  # legacy and old key; new key unchanged
        assert reencrypt_routes(conn, ring) == (0, 3)
        stored = conn.execute("SELECT target, recipient, secret FROM notification_routes")
        values = [v for row in stored for v in row if v is not None]
        assert len(values) == 5  # legacy: target, phone; old: target, secret; new: target
        assert all(v.startswith(f"sm4gcm:v1:{new_ids['sm4']}:") for v in values)

        revoke_key(keys, old_ids["sm4"])
        revoke_key(keys, old_ids["sm2"])
        ring = load_keyring(keys, environ={})
        assert old_ids["sm4"] not in ring.sm4 and old_ids["sm2"] not in ring.sm2_public
        _raise_gas_alert(conn, "gd-n5")
        s2 = deliver_once(conn, now=T + timedelta(minutes=1), senders=Senders(keyring=ring))
        assert (s2.planned, s2.delivered) == (3, 3)

        # a key ring without the data key: each delivery fails alone, naming the key only
        other = tmp_path / "other"
        generate_keys(other)
        _raise_gas_alert(conn, "gd-n6")
        wrong = Senders(keyring=load_keyring(other, environ={}))
        s3 = deliver_once(conn, now=T + timedelta(minutes=2), senders=wrong)
        assert (s3.planned, s3.delivered, s3.retried) == (3, 0, 3)
        assert all(new_ids["sm4"] in e for e in s3.errors)
        assert not [e for e in s3.errors if "127.0.0.1" in e or "+86139" in e or e == "s1"]
    paths = [p for p, _, _ in http_sink.requests]
    assert sorted(paths) == sorted(["/legacy", "/old", "/new"] * 2)
