"""``cityops ingest``: MQTT in, PostgreSQL out, each message acknowledged only after its commit.

Threads (docs/ingestion.md):

* paho's network thread only appends received messages to a bounded queue (cityops.kernel.mqtt);
* the decoder thread takes them, decodes and classifies them (ingestion.classify) and closes
  batches by size or age (ingestion.batching);
* the writer thread checks each batch against the catalogue, writes it in one transaction
  (ingestion.store), commits, and only then acknowledges every message of the batch. While the
  database is down it retries the same batch, acknowledges nothing and reports "stalled"; the
  decoder waits for it (one batch in hand, one in the hand-off), so memory stays bounded and the
  backlog stays in the broker.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from prometheus_client import start_http_server

from cityops.kernel.mqtt import RECEIVE_MAXIMUM, Message
from cityops.kernel.settings import Settings
from ingestion.batching import Batch, BatchPolicy, Item, split_batch
from ingestion.classify import (
    Catalogue,
    Decoded,
    Rejection,
    Row,
    check_catalogue,
    decode_item,
    sanitize_text,
)
from ingestion.logs import install_json_logging, log_event
from ingestion.metrics import IngestMetrics
from ingestion.mqtt import QUEUE_MAX_BYTES, IngestConsumer
from ingestion.store import (
    IngestConnection,
    QuarantineRow,
    WriteResult,
    apply_retention,
    drop_old_bookkeeping,
    drop_old_quarantine,
    read_catalogue,
    read_sensors,
    register_worker,
    write_batch,
    write_followup,
    write_heartbeat,
    write_partitions,
)
from sensors.payload import TimeWindow
from sensors.topics import shared, telemetry_filter

log = logging.getLogger("ingestion")

CATALOGUE_REFRESH_S = 30.0  # periodic refresh of the sensor catalogue
HEARTBEAT_S = 5.0
MAINTENANCE_S = 3600.0  # partitions ahead, retention
RETRY_MAX_S = 5.0
# ``cityops_ingest_healthy`` is 1 while every thread is alive and the last commit or idle
# heartbeat is at most this old (the idle heartbeat comes every HEARTBEAT_S)
HEALTHY_WITHIN_S = 30.0
# rejected messages are kept this long (or CITYOPS_RETENTION_DAYS when shorter)
QUARANTINE_KEEP_DAYS = 30
# gaps and duplicate counts feed the data-trust figures: kept as long as the readings, and a
# little over a year when readings are kept for ever (they grow by sensors x hours)
BOOKKEEPING_KEEP_DAYS = 400
TAKE_MAX = 64  # messages the decoder takes from the inbox at a time
# writer threads, each with its own connection: while one batch waits for its COMMIT (fsync),
# the next is written; two batches fill the broker's in-flight window of 1000 messages
WRITERS = 2


# errors of the connection (reconnect and retry) and of concurrency (retry at once)
_RECONNECT = (psycopg.OperationalError, psycopg.InterfaceError)
_RETRY_NOW = (psycopg.errors.TransactionRollback, psycopg.errors.DeadlockDetected)


def _rollback(ic: IngestConnection) -> None:
    """Roll back after a refused statement; a failing rollback means a lost connection."""
    try:
        ic.conn.rollback()
    except psycopg.Error as exc:
        raise psycopg.OperationalError(f"rollback failed: {exc}") from exc


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


class _StoreRefused(Exception):
    """Even the minimal quarantine record of a message was refused: the fault is the database's
    (permissions, a trigger on the quarantine), not the message's, so retry, acknowledge nothing."""


