"""Listening to the broker in tests: a plain recording subscriber (what was really published,
with arrival times), and a persistent telemetry consumer that drains what the simulators sent."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cityops.kernel.mqtt import AckingConsumer
from cityops.kernel.settings import Settings, parse_mqtt_url
from sensors.topics import telemetry_filter
from tests.waiting import wait_for


class Recorder:
    """A plain QoS 1 subscriber that keeps every message it sees: ``snapshot()`` lists them
    (topic, payload), ``messages`` queues them with their arrival time [monotonic s] for a test
    that takes them one by one. Subscribed (SUBACK received) once constructed."""

    def __init__(self, url: str, topic_filters: list[str] | str) -> None:
        filters = [topic_filters] if isinstance(topic_filters, str) else topic_filters
        ep = parse_mqtt_url(url)
        self.messages: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self._seen: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"rec-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(ep.username, ep.password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in filters])
        self.client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
        self.client.on_message = self._on_message
        self.client.connect(ep.host, ep.port)
        self.client.loop_start()
        if not ready.wait(10):
            raise TimeoutError(f"no SUBACK for {filters}")

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self._seen.append((msg.topic, msg.payload))
        self.messages.put((msg.topic, msg.payload, time.monotonic()))

    def snapshot(self) -> list[tuple[str, bytes]]:
        with self._lock:
            return list(self._seen)

    def get(self, timeout: float = 10.0) -> tuple[str, bytes, float]:
        """The next message not yet taken: (topic, payload, arrival)."""
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def subscribe(settings: Settings) -> AckingConsumer:
    """Subscribed (SUBACK received) with a persistent session of its own; ``stop`` it with
    ``end_session=True``."""
    consumer = AckingConsumer(
        settings.mqtt_url, f"simtest-{uuid.uuid4().hex[:8]}", [telemetry_filter()]
    )
    consumer.start()
    return consumer


def drain(
    consumer: AckingConsumer, n: int, *, timeout_s: float = 30.0, quiet_s: float = 0.0
) -> list[tuple[str, bytes]]:
    """(topic, payload) of the first ``n`` messages (failing after ``timeout_s`` [s]) and of
    any more arriving within ``quiet_s`` [s] after them, each acknowledged."""
    got: list[tuple[str, bytes]] = []

    def take() -> bool:
        for msg in consumer.queue.take(10_000, 0.05):
            got.append((msg.topic, msg.payload))
            consumer.ack(msg)
        return len(got) >= n

    if n:
        wait_for(take, timeout_s, what=f"{n} messages")
    time.sleep(quiet_s)
    take()
    return got
