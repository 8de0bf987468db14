"""MQTT adapter of ingestion: the shared acknowledge-after-commit consumer, plus the session
state on every connect (a session the broker lost is recorded as a possible gap) and a refused
subscription made visible. Memory is bounded by the consumer's ``Inbox`` (messages and bytes)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from cityops.kernel.clock import Deadline
from cityops.kernel.mqtt import QUEUE_MAX_BYTES, AckingConsumer

log = logging.getLogger(__name__)


class IngestConsumer(AckingConsumer):
    """``AckingConsumer`` that reports each CONNACK's session-present flag to ``on_connack``
    (called on the network thread: it must only record, never block).

    Memory: the inbox is bounded in messages (``queue_max``) and in payload bytes
    (``queue_max_bytes``; a message may be up to the broker's packet limit, so a count alone
    does not bound memory). When either is reached the network thread waits, which leaves the
    backlog in the broker."""

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
        super().__init__(
            url, client_id, topic_filters, queue_max=queue_max, queue_max_bytes=queue_max_bytes
        )
        self._on_connack = on_connack

    @property
    def queued_bytes(self) -> int:
        return self.queue.bytes

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        first = not self._connected_once.is_set()
        super()._on_connect(client, userdata, flags, reason_code, properties)
        if not reason_code.is_failure:
            self._on_connack(bool(flags.session_present), first)

    def start_waiting(self, timeout_s: float) -> bool:
        """Connect and subscribe; True when subscribed within ``timeout_s`` (paho keeps
        retrying in the background otherwise)."""
        deadline = Deadline(timeout_s)
        try:
            self.start(timeout_s)
        except TimeoutError:
            log.warning("broker not reachable yet; retrying in the background")
            return False
        return self.subscribed.wait(deadline.left())
