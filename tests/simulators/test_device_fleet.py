"""A fleet of devices, each with its own broker identity and connection, on one asyncio loop
(simulators.mqtt.DevicePublishers, decision 0034): every message arrives, in order, with the
in-flight window bounded, also across a broker restart."""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest

from access.bus import BusAdmin
from cityops.kernel.settings import Settings
from cityops.shell.stack import LocalStack
from sensors.topics import telemetry_topic
from simulators.devices import device_url, enrol_devices, make_credentials
from simulators.mqtt import DevicePublishers, publish_steps
from simulators.profiles import Outgoing
from tests.listening import drain, subscribe
from tests.waiting import wait_for


@pytest.fixture
def devices(settings: Settings, stack: LocalStack) -> Iterator[Callable[[int], dict[str, str]]]:
    """Makes ``n`` new device identities known to the broker: sensor id -> broker URL."""
    made: list[str] = []

    def make(n: int) -> dict[str, str]:
        tag = uuid.uuid4().hex[:6]
        creds = make_credentials(f"fleet-{tag}-{i}" for i in range(n))
        enrol_devices(settings.mqtt_url, creds)
        made.extend(creds)
        return {sid: device_url(settings.mqtt_url_for("sim"), sid, creds) for sid in creds}

    yield make
    with BusAdmin(settings.mqtt_url) as admin:
        admin.revoke(made)


def _messages(ids: list[str], step: int, per_device: int) -> list[Outgoing]:
    out = []
    for sid in ids:
        for j in range(per_device):
            seq = step * per_device + j + 1
            payload = b'{"v":1,"ts":%d,"seq":%d,"q":{"pressure":350.0}}' % (
                1_764_115_200_000 + seq * 1000,
                seq,
            )
            out.append(Outgoing(sid, telemetry_topic("water", sid), 0, seq, {}, payload))
    return out


def test_three_hundred_devices_deliver_every_message_in_order(
    settings: Settings, devices: Callable[[int], dict[str, str]]
) -> None:
    """More connections than paho's thread per connection managed in one process (about
    270 here: its select() stops at file descriptor 1024), five messages per device and step
    through a window of two."""
    urls = devices(300)
    ids = list(urls)
    steps, per_device = 3, 5
    expected = [(m.topic, m.payload) for k in range(steps) for m in _messages(ids, k, per_device)]
    threads: list[int] = []

    def produce(step: int) -> list[Outgoing]:
        threads.append(threading.active_count())
        return _messages(ids, step, per_device)

    sub = subscribe(settings)
    try:
        fleet = DevicePublishers(urls, max_inflight=2)
        stats = publish_steps(fleet, produce, steps=steps, interval_s=60, speedup=0)
        got = drain(sub, len(expected), quiet_s=0.5)
    finally:
        sub.stop(end_session=True)
    assert stats.messages == len(expected)
    assert sorted(got) == sorted(expected)  # every message once, nothing else
    order: dict[str, list[bytes]] = defaultdict(list)
    for topic, payload in got:
        order[topic].append(payload)
    for topic, payloads in order.items():  # each device's messages in the order published
        assert payloads == [p for t, p in expected if t == topic]
    assert fleet.peak_inflight == 2
    assert max(threads) < 40  # one loop for the fleet, not a thread per device


def test_the_fleet_reconnects_after_a_broker_restart_and_loses_nothing(
    settings: Settings, stack: LocalStack, devices: Callable[[int], dict[str, str]]
) -> None:
    urls = devices(20)
    ids = list(urls)
    steps = 4
    expected = {(m.topic, m.payload) for k in range(steps) for m in _messages(ids, k, 2)}

    def produce(step: int) -> list[Outgoing]:
        if step == 2:  # between two steps: every connection of the fleet is gone
            stack.stop_mosquitto()
            stack.start_mosquitto()
        return _messages(ids, step, 2)

    sub = subscribe(settings)  # a persistent session: what it had not taken is kept
    try:
        stats = publish_steps(
            DevicePublishers(urls), produce, steps=steps, interval_s=60, speedup=0
        )
        got = drain(sub, len(expected), timeout_s=60)
    finally:
        sub.stop(end_session=True)
    assert stats.messages == len(expected)
    assert set(got) == expected  # at least once: a message in flight at the restart may repeat


def test_telemetry_nobody_took_goes_again_until_a_subscriber_comes(
    settings: Settings, stack: LocalStack, devices: Callable[[int], dict[str, str]]
) -> None:
    """After a broker restart nothing subscribes to telemetry until the ingest workers come
    back (Mosquitto 2.0.11 forgets shared subscriptions, decision 0081): the broker acknowledges
    with "no matching subscribers" and the devices send again until a subscriber takes it."""
    urls = devices(5)
    ids = list(urls)
    expected = {(m.topic, m.payload) for m in _messages(ids, 0, 3)}
    stack.stop_mosquitto()  # the shared subscriptions of every other test's workers go with it
    stack.start_mosquitto()
    fleet = DevicePublishers(urls)
    sent = threading.Thread(
        target=publish_steps,
        args=(fleet, lambda step: _messages(ids, step, 3)),
        kwargs={"steps": 1, "interval_s": 60, "speedup": 0},
    )
    sent.start()
    wait_for(lambda: fleet.resent_unrouted >= len(expected), timeout_s=20, what="sent again")
    sub = subscribe(settings)
    try:
        got = drain(sub, len(expected), timeout_s=30)
        sent.join(30)
    finally:
        sub.stop(end_session=True)
    assert not sent.is_alive() and fleet.dropped_unrouted == 0
    assert set(got) == expected
