"""The writing end of the pipeline: validate a batch, write it, acknowledge it, follow up.

``BatchWriter.store`` is what each writer thread does with a batch (docs/ingestion.md):

    validate (stages.validate, against the catalogue; reused sequence numbers quarantined:
    store.read_seq_conflicts)  ->  write (store.write_batch, one COMMIT)
    ->  acknowledge (every message, one write to the broker)  ->  follow up (latest values,
    heartbeat; store.write_followup)

Nothing is acknowledged before it is committed. While the database is unreachable the batch is
retried with backoff and the worker is ``stalled``; a batch the database refuses is halved until
the refused message is found and quarantined (``store_refused``); if even a minimal quarantine
row is refused the fault is the database's and the message is retried, unacknowledged.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from cityops.kernel.logs import log_event
from cityops.kernel.mqtt import Message
from cityops.kernel.settings import Settings
from ingestion.batching import Item, split_batch
from ingestion.classify import Catalogue, Rejection
from ingestion.metrics import IngestMetrics
from ingestion.stages import (
    Validated,
    minimal_quarantine_row,
    quarantine_reused,
    unknown_sensors,
    validate,
)
from ingestion.store import (
    IngestConnection,
    WriteResult,
    read_catalogue,
    read_sensors,
    read_seq_conflicts,
    write_batch,
    write_followup,
)

log = logging.getLogger("ingestion")

CATALOGUE_REFRESH_S = 30.0  # periodic refresh of the sensor catalogue
RETRY_MAX_S = 5.0  # longest backoff between attempts while the database is away

# errors of the connection (reconnect and retry) and of concurrency (retry at once)
RECONNECT = (psycopg.OperationalError, psycopg.InterfaceError)
RETRY_NOW = (psycopg.errors.TransactionRollback, psycopg.errors.DeadlockDetected)

Items = list[Item[Message]]


class WorkerStatus:
    """The worker's state and counts, shared by its threads: what ``health()``, the metrics
    and the logs report. ``last_beat`` is the monotonic time of the last commit or heartbeat."""

    def __init__(self, client_id: str, metrics: IngestMetrics) -> None:
        self.client_id = client_id
        self.metrics = metrics
        self.state = "starting"  # starting | running | stalled | stopped
        self.last_commit: float | None = None
        self.last_beat: float | None = None
        self.stored = 0
        self.quarantined = 0
        self._lock = threading.Lock()

    def committed(self, inserted: int, quarantined: int) -> None:
        with self._lock:
            self.stored += inserted
            self.quarantined += quarantined
            self.last_commit = self.last_beat = time.monotonic()
        self.set_running()

    def beat(self) -> None:
        self.last_beat = time.monotonic()

    def set_running(self) -> None:
        with self._lock:
            if self.state != "stalled":
                return
            self.state = "running"
        self.metrics.stalled.set(0)
        log_event(log, "ingest_resumed", client_id=self.client_id)

    def set_stalled(self, exc: BaseException) -> None:
        with self._lock:
            was, self.state = self.state, "stalled"
        self.metrics.stalled.set(1)
        if was != "stalled":
            log_event(
                log, "ingest_stalled", logging.ERROR, client_id=self.client_id, error=str(exc)[:300]
            )


class PendingGaps:
    """Possible data gaps reported by the network thread, written with the next batch."""

    def __init__(self) -> None:
        self._gaps: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, kind: str, detail: str) -> None:
        with self._lock:
            self._gaps.append((kind, detail))

    def take(self) -> list[tuple[str, str]]:
        with self._lock:
            gaps, self._gaps = self._gaps, []
            return gaps

    def put_back(self, gaps: list[tuple[str, str]]) -> None:
        with self._lock:
            self._gaps = gaps + self._gaps

    def __bool__(self) -> bool:
        return bool(self._gaps)


class CatalogueCache:
    """The sensor catalogue as the writers check batches against it: read every
    ``CATALOGUE_REFRESH_S``, and a sensor a batch names that the cache lacks is looked up at
    once (registered a moment before its first message; indexed, cheap even for a flood of
    unknown ids). Shared by the writer threads: a ``Catalogue`` is replaced, never changed."""

    def __init__(self) -> None:
        self.catalogue = Catalogue.empty()
        self._read_at = 0.0

    def refresh(self, ic: IngestConnection) -> None:
        self.catalogue = read_catalogue(ic.conn)
        self._read_at = time.monotonic()

    def for_batch(self, ic: IngestConnection, items: Items) -> Catalogue:
        if time.monotonic() - self._read_at >= CATALOGUE_REFRESH_S:
            self.refresh(ic)
        missing = unknown_sensors(items, self.catalogue)
        if missing:
            found = read_sensors(ic.conn, sorted(missing))
            if found:
                old = self.catalogue
                self.catalogue = Catalogue({**old.sensors, **found}, old.type_quantities)
        return self.catalogue


class _StoreRefused(Exception):
    """Even the minimal quarantine record of a message was refused: the fault is the database's
    (permissions, a trigger on the quarantine), not the message's, so retry, acknowledge nothing."""


