"""Publishing simulated telemetry over MQTT (the simulators' one broker adapter).

A run is a sequence of steps; each step's messages are published at QoS 1 and the step ends with
a flush, so every message of a step is acknowledged by the broker before the next step starts.
Pacing: step ``k`` is released at ``t0 + k * interval_s / speedup`` wall seconds (speedup 0: as
fast as possible) and, when ``hold_to_wall_clock`` is set, never before its simulated time, so a
run that starts "now" never stamps readings in the future.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityops.kernel.clock import Deadline
from cityops.kernel.mqtt import NO_MATCHING_SUBSCRIBERS, UNROUTED_RETRY_S, Publisher
from cityops.kernel.settings import parse_mqtt_url
from sensors.topics import parse_telemetry_topic
from simulators.profiles import Outgoing

log = logging.getLogger(__name__)
# what paho says per device when a connection drops ("failed to receive on socket", at error
# level): the fleet says it once per device, as a warning, when it reconnects
DEVICE_LOG = logging.getLogger(f"{__name__}.devices")
DEVICE_LOG.setLevel(logging.CRITICAL)
CONNECT_TIMEOUT_S = 60.0  # a fleet of 2,000 devices connects in about 3 s here
# aiomqtt leaves a publish waiting for its PUBACK when the connection drops: a device that
# hears nothing this long [s] reconnects and sends again (a PUBACK takes milliseconds here)
PUBACK_TIMEOUT_S = 5.0
# telemetry no subscriber took is published again for this long: the ingest workers' shared
# subscription is gone for a moment after a broker restart (measured up to 1.6 s, ceiling 3 s:
# decision 0081); a run with no ingest worker at all pays it once
UNROUTED_GRACE_S = 5.0


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


class _Device(aiomqtt.Client):
    """aiomqtt's client with what its ``publish`` drops: the PUBACK's reason code. A telemetry
    message the broker acknowledged with "no matching subscribers" was kept by nobody and must
    be sent again (decision 0081)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routed: dict[int, asyncio.Future[bool]] = {}

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        future = self._routed.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reason_code != NO_MATCHING_SUBSCRIBERS)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish_routed(self, topic: str, payload: bytes, *, timeout: float) -> bool:
        """Publish at QoS 1 and wait for the PUBACK: True when a subscriber took the message.
        Raises ``aiomqtt.MqttError`` when it cannot be sent or no PUBACK came in ``timeout``."""
        # the client's paho instance, as aiomqtt's own publish uses it; its network I/O runs
        # on this loop, so no PUBACK can come between the publish and the future's creation
        info = self._client.publish(topic, payload, qos=1)
        if info.rc != 0:
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        future = self._routed[info.mid] = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise aiomqtt.MqttError("no PUBACK in time") from None
        finally:
            self._routed.pop(info.mid, None)


