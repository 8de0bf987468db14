"""MQTT adapter of ingestion: the shared acknowledge-after-commit consumer, plus the session
state on every connect, so that a session the broker lost is recorded as a possible gap."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cityops.mqtt import AckingConsumer

log = logging.getLogger(__name__)


class IngestConsumer(AckingConsumer):
    """``AckingConsumer`` that reports each CONNACK's session-present flag to ``on_connack``
    (called on the network thread: it must only record, never block)."""

    def __init__(
        self,
        url: str,
        client_id: str,
        topic_filters: list[str],
        *,
        queue_max: int,
        on_connack: Callable[[bool, bool], None],
    ) -> None:
        super().__init__(url, client_id, topic_filters, queue_max=queue_max)
        self._on_connack = on_connack
        self.subscribed = threading.Event()
        self._client.on_subscribe = self._on_subscribe

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        first = not self._connected_once.is_set()
        super()._on_connect(client, userdata, flags, reason_code, properties)
        if not reason_code.is_failure:
            self._on_connack(bool(flags.session_present), first)

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