class BatchWriter:
    """One writer thread's end of the pipeline, on a database connection of its own."""

    def __init__(
        self,
        settings: Settings,
        status: WorkerStatus,
        catalogue: CatalogueCache,
        gaps: PendingGaps,
        acknowledge: Callable[[list[Message]], None],
        abandon: threading.Event,
    ) -> None:
        self.settings = settings
        self.status = status
        self.metrics = status.metrics
        self.catalogue = catalogue
        self.gaps = gaps
        self.acknowledge = acknowledge
        self.abandon = abandon  # set at shutdown: stop retrying a stalled batch
        self.ic: IngestConnection | None = None
        self.followups: list[WriteResult] = []  # committed batches whose follow-up is due
        # called after each commit with the batch and the commit's wall time [ns]
        # (benchmarks measure publish-to-commit latency with it); must be quick
        self.on_commit: Callable[[Items, int], None] | None = None

    def store(self, items: Items) -> bool:
        """The pipeline for one batch: validate and write (``_write``), acknowledge, follow up.
        False only when abandoned at shutdown while stalled (the broker keeps the messages)."""
        committed_ns = self._write_until_committed(items)
        if committed_ns is None:
            return False
        if self.on_commit is not None:
            try:
                self.on_commit(items, committed_ns)
            except Exception:
                log.exception("on_commit callback failed")
        self._follow_up()
        return True

    def close(self) -> None:
        if self.ic is not None:
            self.ic.close()
            self.ic = None

    # -- commit, with the retries an outage or a refusal calls for ---------------------------
    def _write_until_committed(self, items: Items) -> int | None:
        """Commit ``items`` and acknowledge each; the wall time [ns] of the commit, or None when
        abandoned. A batch split to find a refused message is acknowledged part by part."""
        backoff = 0.1
        remaining = items  # not yet committed
        while True:
            ic = self._connection()
            if ic is None:
                if self.abandon.wait(backoff):
                    return None
                backoff = min(RETRY_MAX_S, backoff * 2)
                continue
            try:
                self._write(ic, remaining)
                self.acknowledge([it.message for it in remaining])
                return time.time_ns()
            except RETRY_NOW as exc:
                # deadlock with the other writer or worker on a shared row: run it again
                log_event(log, "batch_retried", logging.WARNING, error=str(exc)[:200])
                self._rollback_or_drop(ic)
            except RECONNECT as exc:
                self._drop(exc)
                if self.abandon.wait(backoff):
                    return None
                backoff = min(RETRY_MAX_S, backoff * 2)
            except psycopg.Error as exc:
                if ic.broken:
                    self._drop(exc)
                    continue
                log_event(log, "batch_refused", logging.WARNING, error=str(exc)[:300])
                done, remaining = self._split_refused(ic, remaining)
                if done:
                    return time.time_ns()
                if remaining and self.abandon.wait(backoff):
                    return None
                backoff = min(RETRY_MAX_S, backoff * 2)
            except Exception as exc:
                # a defect, not an outage: stay visible (stalled, logged) and keep the messages
                log.exception("batch write failed")
                self._drop(exc)
                if self.abandon.wait(RETRY_MAX_S):
                    return None

    def _split_refused(self, ic: IngestConnection, items: Items) -> tuple[bool, Items]:
        """After a refusal: write the batch in halves down to the refused message(s), each part
        acknowledged on its commit. (True, []) when every message is committed; else (False,
        what is left to retry)."""
        written: set[int] = set()  # id() of the items committed (and acknowledged)
        try:
            ic.rollback()
            refused = self._split(ic, items, written)
            if refused is None:
                return True, []
            self.metrics.db_errors.inc()
            self.status.set_stalled(refused)
        except RETRY_NOW:
            self._rollback_or_drop(ic)
        except RECONNECT as exc:
            self._drop(exc)  # the database went away meanwhile: start over
        return False, [it for it in items if id(it) not in written]

    def _split(self, ic: IngestConnection, items: Items, written: set[int]) -> _StoreRefused | None:
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
            except (*RETRY_NOW, *RECONNECT):
                raise
            except psycopg.Error:
                ic.rollback()
                refused = self._split(ic, half, written) or refused
                continue
            self._acknowledged(half, written)
        return refused

    def _acknowledged(self, items: Items, written: set[int]) -> None:
        self.acknowledge([it.message for it in items])
        written.update(id(it) for it in items)

    def _write_refused(self, ic: IngestConnection, item: Item[Message]) -> None:
        """Quarantine one message the database refused; if it refuses that as well, keep a
        minimal record. When even that is refused the fault is not the message's:
        ``_StoreRefused``."""
        item.outcome = Rejection(
            "store_refused", "database refused the message", item.outcome.sensor_id
        )
        try:
            self._write(ic, [item])
            return
        except (*RETRY_NOW, *RECONNECT):
            raise
        except psycopg.Error as exc:
            ic.rollback()
            log_event(log, "quarantine_refused", logging.ERROR, error=str(exc)[:300])
        row = minimal_quarantine_row(item)
        try:
            result = write_batch(ic, [], [], [row])
        except (*RETRY_NOW, *RECONNECT):
            raise
        except psycopg.Error as exc:
            ic.rollback()
            log_event(log, "quarantine_minimal_refused", logging.ERROR, error=str(exc)[:300])
            raise _StoreRefused(str(exc)[:300]) from exc
        self.followups.append(result)
        log_event(log, "quarantined_minimal", logging.WARNING, topic=row.topic)
        self.metrics.received.inc()
        self.metrics.quarantined.labels("store_refused").inc()
        self.status.committed(0, result.quarantined)

    # -- one transaction -----------------------------------------------------------------------
    def _write(self, ic: IngestConnection, items: Items) -> None:
        """Validate and write ``items`` in one transaction, with the possible gaps pending."""
        t0 = time.monotonic()
        checked = validate(items, self.catalogue.for_batch(ic, items))
        conflicts = read_seq_conflicts(ic, checked.rows)
        if conflicts:
            checked = quarantine_reused(items, checked, conflicts)
        for defect in checked.defects:
            log_event(log, "catalogue_check_failed", logging.ERROR, error=defect[:300])
        gaps = self.gaps.take()
        try:
            result = write_batch(ic, checked.rows, checked.received_us, checked.rejects, gaps)
        except BaseException:
            self.gaps.put_back(gaps)
            raise
        self.followups.append(result)
        self._record(items, checked, result, time.monotonic() - t0)
        if gaps:
            log_event(log, "gaps_recorded", logging.WARNING, gaps=[g[0] for g in gaps])

    def _record(self, items: Items, checked: Validated, result: WriteResult, took_s: float) -> None:
        """The batch in the metrics, the status and the log."""
        m = self.metrics
        m.received.inc(len(items))
        m.stored.inc(result.inserted)
        m.duplicates.inc(result.staged - result.inserted)
        for reason, n in checked.by_reason.items():
            m.quarantined.labels(reason).inc(n)
            if reason == "id_mismatch":
                log_event(log, "security_id_mismatch", logging.WARNING, messages=n)
            elif reason == "seq_reused":
                log_event(log, "security_seq_reused", logging.WARNING, messages=n)
        m.batch_readings.observe(result.staged)
        m.batch_seconds.observe(took_s)
        wall_us = time.time_ns() // 1000
        if checked.oldest_received_us is not None:
            m.lag.set(max(0.0, (wall_us - checked.oldest_received_us) / 1e6))
        if checked.newest_ts_us:
            m.reading_age.set((wall_us - checked.newest_ts_us) / 1e6)
        self.status.committed(result.inserted, result.quarantined)
        if checked.rejects:
            log_event(log, "quarantined", logging.INFO, reasons=checked.by_reason)

    def _follow_up(self) -> None:
        """The latest values and heartbeat of the batches just committed and acknowledged.
        A failure loses no reading: it is logged and the next batch brings them forward."""
        while self.followups and self.ic is not None:
            try:
                write_followup(self.ic, self.followups[0])
            except psycopg.Error as exc:
                log_event(log, "followup_failed", logging.WARNING, error=str(exc)[:300])
                if self.ic.broken:
                    self._drop(exc)
                    return
                self._rollback_or_drop(self.ic)
            self.followups.pop(0)

    # -- the connection --------------------------------------------------------------------------
    def connection(self) -> IngestConnection | None:
        """This writer's connection for other work (heartbeat, maintenance), or None while the
        database is unreachable."""
        return self._connection()

    def _connection(self) -> IngestConnection | None:
        if self.ic is not None and not self.ic.broken:
            return self.ic
        self.close()
        try:
            self.ic = IngestConnection(self.settings.database_url, self.status.client_id)
        except psycopg.OperationalError as exc:
            self.status.set_stalled(exc)
            return None
        return self.ic

    def _drop(self, exc: BaseException) -> None:
        self.metrics.db_errors.inc()
        self.status.set_stalled(exc)
        self.close()

    def drop(self, exc: BaseException) -> None:
        """Give up the connection after ``exc`` (it is reopened for the next batch)."""
        self._drop(exc)

    def _rollback_or_drop(self, ic: IngestConnection) -> None:
        try:
            ic.conn.rollback()
        except psycopg.Error as exc:
            self._drop(exc)
