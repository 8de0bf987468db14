"""``cityops ingest``: MQTT in, PostgreSQL out, each message acknowledged only after its commit.

The pipeline, stage by stage (docs/ingestion.md), and the thread each runs on:

    receive      paho's network thread -> the consumer's bounded Inbox    (cityops.kernel.mqtt)
    decode       decoder thread: stages.decode, one message at a time     (ingestion.stages)
    batch        decoder thread: by size or age, handed to a writer       (ingestion.batching)
    validate     writer thread: stages.validate against the catalogue     (ingestion.writer)
    seq reuse    writer thread: reused sequence numbers quarantined       (ingestion.seqreuse)
    write        writer thread: one binary COPY and COMMIT                (ingestion.store)
    acknowledge  writer thread: every PUBACK of the batch in one write    (cityops.kernel.mqtt)

``Ingestor`` only wires them and runs the threads: ``_decode_loop`` and ``_write_loop`` are the
pipeline's two halves. While the database is down the writer retries the same batch,
acknowledges nothing and reports "stalled"; the decoder waits for it (one batch in hand, one in
the hand-off), so memory stays bounded and the backlog stays in the broker.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import start_http_server

from cityops.kernel.clock import Deadline
from cityops.kernel.logs import install_json_logging, log_event
from cityops.kernel.mqtt import RECEIVE_MAXIMUM, Message
from cityops.kernel.settings import Settings
from ingestion.batching import Batch, BatchPolicy, Item
from ingestion.classify import decode_item as decode_item  # re-exported: tests inject a defect
from ingestion.maintenance import MAINTENANCE_S, run_maintenance
from ingestion.metrics import IngestMetrics
from ingestion.mqtt import QUEUE_MAX_BYTES, IngestConsumer
from ingestion.stages import decode
from ingestion.store import IngestConnection, register_worker, write_heartbeat
from ingestion.writer import (
    RETRY_MAX_S,
    BatchWriter,
    CatalogueCache,
    PendingGaps,
    WorkerStatus,
)
from sensors.payload import TimeWindow
from sensors.topics import shared, telemetry_filter

log = logging.getLogger("ingestion")

HEARTBEAT_S = 5.0
# ``cityops_ingest_healthy`` is 1 while every thread is alive and the last commit or idle
# heartbeat is at most this old (the idle heartbeat comes every HEARTBEAT_S)
HEALTHY_WITHIN_S = 30.0
TAKE_MAX = 64  # messages the decoder takes from the inbox at a time
# writer threads, each with its own connection: while one batch waits for its COMMIT (fsync),
# the next is written; two batches fill the broker's in-flight window of 1000 messages
WRITERS = 2


def is_healthy(
    now: float, last_beat: float | None, state: str, threads_alive: bool, within_s: float
) -> bool:
    """Healthy: every thread alive, not starting or stopped, and the last commit or heartbeat
    (monotonic seconds) at most ``within_s`` ago. Pure."""
    if not threads_alive or state in ("starting", "stopped") or last_beat is None:
        return False
    return now - last_beat <= within_s


@dataclass(frozen=True, slots=True)
class Health:
    state: str  # starting | running | stalled | stopped
    connected: bool
    queue_depth: int
    queue_bytes: int
    last_commit_age_s: float | None
    stored: int
    quarantined: int
    sessions_lost: int
    healthy: bool = False  # what the ``cityops_ingest_healthy`` gauge reports


class Ingestor:
    """One ingestion worker. ``start()`` returns once connected; ``stop()`` shuts down cleanly:
    the batch in hand is committed and acknowledged, the rest stays with the broker."""

    def __init__(self, settings: Settings, *, queue_max_bytes: int = QUEUE_MAX_BYTES) -> None:
        self.settings = settings
        self.client_id = settings.ingest_client_id
        self.metrics = IngestMetrics()
        self.status = WorkerStatus(self.client_id, self.metrics)
        self.window = TimeWindow(settings.accept_past_s, settings.accept_future_s)
        # at most half the broker's in-flight window per batch, so that the next batch fills
        # while this one commits
        self.policy = BatchPolicy(
            max_readings=settings.ingest_batch_max,
            max_messages=max(1, min(settings.ingest_batch_max, RECEIVE_MAXIMUM // 2)),
            max_age_s=settings.ingest_batch_age_ms / 1000.0,
        )
        self.healthy_within_s = HEALTHY_WITHIN_S
        self._stop = threading.Event()
        self._abandon = threading.Event()  # stop retrying a stalled batch
        self._handoff: queue.Queue[list[Item[Message]] | None] = queue.Queue(maxsize=1)
        self._gaps = PendingGaps()
        self._catalogue = CatalogueCache()
        self._had_committed = False
        self._main_ic: IngestConnection | None = None
        self._metrics_server: Any = None
        self.consumer = IngestConsumer(
            settings.mqtt_url_for("ingest"),
            self.client_id,
            [shared(settings.ingest_share_group, telemetry_filter())],
            queue_max=settings.ingest_queue_max,
            queue_max_bytes=queue_max_bytes,
            on_connack=self._on_connack,
        )
        self._batch_writers = [
            BatchWriter(
                settings,
                self.status,
                self._catalogue,
                self._gaps,
                self.consumer.ack_many,
                self._abandon,
            )
            for _ in range(WRITERS)
        ]
        # daemon: a writer abandoned while the database is down must not keep the process alive
        self._decoder = threading.Thread(
            target=self._decode_loop, name="ingest-decoder", daemon=True
        )
        self._writers = [
            threading.Thread(
                target=self._write_loop, args=(i,), name=f"ingest-writer-{i}", daemon=True
            )
            for i in range(WRITERS)
        ]
        self.metrics.healthy.set_function(lambda: 1.0 if self._is_healthy() else 0.0)

    @property
    def on_commit(self) -> Callable[[list[Item[Message]], int], None] | None:
        """Called after each commit with the batch and the commit's wall time [ns]
        (benchmarks measure publish-to-commit latency with it); must be quick."""
        return self._batch_writers[0].on_commit

    @on_commit.setter
    def on_commit(self, fn: Callable[[list[Item[Message]], int], None] | None) -> None:
        for w in self._batch_writers:
            w.on_commit = fn

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, connect_timeout_s: float = 10.0) -> None:
        if self.settings.metrics_port:
            self._metrics_server, _ = start_http_server(
                self.settings.metrics_port,
                addr=self.settings.metrics_host,
                registry=self.metrics.registry,
            )
        ic = self._main_ic = self._connect_db_until_ready()
        if ic is None:
            return  # stopped while waiting
        self._had_committed = register_worker(ic)
        self._maintenance(ic)
        self._catalogue.refresh(ic)
        self._decoder.start()
        for w in self._writers:
            w.start()
        subscribed = self.consumer.start_waiting(connect_timeout_s)
        self.status.state = "running"
        if subscribed:  # 'running' in ingest_workers: messages published from now on are ours
            with contextlib.suppress(psycopg.Error):
                write_heartbeat(ic, "running")
                self.status.beat()
        log_event(
            log,
            "ingest_started",
            client_id=self.client_id,
            storage=ic.storage,
            sensors=len(self._catalogue.catalogue.sensors),
        )

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout_s: float = 15.0, *, end_session: bool = False) -> None:
        """Commit and acknowledge the batch in hand, then disconnect. The session is kept (the
        broker holds what arrives meanwhile) unless ``end_session``: a worker that leaves the
        shared group for good must end it, or the broker keeps queueing its share."""
        self._stop.set()
        deadline = Deadline(timeout_s)
        for t in (self._decoder, *self._writers):
            if t.is_alive():
                t.join(max(0.1, deadline.left() - 2))
        if any(w.is_alive() for w in self._writers):
            self._abandon.set()  # still stalled: leave the batches to the broker
            for w in self._writers:
                w.join(5)
        # what is still in the inbox is not acknowledged: the broker delivers it again (the
        # consumer closes its inbox first, so a network thread waiting for room gives up)
        try:
            self.consumer.stop(end_session=end_session)
        except Exception:
            log.exception("mqtt stop failed")
        self._write_stopped()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.status.state = "stopped"
        log_event(log, "ingest_stopped", client_id=self.client_id, stored=self.status.stored)

    def _write_stopped(self) -> None:
        ic = self._main_ic
        if ic is None:
            return
        with contextlib.suppress(psycopg.Error):
            if ic.broken:
                ic.close()
                ic = IngestConnection(self.settings.database_url, self.client_id)
            write_heartbeat(ic, "stopped")
        ic.close()

    def health(self) -> Health:
        s = self.status
        return Health(
            state=s.state,
            connected=self.consumer.status.connected,
            queue_depth=self.consumer.queue.qsize(),
            queue_bytes=self.consumer.queued_bytes,
            last_commit_age_s=None if s.last_commit is None else time.monotonic() - s.last_commit,
            stored=s.stored,
            quarantined=s.quarantined,
            sessions_lost=self.consumer.status.sessions_lost,
            healthy=self._is_healthy(),
        )

    def _is_healthy(self) -> bool:
        """Evaluated at each scrape: every thread alive, and a commit or heartbeat recently."""
        threads = (self._decoder, *self._writers)
        return is_healthy(
            time.monotonic(),
            self.status.last_beat,
            self.status.state,
            all(t.is_alive() for t in threads),
            self.healthy_within_s,
        )

    # -- network thread: receive ------------------------------------------------------------
    def _on_connack(self, session_present: bool, first: bool) -> None:
        gap = None
        if not session_present and not first:
            gap = ("session_lost", "reconnected without a session: queued messages may be lost")
        elif not session_present and first and self._had_committed:
            gap = ("session_absent_on_start", "this client id had a session the broker lost")
        if gap:
            self.metrics.sessions_lost.inc()
            self._gaps.add(*gap)
            log_event(log, "possible_gap", logging.WARNING, kind=gap[0], client_id=self.client_id)

    # -- decoder thread: decode and batch ---------------------------------------------------
    def _decode_loop(self) -> None:
        """Runs until stop. A defect anywhere but in the decoder itself (which quarantines its
        message as ``internal_error``) is logged and the loop goes on with the batch in hand."""
        batch: Batch[Message] = Batch(self.policy)
        while True:
            try:
                stopping = self._stop.is_set()
                if stopping or batch.is_due(time.monotonic()):
                    if batch.items:
                        self._handoff.put(batch.items)
                        batch = Batch(self.policy)
                    if stopping:
                        for _ in self._writers:
                            self._handoff.put(None)
                        return
                timeout = 0.2 if not batch.items else max(0.0, batch.time_left(time.monotonic()))
                # a few at a time: the batch may fill by readings before by messages
                for msg in self.consumer.queue.take(
                    min(TAKE_MAX, self.policy.max_messages), timeout
                ):
                    batch.add(self._decode(msg), time.monotonic())
                    if batch.is_full():
                        self._handoff.put(batch.items)
                        batch = Batch(self.policy)
            except Exception:
                log.exception("decoder loop failed; going on")
                self._stop.wait(0.1)

    def _decode(self, msg: Message) -> Item[Message]:
        item, defect = decode(
            msg,
            msg.topic,
            msg.payload,
            msg.retain,
            msg.received_ns // 1000,
            time.time_ns() // 1000,
            self.window,
            decoder=decode_item,
        )
        if defect is not None:
            # a defect of the decoder, not of the message: say so loudly, go on with the stream
            log_event(
                log,
                "decode_failed",
                logging.ERROR,
                topic=item.topic[:300],
                error=getattr(item.outcome, "detail", ""),
                traceback=defect,
            )
        return item

    # -- writer threads: validate, write, acknowledge ---------------------------------------
    def _write_loop(self, index: int) -> None:
        """Runs until shutdown (``None`` from the decoder, or abandoned while stalled). Writer
        0 also writes the idle heartbeat and runs the hourly maintenance."""
        writer = self._batch_writers[index]
        last_beat = last_maint = time.monotonic()
        carry: list[Item[Message]] = []  # a batch taken but not committed when a defect struck
        while True:
            try:
                self.metrics.queue_depth.set(self.consumer.queue.qsize())
                self.metrics.connected.set(1 if self.consumer.status.connected else 0)
                items = carry or self._next_batch()
                if items is None:
                    writer.close()
                    return
                now = time.monotonic()
                if items or self._gaps:
                    carry = items
                    if not writer.store(items):
                        return  # abandoned while stalled at shutdown: the broker keeps them
                    carry = []
                    last_beat = now
                elif index == 0 and now - last_beat >= HEARTBEAT_S:
                    self._idle_work(writer, self._heartbeat)
                    last_beat = now
                if index == 0 and now - last_maint >= MAINTENANCE_S:
                    self._idle_work(writer, self._maintenance)
                    last_maint = now
            except Exception as exc:
                log.exception("writer loop failed; going on")
                self.status.set_stalled(exc)
                if self._abandon.wait(1.0):
                    return

    def _next_batch(self) -> list[Item[Message]] | None:
        """The next batch from the decoder; [] when none came within a second (time for the
        heartbeat), None at shutdown."""
        try:
            return self._handoff.get(timeout=1.0)
        except queue.Empty:
            return []

    def _heartbeat(self, ic: IngestConnection) -> None:
        write_heartbeat(ic)
        self.status.beat()

    def _maintenance(self, ic: IngestConnection) -> None:
        run_maintenance(ic, self.settings)

    def _idle_work(self, writer: BatchWriter, fn: Callable[[IngestConnection], None]) -> None:
        try:
            ic = writer.connection()
            if ic is not None:
                fn(ic)
                self.status.set_running()
        except psycopg.Error as exc:
            writer.drop(exc)
        except Exception:
            log.exception("idle work failed")

    def _connect_db_until_ready(self) -> IngestConnection | None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                return IngestConnection(self.settings.database_url, self.client_id)
            except psycopg.OperationalError as exc:
                log_event(log, "database_unreachable", logging.WARNING, error=str(exc)[:200])
                self._stop.wait(backoff)
                backoff = min(RETRY_MAX_S, backoff * 2)
        return None


def run(settings: Settings) -> None:
    """Run one ingestion worker until SIGTERM or SIGINT, then shut down cleanly."""
    install_json_logging()
    ingestor = Ingestor(settings)

    def _on_signal(signum: int, _frame: object) -> None:
        log_event(log, "signal", signal=signal.Signals(signum).name)
        ingestor.request_stop()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    ingestor.start()
    while not ingestor._stop.wait(1.0):
        pass
    ingestor.stop()