class Ingestor:
    """One ingestion worker. ``start()`` returns once connected; ``stop()`` shuts down cleanly:
    the batch in hand is committed and acknowledged, the rest stays with the broker."""

    def __init__(self, settings: Settings, *, queue_max_bytes: int = QUEUE_MAX_BYTES) -> None:
        self.settings = settings
        self.client_id = settings.ingest_client_id
        self.metrics = IngestMetrics()
        self.window = TimeWindow(settings.accept_past_s, settings.accept_future_s)
        # at most half the broker's in-flight window per batch, so that the next batch fills
        # while this one commits
        self.policy = BatchPolicy(
            max_readings=settings.ingest_batch_max,
            max_messages=max(1, min(settings.ingest_batch_max, RECEIVE_MAXIMUM // 2)),
            max_age_s=settings.ingest_batch_age_ms / 1000.0,
        )
        self._stop = threading.Event()
        self._abandon = threading.Event()  # stop retrying a stalled batch
        self._handoff: queue.Queue[list[Item[Message]] | None] = queue.Queue(maxsize=1)
        self._gaps: list[tuple[str, str]] = []
        self._gaps_lock = threading.Lock()
        self._had_committed = False
        self._local = threading.local()  # each writer thread's own database connection
        self._main_ic: IngestConnection | None = None
        self._stats_lock = threading.Lock()
        self._catalogue = Catalogue.empty()
        self._catalogue_at = 0.0
        self._state = "starting"
        self._last_commit: float | None = None
        self._last_beat: float | None = None  # monotonic time of the last commit or heartbeat
        self.healthy_within_s = HEALTHY_WITHIN_S
        self._stored = 0
        self._quarantined = 0
        self._metrics_server: Any = None
        # called by the writer after each commit with the batch and the commit's wall time [ns]
        # (benchmarks measure publish-to-commit latency with it); must be quick
        self.on_commit: Callable[[list[Item[Message]], int], None] | None = None
        self.consumer = IngestConsumer(
            settings.mqtt_url_for("ingest"),
            self.client_id,
            [shared(settings.ingest_share_group, telemetry_filter())],
            queue_max=settings.ingest_queue_max,
            queue_max_bytes=queue_max_bytes,
            on_connack=self._on_connack,
        )
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
        self._refresh_catalogue(ic)
        self._decoder.start()
        for w in self._writers:
            w.start()
        subscribed = self.consumer.start_waiting(connect_timeout_s)
        self._state = "running"
        if subscribed:  # 'running' in ingest_workers: messages published from now on are ours
            with contextlib.suppress(psycopg.Error):
                write_heartbeat(ic, "running")
                self._last_beat = time.monotonic()
        log_event(
            log,
            "ingest_started",
            client_id=self.client_id,
            storage=ic.storage,
            sensors=len(self._catalogue.sensors),
        )

    def request_stop(self) -> None:
        self._stop.set()

    def stop(self, timeout_s: float = 15.0, *, end_session: bool = False) -> None:
        """Commit and acknowledge the batch in hand, then disconnect. The session is kept (the
        broker holds what arrives meanwhile) unless ``end_session``: a worker that leaves the
        shared group for good must end it, or the broker keeps queueing its share."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for t in (self._decoder, *self._writers):
            if t.is_alive():
                t.join(max(0.1, deadline - time.monotonic() - 2))
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
        ic = self._main_ic
        if ic is not None:
            with contextlib.suppress(psycopg.Error):
                if ic.broken:
                    ic.close()
                    ic = IngestConnection(self.settings.database_url, self.client_id)
                write_heartbeat(ic, "stopped")
            ic.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self._state = "stopped"
        log_event(log, "ingest_stopped", client_id=self.client_id, stored=self._stored)

    def health(self) -> Health:
        return Health(
            state=self._state,
            connected=self.consumer.status.connected,
            queue_depth=self.consumer.queue.qsize(),
            queue_bytes=self.consumer.queued_bytes,
            last_commit_age_s=(
                None if self._last_commit is None else time.monotonic() - self._last_commit
            ),
            stored=self._stored,
            quarantined=self._quarantined,
            sessions_lost=self.consumer.status.sessions_lost,
            healthy=self._is_healthy(),
        )

    def _is_healthy(self) -> bool:
        """Evaluated at each scrape: every thread alive, and a commit or heartbeat recently."""
        threads = (self._decoder, *self._writers)
        return is_healthy(
            time.monotonic(),
            self._last_beat,
            self._state,
            all(t.is_alive() for t in threads),
            self.healthy_within_s,
        )

    # -- network thread -------------------------------------------------------------------
    def _on_connack(self, session_present: bool, first: bool) -> None:
        gap = None
        if not session_present and not first:
            gap = ("session_lost", "reconnected without a session: queued messages may be lost")
        elif not session_present and first and self._had_committed:
            gap = ("session_absent_on_start", "this client id had a session the broker lost")
        if gap:
            self.metrics.sessions_lost.inc()
            with self._gaps_lock:
                self._gaps.append(gap)
            log_event(log, "possible_gap", logging.WARNING, kind=gap[0], client_id=self.client_id)

    # -- decoder thread -------------------------------------------------------------------
    def _decode_loop(self) -> None:
        """Runs until stop. A defect met decoding one message quarantines that message
        (``internal_error``); a defect anywhere else is logged and the loop goes on with the
        batch in hand."""
        inbox = self.consumer.queue
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
                for msg in inbox.take(min(TAKE_MAX, self.policy.max_messages), timeout):
                    batch.add(self._decode(msg), time.monotonic())
                    if batch.is_full():
                        self._handoff.put(batch.items)
                        batch = Batch(self.policy)
            except Exception:
                log.exception("decoder loop failed; going on")
                self._stop.wait(0.1)

    def _decode(self, msg: Message) -> Item[Message]:
        try:
            outcome: Decoded | Rejection = decode_item(
                msg.topic, msg.payload, msg.retain, time.time_ns() // 1000, self.window
            )
        except Exception as exc:
            # a defect of the decoder, not of the message: keep the message (quarantined, so it
            # can be replayed once fixed), say so loudly, and go on with the stream
            detail = sanitize_text(f"{type(exc).__name__}: {exc}", 300)
            outcome = Rejection("internal_error", detail, None)
            log_event(
                log,
                "decode_failed",
                logging.ERROR,
                topic=sanitize_text(msg.topic, 300),
                error=detail,
                traceback=traceback.format_exc(limit=6)[-2000:],
            )
        return Item(msg, msg.topic, msg.payload, msg.received_ns // 1000, outcome)

    # -- writer thread --------------------------------------------------------------------
    def _write_loop(self, index: int) -> None:
        """Runs until shutdown (``None`` from the decoder, or abandoned while stalled) and only
        then: a refused message is quarantined, a database that refuses even that stalls the
        worker (retried), a defect is logged and retried."""
        self._local.ic = None
        self._local.followups = []  # batches committed whose write_followup is still due
        last_beat = last_maint = time.monotonic()
        carry: list[Item[Message]] = []  # a batch taken but not committed when a defect struck
        while True:
            try:
                self.metrics.queue_depth.set(self.consumer.queue.qsize())
                self.metrics.connected.set(1 if self.consumer.status.connected else 0)
                items: list[Item[Message]] | None
                if carry:
                    items = carry
                else:
                    try:
                        items = self._handoff.get(timeout=1.0)
                    except queue.Empty:
                        items = []
                if items is None:
                    if self._local.ic is not None:
                        self._local.ic.close()
                    return
                now = time.monotonic()
                with self._gaps_lock:
                    has_gaps = bool(self._gaps)
                if items or has_gaps:
                    carry = items
                    if not self._commit(items):
                        return  # abandoned while stalled at shutdown: the broker keeps them
                    carry = []
                    last_beat = now
                elif index == 0 and now - last_beat >= HEARTBEAT_S:
                    self._idle_work(self._heartbeat)
                    last_beat = now
                if index == 0 and now - last_maint >= MAINTENANCE_S:
                    self._idle_work(self._maintenance)
                    last_maint = now
            except Exception as exc:
                log.exception("writer loop failed; going on")
                self._set_stalled(exc)
                if self._abandon.wait(1.0):
                    return

    def _heartbeat(self, ic: IngestConnection) -> None:
        write_heartbeat(ic)
        self._last_beat = time.monotonic()

    def _idle_work(self, fn: Callable[[IngestConnection], None]) -> None:
        try:
            ic = self._ensure_db()
            if ic is not None:
                fn(ic)
                self._set_running()
        except psycopg.Error as exc:
            self._drop_db(exc)
        except Exception:
            log.exception("idle work failed")

    def _commit(self, items: list[Item[Message]]) -> bool:
        """Write ``items`` and acknowledge each once committed. While the database is
        unreachable, or refuses even a message's quarantine record, retry with backoff, state
        ``stalled``, acknowledging nothing not committed. False only when abandoned because of
        shutdown while stalled."""
        backoff = 0.1
        remaining = items  # not yet committed
        committed_ns = 0
        while True:
            ic = self._ensure_db()
            if ic is None:
                if self._abandon.wait(backoff):
                    return False
                backoff = min(RETRY_MAX_S, backoff * 2)
                continue
            try:
                self._write(ic, remaining)
                committed_ns = time.time_ns()
                break
            except _RETRY_NOW as exc:
                # deadlock with the other writer or worker on a rollup row: just run it again
                log_event(log, "batch_retried", logging.WARNING, error=str(exc)[:200])
                self._rollback_or_drop(ic)
            except _RECONNECT as exc:
                self._drop_db(exc)
                if self._abandon.wait(backoff):
                    return False
                backoff = min(RETRY_MAX_S, backoff * 2)
            except psycopg.Error as exc:
                if ic.broken:
                    self._drop_db(exc)
                    continue
                log_event(log, "batch_refused", logging.WARNING, error=str(exc)[:300])
                written: set[int] = set()  # id() of the items committed (and acknowledged)
                try:
                    _rollback(ic)
                    self._write_split(ic, remaining, written)
                    committed_ns = time.time_ns()
                    break
                except _RETRY_NOW:
                    self._rollback_or_drop(ic)
                except _RECONNECT as exc2:
                    self._drop_db(exc2)  # the database went away meanwhile: start over
                except _StoreRefused as exc2:
                    self.metrics.db_errors.inc()
                    self._set_stalled(exc2)
                    if self._abandon.wait(backoff):
                        return False
                    backoff = min(RETRY_MAX_S, backoff * 2)
                finally:
                    remaining = [it for it in remaining if id(it) not in written]
            except Exception as exc:
                # a defect, not an outage: stay visible (stalled, logged) and keep the messages
                log.exception("batch write failed")
                self._drop_db(exc)
                if self._abandon.wait(RETRY_MAX_S):
                    return False
        # empty after a split: each part was acknowledged on its commit
        self.consumer.ack_many([item.message for item in remaining])
        if self.on_commit is not None:
            try:
                self.on_commit(items, committed_ns)
            except Exception:
                log.exception("on_commit callback failed")
        self._run_followups()
        return True

    def _run_followups(self) -> None:
        """The latest values and heartbeat of the batches just committed and acknowledged
        (``write_followup``). A failure loses no reading: it is logged and the next batch
        brings the latest values forward again."""
        pending: list[WriteResult] = self._local.followups
        ic = self._local.ic
        while pending and ic is not None:
            try:
                write_followup(ic, pending[0])
            except psycopg.Error as exc:
                log_event(log, "followup_failed", logging.WARNING, error=str(exc)[:300])
                if ic.broken:
                    self._drop_db(exc)
                    return
                self._rollback_or_drop(ic)
            pending.pop(0)

    def _write_split(
        self, ic: IngestConnection, items: list[Item[Message]], written: set[int]
    ) -> None:
        """Find the message(s) the database refuses by halving and quarantine those
        (``store_refused``); each part is acknowledged once committed and added to ``written``.
        Raises what calls for a reconnect or a plain retry, and, once every other part is
        written, ``_StoreRefused`` when a message could not be recorded at all."""
        refused = self._split(ic, items, written)
        if refused is not None:
            raise refused

    def _split(
        self, ic: IngestConnection, items: list[Item[Message]], written: set[int]
    ) -> _StoreRefused | None:
        if len(items) == 1:
            try:
                self._write_refused(ic, items[0])
            except _StoreRefused as exc:
                return exc
            self._acknowledged(items, written)
            return None
        refused = None
        for half in split_batch(items):
            try:
                self._write(ic, half)
            except (*_RETRY_NOW, *_RECONNECT):
                raise
            except psycopg.Error:
                _rollback(ic)
                refused = self._split(ic, half, written) or refused
                continue
            self._acknowledged(half, written)
        return refused

    def _acknowledged(self, items: list[Item[Message]], written: set[int]) -> None:
        self.consumer.ack_many([it.message for it in items])
        written.update(id(it) for it in items)

    def _write_refused(self, ic: IngestConnection, it: Item[Message]) -> None:
        """Quarantine one message the database refused; if it refuses that as well, keep a
        minimal record (no payload, ASCII topic, no sensor id). When even that is refused the
        fault is not the message's: ``_StoreRefused``."""
        sensor_id = it.outcome.sensor_id
        it.outcome = Rejection("store_refused", "database refused the message", sensor_id)
        try:
            self._write(ic, [it])
            return
        except (*_RETRY_NOW, *_RECONNECT):
            raise
        except psycopg.Error as exc:
            _rollback(ic)
            log_event(log, "quarantine_refused", logging.ERROR, error=str(exc)[:300])
        row = QuarantineRow(
            it.received_us,
            it.topic.encode("ascii", "backslashreplace").decode("ascii")[:200],
            b"",
            "store_refused",
            "database refused the message and its quarantine record: payload not kept",
            None,
            payload_size=len(it.payload),
        )
        try:
            result = write_batch(ic, [], [], [row])
            self._local.followups.append(result)
        except (*_RETRY_NOW, *_RECONNECT):
            raise
        except psycopg.Error as exc:
            _rollback(ic)
            log_event(log, "quarantine_minimal_refused", logging.ERROR, error=str(exc)[:300])
            raise _StoreRefused(str(exc)[:300]) from exc
        log_event(log, "quarantined_minimal", logging.WARNING, topic=row.topic)
        self.metrics.received.inc()
        self.metrics.quarantined.labels("store_refused").inc()
        with self._stats_lock:
            self._quarantined += result.quarantined
            self._last_commit = self._last_beat = time.monotonic()
        self._set_running()

    def _rollback_or_drop(self, ic: IngestConnection) -> None:
        try:
            ic.conn.rollback()
        except psycopg.Error as exc2:
            self._drop_db(exc2)

    def _write(self, ic: IngestConnection, items: list[Item[Message]]) -> None:
        t0 = time.monotonic()
        now = t0
        if now - self._catalogue_at >= CATALOGUE_REFRESH_S:
            self._refresh_catalogue(ic)
        missing = {
            it.outcome.sensor_id
            for it in items
            if isinstance(it.outcome, Decoded)
            and it.outcome.sensor_id not in self._catalogue.sensors
        }
        if missing:
            # a sensor registered after the last refresh: look it up now (indexed, cheap even
            # for a flood of unknown ids)
            found = read_sensors(ic.conn, sorted(missing))
            if found:
                old = self._catalogue
                self._catalogue = Catalogue({**old.sensors, **found}, old.type_quantities)
        catalogue = self._catalogue
        rows: list[Row] = []
        recv: list[int] = []
        rejects: list[QuarantineRow] = []
        by_reason: dict[str, int] = {}
        oldest_recv = None
        newest_ts = 0
        for it in items:
            out = it.outcome
            if oldest_recv is None or it.received_us < oldest_recv:
                oldest_recv = it.received_us
            if isinstance(out, Decoded):
                try:
                    checked = check_catalogue(out, catalogue)
                except Exception as exc:  # a defect: quarantine this message, not the batch
                    log.exception("catalogue check failed")
                    checked = Rejection(
                        "internal_error", f"{type(exc).__name__}: {exc}", out.sensor_id
                    )
            else:
                checked = out
            if isinstance(checked, Rejection):
                rejects.append(
                    QuarantineRow(
                        it.received_us,
                        sanitize_text(it.topic, 300),
                        it.payload,
                        checked.reason,
                        sanitize_text(checked.detail),
                        checked.sensor_id,
                    )
                )
                by_reason[checked.reason] = by_reason.get(checked.reason, 0) + 1
            else:
                rows.extend(checked)
                recv.extend([it.received_us] * len(checked))
                for r in checked:
                    if r[2] > newest_ts:
                        newest_ts = r[2]
        with self._gaps_lock:
            gaps, self._gaps = self._gaps, []
        try:
            result = write_batch(ic, rows, recv, rejects, gaps)
        except BaseException:
            with self._gaps_lock:
                self._gaps = gaps + self._gaps
            raise
        self._local.followups.append(result)
        done = time.monotonic()
        m = self.metrics
        m.received.inc(len(items))
        m.stored.inc(result.inserted)
        m.duplicates.inc(result.staged - result.inserted)
        for reason, n in by_reason.items():
            m.quarantined.labels(reason).inc(n)
            if reason == "id_mismatch":
                log_event(log, "security_id_mismatch", logging.WARNING, messages=n)
        m.batch_readings.observe(result.staged)
        m.batch_seconds.observe(done - t0)
        wall_us = time.time_ns() // 1000
        if oldest_recv is not None:
            m.lag.set(max(0.0, (wall_us - oldest_recv) / 1e6))
        if newest_ts:
            m.reading_age.set((wall_us - newest_ts) / 1e6)
        with self._stats_lock:
            self._stored += result.inserted
            self._quarantined += result.quarantined
            self._last_commit = self._last_beat = done
        self._set_running()
        if rejects:
            log_event(log, "quarantined", logging.INFO, reasons=by_reason)
        if gaps:
            log_event(log, "gaps_recorded", logging.WARNING, gaps=[g[0] for g in gaps])

    # -- database -------------------------------------------------------------------------
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

    def _ensure_db(self) -> IngestConnection | None:
        """This writer thread's connection, reconnecting when broken."""
        ic: IngestConnection | None = self._local.ic
        if ic is not None and not ic.broken:
            return ic
        if ic is not None:
            ic.close()
            self._local.ic = None
        try:
            self._local.ic = IngestConnection(self.settings.database_url, self.client_id)
        except psycopg.OperationalError as exc:
            self._set_stalled(exc)
            return None
        return self._local.ic

    def _drop_db(self, exc: BaseException) -> None:
        self.metrics.db_errors.inc()
        self._set_stalled(exc)
        ic = self._local.ic
        if ic is not None:
            ic.close()
            self._local.ic = None

    def _set_running(self) -> None:
        with self._stats_lock:
            if self._state != "stalled":
                return
            self._state = "running"
        self.metrics.stalled.set(0)
        log_event(log, "ingest_resumed", client_id=self.client_id)

    def _set_stalled(self, exc: BaseException) -> None:
        with self._stats_lock:
            was = self._state
            self._state = "stalled"
        self.metrics.stalled.set(1)
        if was != "stalled":
            log_event(
                log, "ingest_stalled", logging.ERROR, client_id=self.client_id, error=str(exc)[:300]
            )

    def _refresh_catalogue(self, ic: IngestConnection) -> None:
        self._catalogue = read_catalogue(ic.conn)
        self._catalogue_at = time.monotonic()

    def _maintenance(self, ic: IngestConnection) -> None:
        """Partitions ahead; retention of readings (plain PostgreSQL drops day partitions,
        TimescaleDB's retention policy is set to the horizon), of the quarantine and of the
        bookkeeping (gaps, duplicate counts). A refused step is logged and the others still run;
        a lost connection is raised."""
        s = self.settings
        created = write_partitions(ic, s.accept_past_s, s.accept_future_s)
        dropped = self._maintenance_step(
            ic, "readings_retention", apply_retention, max(0, s.retention_days)
        )
        purged = self._maintenance_step(
            ic, "quarantine_retention", drop_old_quarantine, quarantine_keep_days(s.retention_days)
        )
        purged += self._maintenance_step(
            ic,
            "bookkeeping_retention",
            drop_old_bookkeeping,
            s.retention_days if s.retention_days > 0 else BOOKKEEPING_KEEP_DAYS,
        )
        if created or dropped:
            log_event(log, "partitions", created=created, dropped=dropped)
        if purged:
            log_event(log, "quarantine_purged", rows=purged)

    def _maintenance_step(
        self, ic: IngestConnection, name: str, fn: Callable[[IngestConnection, int], int], arg: int
    ) -> int:
        try:
            return fn(ic, arg)
        except _RECONNECT:
            raise
        except psycopg.Error as exc:
            _rollback(ic)
            log_event(log, "maintenance_failed", logging.ERROR, step=name, error=str(exc)[:300])
            return 0


def quarantine_keep_days(retention_days: int) -> int:
    """Days rejected messages are kept: ``QUARANTINE_KEEP_DAYS``, or the readings' retention
    when that is shorter (0 = readings kept for ever)."""
    if retention_days <= 0:
        return QUARANTINE_KEEP_DAYS
    return min(QUARANTINE_KEEP_DAYS, retention_days)


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
