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


@pytest.mark.parametrize("os_user", ["nobody", "root"])
def test_the_database_socket_admits_no_local_account_without_a_password(
    stack: LocalStack, os_user: str
) -> None:
    """`psql -h <socket dir> -U postgres` as another local account, or even as root with no
    password, is refused: the socket's folder is the servers' own (0700) and the socket
    authenticates with scram like TCP (no `trust`)."""
    import subprocess

    cmd = ["psql", "-h", str(stack.pg_run), "-p", str(stack.state.pg_port), "-U", "postgres"]
    cmd += ["-w", "-d", "postgres", "-c", "SELECT 1"]
    if os_user != "root":
        cmd = ["/usr/sbin/runuser", "-u", os_user, "--", *cmd]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert r.returncode != 0
    assert any(
        why in r.stderr
        for why in ("Permission denied", "no password supplied", "password authentication failed")
    ), r.stderr
    assert oct(stack.pg_run.stat().st_mode & 0o777) == "0o700"


def test_broker_passwords_are_stored_hashed_with_many_rounds(stack: LocalStack) -> None:
    text = (stack.mqtt_dir / "passwd").read_text()
    for user, password in stack.state.mqtt_passwords.items():
        assert password not in text
        line = next(x for x in text.splitlines() if x.startswith(f"{user}:"))
        assert line.split("$")[1:3] == ["7", "10000"]
