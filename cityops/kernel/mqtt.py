"""paho-mqtt adapters shared by the services: an acknowledge-after-commit consumer and a
publisher with a bounded in-flight window (docs/contracts/mqtt.md, docs/decisions/0002).

Why paho-mqtt and not aiomqtt here: aiomqtt 2.5 acknowledges QoS 1 messages on receipt, before
the application has stored them, so a crash loses them. paho's ``manual_ack=True`` lets the
consumer send PUBACK only after its database transaction committed.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import logging
import os
import queue
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cityops.kernel.clock import Deadline, wait_until
from cityops.kernel.settings import parse_mqtt_url

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86_400  # the broker keeps our subscription and queue for a week offline
# a consumer's reconnect back-off [s], doubling from the first to the last
RECONNECT_MIN_S, RECONNECT_MAX_S = 0.25, 2.0
RECEIVE_MAXIMUM = 1000  # unacknowledged QoS 1 messages the broker may send us at once
# payload bytes received and not yet taken: a message may be up to the broker's 1 MiB packet
# limit, so a count alone does not bound memory
QUEUE_MAX_BYTES = 64 * 1024 * 1024


class Message(NamedTuple):
    """One message received (a named tuple: made on the network thread for every message, where
    a frozen dataclass cost three times as much)."""

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


READ_BUFFER_BYTES = 256 * 1024


class BufferedSocket:
    """The broker connection with a read buffer, for paho's network thread.

    paho reads each packet with three ``recv`` calls (command byte, length byte, body) and goes
    through ``select`` before each packet; every one of those system calls gives up Python's
    interpreter lock, and with the decoder and writer threads busy each takes long to get it
    back (a worker's network thread ran at 8,700 single-reading messages/s where a bare
    subscriber ran at 22,000). Here one ``recv`` takes whatever the kernel holds, up to
    ``READ_BUFFER_BYTES``, and paho's small reads are served from it. ``pending()`` reports the
    buffered bytes, which paho already asks a TLS socket for: its loop then reads the next
    packet without waiting in ``select``. Sending is unchanged."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            # may raise BlockingIOError (nothing to read) or return b"" (closed): as a socket
            data = self._sock.recv(max(bufsize, READ_BUFFER_BYTES))
            if len(data) <= bufsize:
                return data
            self._buf, self._pos = data, 0
        end = self._pos + bufsize
        out = self._buf[self._pos : end]
        self._pos = min(end, len(self._buf))
        return out

    def buffered(self) -> int:
        """Bytes received and not yet read by paho."""
        return len(self._buf) - self._pos

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + inner

    def send(self, data: bytes | bytearray) -> int:
        return int(self._sock.send(data))

    def fileno(self) -> int:
        return int(self._sock.fileno())

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:  # settimeout, getpeername, ... of the socket
        return getattr(self._sock, name)


READ_PACKETS_MAX = 1000  # packets read from the buffer in one turn of paho's loop


class _Client(mqtt.Client):
    """paho's client on a ``BufferedSocket`` (``_create_socket`` is where paho itself wraps a
    socket for TLS and websockets). Its loop reads one packet per turn, each turn starting with
    a ``select``; here a turn goes on reading while whole packets wait in the buffer (at most
    ``READ_PACKETS_MAX``, then paho writes what is queued, e.g. acknowledgements, and checks
    its keepalive as usual)."""

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        rc = super().loop_read(max_packets)
        for _ in range(READ_PACKETS_MAX):
            sock = self._sock
            if rc != mqtt.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if not sock.buffered():
                break
            rc = super().loop_read(1)
        return rc


