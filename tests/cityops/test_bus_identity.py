"""Device identities on the private broker, attacked as issue 14 did: each device enrolled by
`cityops devices` may publish only its own telemetry topic and subscribe nowhere (shared
subscriptions included), and nothing it sends elsewhere is stored."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from cityops.shell.stack import LocalStack
from ingestion.service import Ingestor
from sensors.payload import encode_reading
from tests.conftest import run_cityops
from tests.ingestion.conftest import add_sensors, new_id, now_ms, query, water_topic
from tests.listening import Recorder
from tests.waiting import wait_for


class Device:
    """One MQTT v5 client under a device's identity, recording CONNACK, SUBACK and PUBACK
    reason codes."""

    def __init__(self, stack: LocalStack, user: str, password: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"dev-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(user, password)
        self.connack: str | None = None
        self.subacks: list[str] = []
        self.pubacks: dict[int, str] = {}
        self.received: list[str] = []
        self._event = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = lambda c, u, m: self.received.append(m.topic)
        self.client.connect("127.0.0.1", stack.state.mqtt_port, keepalive=10)
        self.client.loop_start()
        self._wait(lambda: self.connack is not None, "CONNACK")

    def _notify(self) -> None:
        with self._event:
            self._event.notify_all()

    def _wait(self, ready, what: str) -> None:
        with self._event:
            assert self._event.wait_for(ready, 10), f"no {what}"

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        self.connack = str(rc)
        self._notify()

    def _on_subscribe(self, client, userdata, mid, rcs, props) -> None:
        self.subacks.extend(str(rc) for rc in rcs)
        self._notify()

    def _on_publish(self, client, userdata, mid, rc, props) -> None:
        self.pubacks[mid] = str(rc)
        self._notify()

    def subscribe(self, topic_filter: str) -> str:
        n = len(self.subacks)
        self.client.subscribe(topic_filter, qos=1)
        self._wait(lambda: len(self.subacks) > n, "SUBACK")
        return self.subacks[n]

    def publish(self, topic: str, body: bytes) -> str:
        mid = self.client.publish(topic, body, qos=1).mid
        self._wait(lambda: mid in self.pubacks, "PUBACK")
        return self.pubacks[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def connack(stack: LocalStack, user: str, password: str) -> str:
    d = Device(stack, user, password)
    d.close()
    return d.connack or ""


def enrol(settings: Settings, tmp_path: Path, *sensor_ids: str) -> dict[str, str]:
    creds = tmp_path / "devices.json"
    r = run_cityops(settings, "devices", "add", *sensor_ids, "--credentials-file", str(creds))
    assert r.returncode == 0, r.stderr
    assert oct(creds.stat().st_mode & 0o777) == "0o600"
    return json.loads(creds.read_text())


@pytest.fixture
def two_devices(settings: Settings, db_url: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two registered water sensors enrolled on the bus (revoked afterwards)."""
    ids = [new_id("wp"), new_id("wp")]
    add_sensors(db_url, [(i, "water", "water_pressure") for i in ids])
    creds = enrol(settings, tmp_path, *ids)
    yield creds
    run_cityops(settings, "devices", "revoke", *ids)


@pytest.fixture
def ingestor(settings: Settings) -> Iterator[Ingestor]:
    ing = Ingestor(settings)
    ing.start()
    yield ing
    ing.stop(end_session=True)


def test_service_passwords_are_stored_hashed_with_many_rounds(stack: LocalStack) -> None:
    text = (stack.mqtt_dir / "dynamic-security.json").read_text()
    clients = {c["username"]: c for c in json.loads(text)["clients"]}
    for user, password in stack.state.mqtt_passwords.items():
        assert password not in text
        assert clients[user]["iterations"] == 10_000
    assert oct((stack.mqtt_dir / "dynamic-security.json").stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(("user", "password"), [(None, None), ("cityops-ingest", "wrong-password")])
def test_anonymous_and_wrong_password_clients_are_refused(
    stack: LocalStack, user, password
) -> None:
    assert connack(stack, user, password) in ("Not authorized", "Bad user name or password")


def test_a_device_publishes_only_its_own_topic_and_nothing_else_is_stored(
    stack: LocalStack, db_url: str, two_devices: dict[str, str], ingestor: Ingestor
) -> None:
    own, other = list(two_devices)
    dev = Device(stack, own, two_devices[own])
    try:
        assert dev.connack == "Success"
        forged = encode_reading(now_ms(), 1, {"pressure": 999.0})
        assert dev.publish(water_topic(other), forged) == "Not authorized"
        assert dev.publish(f"city/power/{own}/telemetry", forged) == "Not authorized"
        assert dev.publish("city/alerts/water/" + other, b"{}") == "Not authorized"
        assert dev.publish(water_topic(own), encode_reading(now_ms(), 2, {"pressure": 301.0})) in (
            "Success",
            "No matching subscribers",
        )
    finally:
        dev.close()
    sql = "SELECT sensor_id, seq FROM readings ORDER BY sensor_id"
    wait_for(lambda: query(db_url, sql), what="the device's own reading")
    time.sleep(0.5)  # anything forged would have arrived by now too
    assert query(db_url, sql) == [(own, 2)]


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "city/+/+/telemetry",
        "$share/cityops-ingest/city/+/+/telemetry",
        "$share/x/#",
        "city/alerts/#",
        "$CONTROL/dynamic-security/v1/response",
        "$SYS/#",
    ],
)
def test_a_device_may_subscribe_nowhere(
    stack: LocalStack, two_devices: dict[str, str], topic_filter: str
) -> None:
    own = next(iter(two_devices))
    dev = Device(stack, own, two_devices[own])
    try:
        assert dev.subscribe(topic_filter) == "Not authorized"
    finally:
        dev.close()


