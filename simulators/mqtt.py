"""Publishing simulated telemetry over MQTT (the simulators' one broker adapter).

A run is a sequence of steps; each step's messages are published at QoS 1 and the step ends with
a flush, so every message of a step is acknowledged by the broker before the next step starts.
Pacing: step ``k`` is released at ``t0 + k * interval_s / speedup`` wall seconds (speedup 0: as
fast as possible) and, when ``hold_to_wall_clock`` is set, never before its simulated time, so a
run that starts "now" never stamps readings in the future.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cityops.kernel.mqtt import Publisher
from sensors.topics import parse_telemetry_topic
from simulators.profiles import Outgoing

log = logging.getLogger(__name__)


@dataclass
class RunStats:
    steps: int = 0
    messages: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    per_step_s: list[float] = field(default_factory=list)  # wall time to publish and flush


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """Set ``stop`` on SIGINT or SIGTERM while inside (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {}

    def handler(signum: int, _frame: object) -> None:
        log.info("signal %s: finishing the current step and stopping", signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def client_id(prefix: str = "cityops-sim") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class DevicePublishers:
    """One broker connection per sensor, each with the device's own identity."""

    def __init__(self, urls: dict[str, str], *, max_inflight: int = 20) -> None:
        self._urls = urls
        self._max_inflight = max_inflight
        self._pubs: dict[str, Publisher] = {}

    def __enter__(self) -> DevicePublishers:
        try:
            for sid, url in self._urls.items():
                pub = Publisher(url, client_id(f"dev-{sid}"[:40]), max_inflight=self._max_inflight)
                self._pubs[sid] = pub.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        self._pubs[parse_telemetry_topic(topic).sensor_id].publish(topic, payload, qos=qos)

    def flush(self, timeout_s: float = 30.0) -> None:
        for pub in self._pubs.values():
            pub.flush(timeout_s)

    def __exit__(self, *exc: object) -> None:
        pubs, self._pubs = self._pubs, {}
        for pub in pubs.values():
            pub.__exit__(*exc)


def publish_steps(
    url: str | DevicePublishers,
    produce: Callable[[int], Sequence[Outgoing]],
    *,
    steps: int,
    interval_s: float,
    speedup: float,
    stop: threading.Event | None = None,
    sim_time_ms: Callable[[int], int] | None = None,
    hold_to_wall_clock: bool = False,
    progress_every_s: float = 10.0,
    max_inflight: int = 1000,
    label: str = "simulate",
    final: Callable[[], Sequence[Outgoing]] | None = None,
) -> RunStats:
    """Publish ``produce(step)`` for steps 0.. ``steps - 1`` (``steps == 0``: until ``stop``)."""
    stop = stop or threading.Event()
    stats = RunStats()
    t0 = time.monotonic()
    wall0 = time.time()
    last_log = t0
    sink = Publisher(url, client_id(), max_inflight=max_inflight) if isinstance(url, str) else url
    with sink as pub:
        k = 0
        while (steps == 0 or k < steps) and not stop.is_set():
            due = t0 + (k * interval_s / speedup if speedup > 0 else 0.0)
            if hold_to_wall_clock and sim_time_ms is not None:
                due = max(due, t0 + (sim_time_ms(k) / 1000.0 - wall0))
            delay = due - time.monotonic()
            if delay > 0 and stop.wait(delay):
                break
            ts = time.monotonic()
            msgs = produce(k)
            for m in msgs:
                pub.publish(m.topic, m.payload, qos=1)
                stats.bytes += len(m.payload)
            pub.flush()
            stats.per_step_s.append(time.monotonic() - ts)
            stats.messages += len(msgs)
            k += 1
            stats.steps = k
            now = time.monotonic()
            if now - last_log >= progress_every_s or k == steps or k == 1:
                last_log = now
                log.info(
                    "%s: step %d%s, %d messages acknowledged (%.0f msg/s)",
                    label,
                    k,
                    f"/{steps}" if steps else "",
                    stats.messages,
                    stats.messages / max(now - t0, 1e-9),
                )
        if final is not None and not stop.is_set():
            rest = final()  # buffered batches and held-back messages
            for m in rest:
                pub.publish(m.topic, m.payload, qos=1)
                stats.bytes += len(m.payload)
            pub.flush()
            stats.messages += len(rest)
    stats.wall_s = time.monotonic() - t0
    return stats