def new_client(client_id: str, url: str, *, manual_ack: bool) -> mqtt.Client:
    ep = parse_mqtt_url(url)
    client = _Client(
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


class Inbox:
    """Messages received and not yet taken: bounded in count and in payload bytes, taken in bulk.

    ``put`` (the network thread) waits while either bound is reached, which stops reading the
    socket and leaves the backlog in the broker; one message always fits, however large, so
    nothing can stall for ever. ``take`` hands a worker everything waiting, up to a count, in
    one lock round; the network thread is woken only when it waits for room, and the worker only
    when it waits for messages (one lock round per message and none per wake-up otherwise)."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: collections.deque[Message] = collections.deque()
        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._closed = False

    def put(self, message: Message) -> bool:
        """Queue ``message``; False when closed (the message was not queued)."""
        size = len(message.payload)
        with self._lock:
            while not self._closed and (
                len(self._items) >= self.max_messages
                or (self.bytes and self.bytes + size > self.max_bytes)
            ):
                self._has_room.wait(0.5)
            if self._closed:
                return False
            self._items.append(message)
            self.bytes += size
            self._has_items.notify()
            return True

    def take(self, max_n: int, timeout_s: float) -> list[Message]:
        """Up to ``max_n`` messages, waiting at most ``timeout_s`` for the first."""
        with self._lock:
            if not self._items and timeout_s > 0:
                self._has_items.wait(timeout_s)
            items = self._items
            n = min(max_n, len(items))
            out = [items.popleft() for _ in range(n)]
            if out:
                self.bytes -= sum(len(m.payload) for m in out)
                self._has_room.notify()
            return out

    def get(self, timeout: float | None = None) -> Message:
        """One message; ``queue.Empty`` when none came within ``timeout`` [s]."""
        got = self.take(1, 3600.0 if timeout is None else timeout)
        if not got:
            raise queue.Empty
        return got[0]

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def close(self) -> None:
        """Refuse from now on; a ``put`` waiting for room gives up."""
        with self._lock:
            self._closed = True
            self._has_room.notify_all()
            self._has_items.notify_all()


class AckingConsumer:
    """Subscribe at QoS 1 in a persistent session and hand messages to a worker thread.

    The network thread only appends to a bounded ``Inbox``; when it is full the network thread
    waits, which stops reading the socket and leaves the backlog in the broker (bounded memory).
    The worker calls ``ack(message)`` (or ``ack_many``) after its batch is committed; until then
    the broker redelivers the message on reconnect.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        topic_filters: list[str],
        *,
        queue_max: int = 50_000,
        queue_max_bytes: int = QUEUE_MAX_BYTES,
        session_expiry_s: int = SESSION_EXPIRY_S,
        receive_maximum: int = RECEIVE_MAXIMUM,
        on_session_lost: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.client_id = client_id
        self.topic_filters = topic_filters
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.queue = Inbox(queue_max, queue_max_bytes)
        self.status = ConsumerStatus()
        self._on_session_lost = on_session_lost
        self._stopping = False
        self._connected_once = threading.Event()
        self.subscribed = threading.Event()  # the broker confirmed every filter (SUBACK)
        self._client = new_client(client_id, url, manual_ack=True)
        # back soon after a broker restart: Mosquitto 2.0.11 forgets shared subscriptions over
        # one, and what is published before we subscribe again is kept by nobody (decision 0081)
        # (paho annotates the delays int; its back-off takes any number of seconds)
        self._client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)  # type: ignore[arg-type]
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
        # refused only once stopping: never acknowledged, the broker delivers it again.
        # paho types the payload bytes | bytearray; it is a slice of the packet, bytes
        payload = cast(bytes, msg.payload)
        self.queue.put(Message(msg.mid, msg.qos, msg.topic, payload, time.time_ns(), msg.retain))

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
        deadline = Deadline(timeout_s)
        if not self._connected_once.wait(timeout_s):
            raise TimeoutError(f"no CONNACK from {ep.host}:{ep.port} within {timeout_s} s")
        # until SUBACK, messages published now would not reach us (first start: no session yet)
        if not self.subscribed.wait(deadline.left()):
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
        self._stopping = True
        self.queue.close()  # a network thread waiting for room gives up
        props = None
        if end_session:
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()


# PBKDF2-SHA512 rounds of broker password hashes: `mosquitto_passwd` of Mosquitto 2.0.11 uses
# 101; 10,000 cost the broker about 5 ms per CONNECT here
PASSWORD_HASH_ITERATIONS = 10_000