def test_a_device_joining_ingestions_share_group_takes_no_reading_away(
    stack: LocalStack,
    settings: Settings,
    db_url: str,
    two_devices: dict[str, str],
    ingestor: Ingestor,
) -> None:
    """Issue 14's attack: a device in ``$share/<ingest group>/...`` with a persistent session
    received half of every reading and 10 of 20 never reached the database."""
    own, other = list(two_devices)
    thief = Device(stack, own, two_devices[own])
    try:
        group = settings.ingest_share_group
        assert thief.subscribe(f"$share/{group}/city/+/+/telemetry") == "Not authorized"
        t0 = now_ms() - 10_000
        with Publisher(settings.mqtt_url_for("sim"), f"sim-{uuid.uuid4().hex[:6]}") as pub:
            for k in range(20):
                pub.publish(water_topic(other), encode_reading(t0 + k, k, {"pressure": 300.0}))
            pub.flush()
        count = "SELECT count(*) FROM readings WHERE sensor_id = %s"
        wait_for(lambda: query(db_url, count, (other,))[0][0] == 20, what="20 of 20 readings")
        assert thief.received == []
    finally:
        thief.close()


def test_rotate_disable_and_revoke_take_effect_at_once(
    stack: LocalStack, settings: Settings, tmp_path: Path, two_devices: dict[str, str]
) -> None:
    sid = next(iter(two_devices))
    old = two_devices[sid]
    r = run_cityops(
        settings, "devices", "rotate", sid, "--credentials-file", str(tmp_path / "n.json")
    )
    assert r.returncode == 0, r.stderr
    new = json.loads((tmp_path / "n.json").read_text())[sid]
    assert connack(stack, sid, old) != "Success"
    assert connack(stack, sid, new) == "Success"

    assert run_cityops(settings, "devices", "disable", sid).returncode == 0
    assert connack(stack, sid, new) != "Success"
    listed = run_cityops(settings, "devices", "list").stdout
    assert f"{sid}\tdisabled" in listed
    assert run_cityops(settings, "devices", "disable", "--enable", sid).returncode == 0
    assert connack(stack, sid, new) == "Success"

    assert run_cityops(settings, "devices", "revoke", sid).returncode == 0
    assert connack(stack, sid, new) != "Success"
    assert sid not in run_cityops(settings, "devices", "list").stdout


def test_only_registered_sensors_are_enrolled(
    settings: Settings, db_url: str, tmp_path: Path
) -> None:
    known = new_id("wp")
    add_sensors(db_url, [(known, "water", "water_pressure")])
    r = run_cityops(
        settings,
        "devices",
        "add",
        known,
        "wp-not-registered",
        "--credentials-file",
        str(tmp_path / "c.json"),
    )
    assert r.returncode == 2
    assert "wp-not-registered" in r.stderr
    assert not (tmp_path / "c.json").exists()
    assert known not in run_cityops(settings, "devices", "list").stdout


def test_enrolled_devices_survive_a_broker_restart(
    stack: LocalStack, two_devices: dict[str, str]
) -> None:
    sid, password = next(iter(two_devices.items()))
    stack.stop_mosquitto()
    stack.start_mosquitto()
    assert connack(stack, sid, password) == "Success"
    for user, pw in stack.state.mqtt_passwords.items():
        assert connack(stack, user, pw) == "Success"


@pytest.fixture
def security_events(settings: Settings) -> Iterator[Recorder]:
    rec = Recorder(settings.mqtt_url, "city/security/#")
    yield rec
    rec.close()


def _events(rec: Recorder, sensor_id: str, reason: str) -> list[dict]:
    return [
        json.loads(body)
        for topic, body in rec.snapshot()
        if topic == f"city/security/devices/{sensor_id}" and json.loads(body)["reason"] == reason
    ]