class DevicePublishers:
    """One broker connection per sensor, each with the device's own identity, all served by one
    asyncio event loop (aiomqtt) on a thread of its own (docs/decisions/0034).

    The same sink as a ``Publisher`` for ``publish_steps``: ``publish`` collects a step's
    messages per device and ``flush`` sends them and returns once the broker has acknowledged
    every one. A device's messages leave in order with at most ``max_inflight``
    unacknowledged; a device whose connection drops reconnects and sends again what was not
    acknowledged (at least once, as paho's publisher does: writes downstream are idempotent).
    What the broker acknowledged with "no matching subscribers" is sent again for up to
    ``UNROUTED_GRACE_S``, as ``Publisher(resend_unrouted_s=...)`` does (decision 0081).
    """

    def __init__(self, urls: dict[str, str], *, max_inflight: int = 20) -> None:
        self._urls = urls
        self._max_inflight = max_inflight
        self._clients: dict[str, _Device] = {}
        self._batch: dict[str, list[tuple[str, bytes]]] = {}
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_lost_connection_is_no_error)
        self._thread = threading.Thread(target=self._loop.run_forever, name="device-fleet")
        self.peak_inflight = 0  # most unacknowledged messages of one device at once
        self._unrouted_since: float | None = None  # monotonic start of a streak nobody took
        self.resent_unrouted = 0
        self.dropped_unrouted = 0

    def __enter__(self) -> DevicePublishers:
        self._thread.start()
        try:
            self._run(self._connect_all(), CONNECT_TIMEOUT_S)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> None:
        if qos != 1:
            raise ValueError("devices publish at QoS 1")
        sid = parse_telemetry_topic(topic).sensor_id
        if sid not in self._urls:
            raise KeyError(f"no identity for sensor {sid}")
        self._batch.setdefault(sid, []).append((topic, payload))

    def flush(self, timeout_s: float = 30.0) -> None:
        """Send what was published since the last flush; wait until all is acknowledged."""
        batch, self._batch = self._batch, {}
        self._run(self._send_all(batch, Deadline(timeout_s)), timeout_s)

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None and self._clients:
                self.flush()
        finally:
            if self._thread.is_alive():
                clients, self._clients = list(self._clients.values()), {}
                self._run(_leave_all(clients), CONNECT_TIMEOUT_S)
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join()
            self._loop.close()

    # -- on the fleet's loop ----------------------------------------------------------------
    def _run(self, work: Coroutine[Any, Any, None], timeout_s: float) -> None:
        future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(f"devices: not done within {timeout_s} s") from None

    async def _connect_all(self) -> None:
        for sid, url in self._urls.items():
            ep = parse_mqtt_url(url)
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300  # as the service publisher: resend after a blip
            client = _Device(
                ep.host,
                ep.port,
                username=ep.username,
                password=ep.password,
                identifier=client_id(f"dev-{sid}"[:40]),
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=True,
                properties=props,
                keepalive=30,
                max_inflight_messages=self._max_inflight,
                tls_params=aiomqtt.TLSParameters() if ep.tls else None,
                logger=DEVICE_LOG,
            )
            client.pending_calls_threshold = self._max_inflight  # aiomqtt warns above it
            self._clients[sid] = client
        async with asyncio.TaskGroup() as group:
            for client in self._clients.values():
                group.create_task(client.__aenter__())

    async def _send_all(
        self, batch: dict[str, list[tuple[str, bytes]]], deadline: Deadline
    ) -> None:
        await asyncio.gather(*(self._send(sid, msgs, deadline) for sid, msgs in batch.items()))

    async def _send(self, sid: str, msgs: list[tuple[str, bytes]], deadline: Deadline) -> None:
        """One device's messages in order; after a lost connection, reconnect and send again
        those not acknowledged, until ``deadline``; those no subscriber took, again after a
        pause, for up to ``UNROUTED_GRACE_S``."""
        client = self._clients[sid]
        window = asyncio.Semaphore(self._max_inflight)
        done = [False] * len(msgs)
        inflight = 0

        async def one(i: int) -> None:
            nonlocal inflight
            async with window:  # FIFO: the device's messages leave in order
                inflight += 1
                self.peak_inflight = max(self.peak_inflight, inflight)
                try:
                    timeout = min(PUBACK_TIMEOUT_S, deadline.left())
                    done[i] = await client.publish_routed(*msgs[i], timeout=timeout)
                    if done[i]:
                        self._unrouted_since = None
                    elif self._unrouted_since is None:
                        self._unrouted_since = time.monotonic()
                finally:
                    inflight -= 1

        while not all(done):
            lost: list[Exception] = []
            try:
                async with asyncio.TaskGroup() as group:  # the first failure cancels the rest
                    for i in [i for i, ok in enumerate(done) if not ok]:
                        group.create_task(one(i))
            except* aiomqtt.MqttError as errors:
                lost = list(errors.exceptions)
            if lost:
                if deadline.passed():
                    raise TimeoutError(f"device {sid}: not acknowledged in time")
                log.warning("device %s: %s; reconnecting", sid, lost[0])
                await _reconnect(client, deadline)
            elif not all(done):
                await self._after_unrouted(sid, done.count(False), deadline)
                if self._unrouted_given_up():
                    return

    def _unrouted_given_up(self) -> bool:
        since = self._unrouted_since
        return since is not None and time.monotonic() - since > UNROUTED_GRACE_S

    async def _after_unrouted(self, sid: str, n: int, deadline: Deadline) -> None:
        """``n`` messages of ``sid`` no subscriber took: drop them once the grace is over, or
        wait a little before they go again."""
        if self._unrouted_given_up():
            if not self.dropped_unrouted:
                log.warning("no subscriber took telemetry for %.0f s: dropping", UNROUTED_GRACE_S)
            self.dropped_unrouted += n
            return
        if deadline.left() < UNROUTED_RETRY_S:
            raise TimeoutError(f"device {sid}: no subscriber took {n} messages in time")
        if not self.resent_unrouted:
            log.warning("device %s: no subscriber for its telemetry yet: sending again", sid)
        self.resent_unrouted += n
        await asyncio.sleep(UNROUTED_RETRY_S)


def _lost_connection_is_no_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A lost connection leaves aiomqtt a socket callback on a closed socket and a disconnection
    nobody asks about; the device reconnects (and says so), so a debug line, not a traceback."""
    if isinstance(context.get("exception"), OSError | aiomqtt.MqttError):
        log.debug("device fleet: %s", context["exception"])
    else:
        loop.default_exception_handler(context)


async def _reconnect(client: aiomqtt.Client, deadline: Deadline) -> None:
    await _leave(client)
    while True:
        try:
            await client.__aenter__()
            return
        except aiomqtt.MqttError:
            if deadline.left() < 1.0:
                raise
            await asyncio.sleep(1.0)


async def _leave_all(clients: Sequence[aiomqtt.Client]) -> None:
    await asyncio.gather(*(_leave(c) for c in clients))


async def _leave(client: aiomqtt.Client) -> None:
    with contextlib.suppress(aiomqtt.MqttError):
        await client.__aexit__(None, None, None)


# long: the pacing loop (release time, stop, produce, publish, flush, progress) in one place
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
    sink = (
        Publisher(
            url,
            client_id(),
            max_inflight=max_inflight,
            resend_unrouted_s=UNROUTED_GRACE_S,
            interrupt=stop,
        )
        if isinstance(url, str)
        else url
    )
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
