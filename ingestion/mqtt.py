"""MQTT adapter of ingestion: the shared acknowledge-after-commit consumer, plus the session
state on every connect (a session the broker lost is recorded as a possible gap), a refused
subscription made visible, and a byte budget on what is received but not yet taken."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from cityops.mqtt import AckingConsumer, Message

QUEUE_MAX_BYTES = 64 * 1024 * 1024  # payload bytes received and not yet taken by the decoder

log = logging.getLogger(__name__)


class IngestConsumer(AckingConsumer):
    """``AckingConsumer`` that reports each CONNACK's session-present flag to ``on_connack``
    (called on the network thread: it must only record, never block).

    Memory: the queue is bounded in messages (``queue_max``) and in payload bytes
    (``queue_max_bytes``; a message may be up to the broker's packet limit, so a count alone
    does not bound memory). When either is reached the network thread waits, which leaves the
    backlog in the broker. The taker calls ``taken(message)`` for each message it gets."""

    def __init__(
        self,
        url: str,
        client_id: str,
        topic_filters: list[str],
        *,
        queue_max: int,
        on_connack: Callable[[bool, bool], None],
        queue_max_bytes: int = QUEUE_MAX_BYTES,
    ) -> None:
        super().__init__(url, client_id, topic_filters, queue_max=queue_max)
        self._on_connack = on_connack
        self.queue_max_bytes = queue_max_bytes
        self.queued_bytes = 0
        self._bytes_cv = threading.Condition()
        self._closing = False
        self.subscribed = threading.Event()
        self._client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        first = not self._connected_once.is_set()
        super()._on_connect(client, userdata, flags, reason_code, properties)
        if not reason_code.is_failure:
            self._on_connack(bool(flags.session_present), first)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        size = len(msg.payload)
        with self._bytes_cv:
            # one message always fits, however large, so that nothing can stall for ever
            while (
                self.queued_bytes
                and self.queued_bytes + size > self.queue_max_bytes
                and not self._closing
            ):
                self._bytes_cv.wait(0.5)
            self.queued_bytes += size
        super()._on_message(client, userdata, msg)

    def taken(self, message: Message) -> None:
        """Release the bytes of a message taken off the queue."""
        with self._bytes_cv:
            self.queued_bytes -= len(message.payload)
            self._bytes_cv.notify()

    def stop(self, *, end_session: bool = False) -> None:
        with self._bytes_cv:
            self._closing = True
            self._bytes_cv.notify_all()
        super().stop(end_session=end_session)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            # e.g. the broker's ACL refuses the filter: nothing would ever arrive
            log.error("subscription refused by the broker: %s", ", ".join(failed))
            return
        self.subscribed.set()

    def start_waiting(self, timeout_s: float) -> bool:
        """Connect and subscribe; True when subscribed within ``timeout_s`` (paho keeps
        retrying in the background otherwise)."""
        deadline = time.monotonic() + timeout_s
        try:
            self.start(timeout_s)
        except TimeoutError:
            log.warning("broker not reachable yet; retrying in the background")
            return False
        return self.subscribed.wait(max(0.0, deadline - time.monotonic()))