def test_refusals_are_security_events_with_who_where_and_what(
    stack: LocalStack, two_devices: dict[str, str], security_events: Recorder
) -> None:
    """Mosquitto logs a refused publish only at debug level; the broker's device guard turns
    each refusal into an event (and a notice in the broker's log)."""
    own, other = list(two_devices)
    dev = Device(stack, own, two_devices[own])
    try:
        assert dev.publish(water_topic(other), b"{}") == "Not authorized"
        assert dev.subscribe("#") == "Not authorized"
    finally:
        dev.close()
    wait_for(lambda: _events(security_events, own, "subscribe"), what="the subscribe event")
    (foreign,) = _events(security_events, own, "foreign_topic")
    assert foreign["topic"] == water_topic(other)
    assert foreign["address"] == "127.0.0.1"
    assert foreign["username"] == own and foreign["client_id"].startswith("dev-")
    (sub,) = _events(security_events, own, "subscribe")
    assert sub["topic"] == "#"
    log = (stack.mqtt_dir / "mosquitto.log").read_text()
    assert f"device guard: refused foreign_topic from {own}" in log


def test_a_flooding_device_is_throttled_and_reported(
    stack: LocalStack,
    db_url: str,
    two_devices: dict[str, str],
    ingestor: Ingestor,
    security_events: Recorder,
) -> None:
    own = next(iter(two_devices))
    dev = Device(stack, own, two_devices[own])
    n = 3 * stack.device_max_rate
    t0 = now_ms() - 60_000
    try:
        mids = [
            dev.client.publish(
                water_topic(own), encode_reading(t0 + k, k, {"pressure": 300.0}), 1
            ).mid
            for k in range(n)
        ]
        dev._wait(lambda: all(m in dev.pubacks for m in mids), "every PUBACK")
    finally:
        dev.close()
    refused = sum(dev.pubacks[m] == "Not authorized" for m in mids)
    accepted = n - refused
    # within the second(s) the burst took, at most the limit per second got through
    assert refused >= n - 2 * stack.device_max_rate
    wait_for(lambda: _events(security_events, own, "flood"), what="the flood event")
    count = "SELECT count(*) FROM readings WHERE sensor_id = %s"
    wait_for(lambda: query(db_url, count, (own,))[0][0] == accepted, what="the accepted readings")
    time.sleep(0.3)
    assert query(db_url, count, (own,))[0][0] == accepted


def _tls_device(stack: LocalStack, folder: Path, sensor_id: str) -> Device:
    dev = Device.__new__(Device)
    dev.client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"dev-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    dev.client.tls_set(
        ca_certs=str(folder / "ca.crt"),
        certfile=str(folder / f"{sensor_id}.crt"),
        keyfile=str(folder / f"{sensor_id}.key"),
    )
    dev.connack, dev.subacks, dev.pubacks, dev.received = None, [], {}, []
    dev._event = threading.Condition()
    dev.client.on_connect = dev._on_connect
    dev.client.on_subscribe = dev._on_subscribe
    dev.client.on_publish = dev._on_publish
    dev.client.connect("127.0.0.1", stack.state.mqtt_tls_port, keepalive=10)
    dev.client.loop_start()
    dev._wait(lambda: dev.connack is not None, "CONNACK")
    return dev


def _tls_refused(stack: LocalStack, folder: Path, sensor_id: str) -> bool:
    """The broker refuses the certificate: the handshake fails, or no CONNACK comes (with TLS
    1.2 the client may finish its side before the broker rejects its certificate)."""
    try:
        dev = _tls_device(stack, folder, sensor_id)
    except (ssl.SSLError, OSError, AssertionError):
        return True
    dev.close()
    return dev.connack != "Success"


def test_a_device_with_a_client_certificate_needs_no_password(
    stack: LocalStack,
    settings: Settings,
    db_url: str,
    tmp_path: Path,
    ingestor: Ingestor,
    security_events: Recorder,
) -> None:
    """`cityops devices add --certificate-dir` issues a certificate from the stack's own CA; on
    the TLS listener its common name is the username, so the device's role applies."""
    own, other = new_id("wp"), new_id("wp")
    add_sensors(db_url, [(own, "water", "water_pressure"), (other, "water", "water_pressure")])
    certs = tmp_path / "certs"
    r = run_cityops(settings, "devices", "add", own, "--certificate-dir", str(certs))
    assert r.returncode == 0, r.stderr
    assert oct((certs / f"{own}.key").stat().st_mode & 0o777) == "0o600"
    dev = _tls_device(stack, certs, own)
    try:
        assert dev.connack == "Success"
        reading = encode_reading(now_ms(), 7, {"pressure": 305.0})
        assert dev.publish(water_topic(own), reading) in ("Success", "No matching subscribers")
        assert dev.publish(water_topic(other), reading) == "Not authorized"
    finally:
        dev.close()
    sql = "SELECT sensor_id, seq FROM readings"
    wait_for(lambda: query(db_url, sql), what="the certified device's reading")
    assert query(db_url, sql) == [(own, 7)]
    wait_for(lambda: _events(security_events, own, "foreign_topic"), what="the refusal event")

    # revoked: the identity is deleted at once, and after a restart the CRL refuses the handshake
    assert run_cityops(settings, "devices", "revoke", own).returncode == 0
    dev = _tls_device(stack, certs, own)
    try:
        assert dev.publish(water_topic(own), reading) == "Not authorized"
    finally:
        dev.close()
    stack.stop_mosquitto()
    stack.start_mosquitto()
    assert _tls_refused(stack, certs, own)


