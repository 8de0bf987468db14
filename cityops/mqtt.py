"""paho-mqtt adapters shared by the services: an acknowledge-after-commit consumer and a
publisher with a bounded in-flight window (docs/contracts/mqtt.md, docs/decisions/0002).

Why paho-mqtt and not aiomqtt here: aiomqtt 2.5 acknowledges QoS 1 messages on receipt, before
the application has stored them, so a crash loses them. paho's ``manual_ack=True`` lets the
consumer send PUBACK only after its database transaction committed.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityops.settings import parse_mqtt_url

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86_400  # the broker keeps our subscription and queue for a week offline
RECEIVE_MAXIMUM = 1000  # unacknowledged QoS 1 messages the broker may send us at once


@dataclass(frozen=True, slots=True)
class Message:
    mid: int
    qos: int
    topic: str
    payload: bytes
    received_ns: int  # time.time_ns() on arrival
    retain: bool = False


@dataclass
class ConsumerStatus:
    connected: bool = False
    sessions_lost: int = 0  # CONNACK with session present = 0 after the first connect
    connects: int = 0
    last_disconnect_reason: str = ""
    gap_events: list[float] = field(default_factory=list)  # wall times a session was lost


_PUBACK = struct.Struct("!BBH")  # fixed header PUBACK (0x40), remaining length 2, packet id


def _paho_packet_queue() -> Callable[[mqtt.Client, bytes], object] | None:
    """paho's own outgoing queue (``Client._packet_queue``), through which ``ack()`` sends each
    PUBACK; None where a paho release lacks it (``ack_many`` then acknowledges one by one).
    Several PUBACKs joined in one queued packet are written by paho as one send; it looks only
    at a packet's command to decide what happens after the write, and a PUBACK needs nothing."""
    fn = getattr(mqtt.Client, "_packet_queue", None)
    if fn is None:
        return None

    def queue_packet(client: mqtt.Client, packet: bytes) -> object:
        return fn(client, 0x40, packet, 0, 0)

    return queue_packet


_queue_packet = _paho_packet_queue()


def _new_client(client_id: str, url: str, *, manual_ack: bool) -> mqtt.Client:
    ep = parse_mqtt_url(url)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
    if ep.username:
        client.username_pw_set(ep.username, ep.password)
    if ep.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    return client


def _connect_properties(session_expiry_s: int, receive_maximum: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = receive_maximum
    return props


class AckingConsumer:
    """Subscribe at QoS 1 in a persistent session and hand messages to a worker thread.

    The network thread only appends to a bounded queue; when the queue is full it blocks, which
    stops reading the socket and leaves the backlog in the broker (bounded memory). The worker
    calls ``ack(message)`` after its batch is committed; until then the broker redelivers the
    message on reconnect.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        topic_filters: list[str],
        *,
        queue_max: int = 50_000,
        session_expiry_s: int = SESSION_EXPIRY_S,
        receive_maximum: int = RECEIVE_MAXIMUM,
        on_session_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.topic_filters = topic_filters
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.queue: queue.Queue[Message] = queue.Queue(maxsize=queue_max)
        self.status = ConsumerStatus()
        self._on_session_lost = on_session_lost
        self._stopping = False
        self._connected_once = threading.Event()
        self.subscribed = threading.Event()  # the broker confirmed every filter (SUBACK)
        self._client = _new_client(client_id, url, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # -- network thread -------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt connect refused: %s", reason_code)
            return
        self.status.connected = True
        self.status.connects += 1
        if not flags.session_present and self._connected_once.is_set():
            # a reconnect that found no session: the broker forgot our queue
            self.status.sessions_lost += 1
            self.status.gap_events.append(time.time())
            log.warning("broker lost our session: possible data gap; resubscribing")
            if self._on_session_lost:
                self._on_session_lost()
        # subscribing again on a present session is harmless and covers a lost one
        client.subscribe([(f, 1) for f in self.topic_filters])
        self._connected_once.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("subscription refused by the broker: %s", ", ".join(failed))
            return
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.status.connected = False
        self.status.last_disconnect_reason = str(reason_code)
        log.warning("mqtt disconnected: %s", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        message = Message(msg.mid, msg.qos, msg.topic, msg.payload, time.time_ns(), msg.retain)
        while True:
            try:
                self.queue.put(message, timeout=0.5)
                return
            except queue.Full:
                if self._stopping:
                    return  # never acknowledged: the broker delivers it again next session

    # -- worker side ----------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> None:
        ep = parse_mqtt_url(self.url)
        self._client.connect_async(
            ep.host,
            ep.port,
            keepalive=30,
            clean_start=False,
            properties=_connect_properties(self.session_expiry_s, self.receive_maximum),
        )
        self._client.loop_start()
        deadline = time.monotonic() + timeout_s
        if not self._connected_once.wait(timeout_s):
            raise TimeoutError(f"no CONNACK from {ep.host}:{ep.port} within {timeout_s} s")
        # until SUBACK, messages published now would not reach us (first start: no session yet)
        if not self.subscribed.wait(max(0.0, deadline - time.monotonic())):
            raise TimeoutError(
                f"subscription to {self.topic_filters} not confirmed within {timeout_s} s"
            )

    def ack(self, message: Message) -> None:
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    def ack_many(self, messages: list[Message]) -> None:
        """Acknowledge a committed batch: its QoS 1 PUBACKs leave as one write (one system call
        and one wake-up of the network thread instead of one per message: a batch of 500
        single-reading messages cost 500 of each)."""
        mids = [m.mid for m in messages if m.qos == 1]
        if len(mids) > 1 and _queue_packet is not None:
            _queue_packet(self._client, b"".join([_PUBACK.pack(0x40, 2, mid) for mid in mids]))
        else:
            for mid in mids:
                self._client.ack(mid, 1)
        for m in messages:
            if m.qos == 2:
                self._client.ack(m.mid, 2)

    def stop(self, *, end_session: bool = False) -> None:
        """Disconnect. ``end_session=True`` tells the broker to drop our subscription and queue:
        a worker that leaves a shared group for good must, or it keeps receiving its share."""
        self._stopping = True  # a network thread waiting for queue space gives up
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()


class Publisher:
    """QoS 1 publisher that bounds its in-flight window instead of losing messages.

    paho's message ids are 16 bit: an unbounded burst wraps them and loses data, so
    ``publish`` waits when ``max_inflight`` messages are not yet acknowledged.
    """

    def __init__(self, url: str, client_id: str, *, max_inflight: int = 200) -> None:
        self._client = _new_client(client_id, url, manual_ack=False)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(max_inflight)
        self._url = url
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self._max_inflight = max_inflight
        self._connected = threading.Event()
        self._client.on_connect = lambda c, u, f, rc, p: (
            self._connected.set() if not rc.is_failure else log.error("connect refused: %s", rc)
        )

    def __enter__(self) -> Publisher:
        ep = parse_mqtt_url(self._url)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        self._client.connect(ep.host, ep.port, keepalive=30, clean_start=True, properties=props)
        self._client.loop_start()
        if not self._connected.wait(10):
            raise TimeoutError("publisher: no CONNACK within 10 s")
        return self

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self.flush()
            info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            raise RuntimeError(f"publish failed: {mqtt.error_string(info.rc)}")
        self._pending.append(info)
        if len(self._pending) >= self._max_inflight:
            self.flush()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every message published so far is acknowledged by the broker."""
        deadline = time.monotonic() + timeout_s
        for info in self._pending:
            info.wait_for_publish(max(0.01, deadline - time.monotonic()))
            if not info.is_published():
                raise TimeoutError("broker did not acknowledge in time")
        self._pending.clear()

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
