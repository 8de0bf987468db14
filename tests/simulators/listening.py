"""A subscriber on every telemetry topic: what the simulators published, as it arrives."""

from __future__ import annotations

import time
import uuid

from cityops.kernel.mqtt import AckingConsumer
from cityops.kernel.settings import Settings
from sensors.topics import telemetry_filter
from tests.waiting import wait_for


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
