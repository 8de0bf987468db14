"""The private broker's authentication and ACL, as a client sees them (RELIABILITY.md)."""

import threading
import uuid

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cityops.kernel.settings import parse_mqtt_url
from cityops.shell.stack import LocalStack


def _client(
    url: str | None, stack: LocalStack, user: str | None = None, password: str | None = None
):
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"t-{uuid.uuid4().hex[:8]}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    if url:
        ep = parse_mqtt_url(url)
        c.username_pw_set(ep.username, ep.password)
    elif user:
        c.username_pw_set(user, password)
    return c


def _connect_result(c: mqtt.Client, stack: LocalStack) -> str:
    done = threading.Event()
    result: dict[str, str] = {}

    def on_connect(client, userdata, flags, rc, props):
        result["rc"] = str(rc)
        done.set()

    c.on_connect = on_connect
    c.connect("127.0.0.1", stack.state.mqtt_port)
    c.loop_start()
    done.wait(10)
    return result.get("rc", "timeout")


@pytest.mark.parametrize(("user", "password"), [(None, None), ("cityops-ingest", "wrong-password")])
def test_anonymous_and_wrong_password_clients_are_refused(
    stack: LocalStack, user, password
) -> None:
    c = _client(None, stack, user, password)
    try:
        assert _connect_result(c, stack) in ("Not authorized", "Bad user name or password")
    finally:
        c.loop_stop()


def test_a_device_may_publish_only_its_own_topic(stack: LocalStack) -> None:
    """A device's username is its sensor id; the ACL pattern binds it to its own topic."""
    import subprocess

    pwfile = stack.mqtt_dir / "passwd"
    device, secret = "wp-acl-test", uuid.uuid4().hex
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), device, secret], check=True)
    stack.stop_mosquitto()
    stack.state.mqtt_passwords[device] = secret  # kept by write_mosquitto_config on restart
    stack.start_mosquitto()
    try:
        c = _client(None, stack, device, secret)
        assert _connect_result(c, stack) == "Success"
        acks: dict[int, str] = {}
        got = threading.Event()

        def on_publish(client, userdata, mid, rc, props):
            acks[mid] = str(rc)
            if len(acks) == 2:
                got.set()

        c.on_publish = on_publish
        own = c.publish(f"city/water/{device}/telemetry", b"{}", qos=1).mid
        other = c.publish("city/water/wp-510104-1/telemetry", b"{}", qos=1).mid
        assert got.wait(10)
        assert acks[other] == "Not authorized"
        assert acks[own] in ("Success", "No matching subscribers")
        c.disconnect()
        c.loop_stop()
    finally:
        del stack.state.mqtt_passwords[device]
        stack.stop_mosquitto()
        stack.start_mosquitto()