def password_file_line(user: str, password: str, *, salt: bytes | None = None) -> str:
    """A Mosquitto password-file line (``user:$7$<rounds>$<salt>$<hash>``, PBKDF2-SHA512, the
    format `mosquitto_passwd` writes)."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PASSWORD_HASH_ITERATIONS)
    b64 = base64.b64encode
    return f"{user}:$7${PASSWORD_HASH_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}\n"


def end_session(url: str, client_id: str, *, timeout_s: float = 5.0) -> None:
    """Make the broker discard the stored session of ``client_id``: connect with its id, a
    clean start and no session expiry, then leave. A worker that leaves a shared group for good
    must, or the broker keeps queueing its share (RELIABILITY.md); a broker that is gone keeps
    nothing either."""
    client = new_client(client_id, url, manual_ack=False)
    ep = parse_mqtt_url(url)
    try:
        client.connect(
            ep.host, ep.port, keepalive=10, clean_start=True, properties=_connect_properties(0, 1)
        )
        client.loop_start()
        wait_until(client.is_connected, timeout_s, interval_s=0.02)
        client.disconnect()
        client.loop_stop()
    except OSError:
        pass


# PUBACK reason code (MQTT 5): the broker took the message but no subscription matched it, so
# nobody keeps it. Mosquitto 2.0.11 does not save shared subscriptions in its persistence file:
# after a broker restart telemetry is answered so until the ingest workers subscribe again
# (docs/decisions/0081-telemetry-until-the-ingest-subscription-is-back.md).
NO_MATCHING_SUBSCRIBERS = 0x10
UNROUTED_RETRY_S = 0.25  # wait before publishing unrouted messages again


class _Outgoing(NamedTuple):
    info: mqtt.MQTTMessageInfo
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Publisher:
    """QoS 1 publisher that bounds its in-flight window instead of losing messages.

    paho's message ids are 16 bit: an unbounded burst wraps them and loses data, so
    ``publish`` waits when ``max_inflight`` messages are not yet acknowledged.

    ``resend_unrouted_s`` (telemetry): a message the broker acknowledged with "no matching
    subscribers" was kept by nobody, so ``flush`` publishes it again, for at most that many
    seconds since the broker last routed one of ours: long enough for the ingest workers to
    subscribe again after a broker restart, and no stall for ever where nothing ingests (the
    rest is then dropped, counted and logged). 0 (events that may have no listener): off.
    ``interrupt`` (a stop request) ends such a wait at once, dropping what nobody took.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        max_inflight: int = 200,
        resend_unrouted_s: float = 0.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        self._client = new_client(client_id, url, manual_ack=False)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(max_inflight)
        self._url = url
        self._pending: list[_Outgoing] = []
        self._max_inflight = max_inflight
        self._resend_unrouted_s = resend_unrouted_s
        self._interrupt = interrupt or threading.Event()  # set: stop waiting for a subscriber
        self._unrouted_mids: set[int] = set()  # written on the network thread
        self._unrouted_since: float | None = None  # monotonic time of the streak's first
        self.resent_unrouted = 0  # published again because no subscriber took them
        self.dropped_unrouted = 0  # given up on: no subscriber within resend_unrouted_s
        self._connected = threading.Event()
        self._client.on_connect = lambda c, u, f, rc, p: (
            self._connected.set() if not rc.is_failure else log.error("connect refused: %s", rc)
        )
        self._client.on_publish = self._on_publish

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        # called before paho marks the message published, so flush sees the verdict in time;
        # a message id is reused only after its PUBACK, and flush reads it before that
        if reason_code == NO_MATCHING_SUBSCRIBERS:
            self._unrouted_mids.add(mid)
            if self._unrouted_since is None:
                self._unrouted_since = time.monotonic()
        else:
            self._unrouted_mids.discard(mid)
            self._unrouted_since = None

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
        self._pending.append(_Outgoing(info, topic, payload, qos, retain))
        if len(self._pending) >= self._max_inflight:
            self.flush()

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every message published so far is acknowledged by the broker (and, with
        ``resend_unrouted_s``, taken by a subscriber)."""
        deadline = Deadline(timeout_s)
        while self._pending:
            unrouted: list[_Outgoing] = []
            offline: list[_Outgoing] = []
            for out in self._pending:
                try:
                    out.info.wait_for_publish(max(0.01, deadline.left()))
                except RuntimeError:  # published while the connection was down (paho says so
                    offline.append(out)  # however the copy it queued fares): send it again
                    continue
                if not out.info.is_published():
                    raise TimeoutError("broker did not acknowledge in time")
                if out.info.mid in self._unrouted_mids:
                    self._unrouted_mids.discard(out.info.mid)
                    if self._resend_unrouted_s > 0 and out.qos > 0:
                        unrouted.append(out)
            self._pending.clear()
            if offline:
                self._publish_again_once_connected(offline, deadline)
            if not unrouted:
                continue
            since = self._unrouted_since
            waited_out = since is not None and time.monotonic() - since > self._resend_unrouted_s
            if waited_out or self._interrupt.wait(UNROUTED_RETRY_S):
                self._drop_unrouted(unrouted)
                return
            if deadline.passed():
                raise TimeoutError(f"no subscriber took {len(unrouted)} messages in time")
            if not self.resent_unrouted:
                log.warning("no subscriber for %s yet: publishing again", unrouted[0].topic)
            self.resent_unrouted += len(unrouted)
            for out in unrouted:
                info = self._client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
                self._pending.append(out._replace(info=info))

    def _publish_again_once_connected(self, outs: list[_Outgoing], deadline: Deadline) -> None:
        """Messages published while the broker was away (a restart): once paho has reconnected,
        published again (the copy paho kept may arrive too: writes downstream are idempotent)."""
        if not wait_until(self._client.is_connected, deadline.left(), interval_s=0.05):
            raise TimeoutError("publisher: the broker did not come back in time")
        for out in outs:
            while True:  # paho's queue still holds its own copies until they are sent
                info = self._client.publish(out.topic, out.payload, qos=out.qos, retain=out.retain)
                if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                    break
                if deadline.passed():
                    raise TimeoutError("publisher: the queue did not drain in time")
                time.sleep(0.02)
            self._pending.append(out._replace(info=info))

    def _drop_unrouted(self, unrouted: list[_Outgoing]) -> None:
        if not self.dropped_unrouted:
            log.warning(
                "no subscriber took %s: dropping what nobody takes (waited up to %.0f s)",
                unrouted[0].topic,
                self._resend_unrouted_s,
            )
        self.dropped_unrouted += len(unrouted)

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                self.flush()
        finally:
            self._client.disconnect()
            self._client.loop_stop()