def test_a_certificate_from_another_ca_or_none_is_refused(
    stack: LocalStack, tmp_path: Path
) -> None:
    from access.certificates import DeviceCA

    rogue = DeviceCA(tmp_path / "rogue-ca")
    rogue.create("rogue CA")
    key, cert = rogue.issue_device("cityops-admin")
    (tmp_path / "cityops-admin.key").write_bytes(key)
    (tmp_path / "cityops-admin.crt").write_bytes(cert)
    (tmp_path / "ca.crt").write_bytes(stack.device_ca.cert_path.read_bytes())
    assert _tls_refused(stack, tmp_path, "cityops-admin")
    plain = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5)
    plain.tls_set(ca_certs=str(tmp_path / "ca.crt"))
    connected = threading.Event()
    plain.on_connect = lambda c, u, f, rc, p: connected.set() if not rc.is_failure else None
    try:
        plain.connect("127.0.0.1", stack.state.mqtt_tls_port, keepalive=5)
        plain.loop_start()
        assert not connected.wait(3)
    except (ssl.SSLError, OSError):
        pass  # refused during the handshake
    finally:
        plain.loop_stop()


def test_service_names_cannot_be_enrolled_as_devices() -> None:
    from access.bus import BusAdminError, enrol_commands

    with pytest.raises(BusAdminError, match="services"):
        enrol_commands({"cityops-admin": ("city/water/cityops-admin/telemetry", None)})


def test_a_refusal_reaches_the_alert_console_as_an_alert_on_the_device(
    stack: LocalStack, settings: Settings, db_url: str, two_devices: dict[str, str]
) -> None:
    """The alert engine turns the guard's event into an alert on the device's own sensor, with
    what it tried, from where, and what to do; it stays open until a person resolves it."""
    from tests.alerts.conftest import EngineProcess

    own, other = list(two_devices)
    eng = EngineProcess(settings)
    eng.start()
    try:
        dev = Device(stack, own, two_devices[own])
        try:
            t0 = time.monotonic()
            assert dev.publish(water_topic(other), b"{}") == "Not authorized"
            sql = "SELECT kind, quantity, severity, state, message_zh, message_en FROM alerts"
            (row,) = wait_for(lambda: query(db_url, sql + " WHERE sensor_id = %s", (own,)))
            took = time.monotonic() - t0
            assert dev.subscribe("#") == "Not authorized"
            wait_for(lambda: len(query(db_url, sql + " WHERE sensor_id = %s", (own,))) == 2)
        finally:
            dev.close()
    finally:
        assert eng.stop() == 0
    kind, quantity, severity, state, zh, en = row
    assert (kind, quantity, severity, state) == ("device_foreign_topic", "bus", "major", "open")
    assert water_topic(other) in zh and "127.0.0.1" in zh and f"cityops devices revoke {own}" in zh
    assert water_topic(other) in en and "revoke" in en
    assert took < 5.0, f"the alert took {took:.2f} s"
    kinds = {k for k, *_ in query(db_url, sql + " WHERE sensor_id = %s", (own,))}
    assert kinds == {"device_foreign_topic", "device_subscribe"}


def test_a_device_is_enrolled_by_the_utility_s_own_id(
    settings: Settings, db_url: str, tmp_path: Path
) -> None:
    """`sensors import` keeps "PS-J-8" as the external id of catalogue id "ps-j-8"; the
    utility enrols its devices by the ids it knows, and gets the catalogue ids' identities."""
    import psycopg

    sid = new_id("ps-j")
    add_sensors(db_url, [(sid, "water", "water_pressure")])
    external = sid.upper()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE sensors SET external_id = %s WHERE sensor_id = %s", (external, sid))
    creds = tmp_path / "c.json"
    r = run_cityops(settings, "devices", "add", external, "--credentials-file", str(creds))
    assert r.returncode == 0, r.stderr
    assert f"{external} -> {sid}" in r.stderr
    assert list(json.loads(creds.read_text())) == [sid]
    assert run_cityops(settings, "devices", "revoke", sid).returncode == 0
