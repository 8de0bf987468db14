"""`cityops alerts`: consume telemetry, evaluate, commit, publish, then acknowledge.

Wiring only; the maths is in alerts/detectors/ and alerts/engine.py, the SQL in alerts/stores/.

Order per batch (docs/alerts.md): decode -> evaluate (pure) -> one transaction storing alert
changes, their outbox events and the detector state -> publish the events at QoS 1 and wait for
the broker's PUBACK -> mark them published -> acknowledge the telemetry messages. A crash at any
point leaves either nothing committed (the broker redelivers the telemetry) or a committed batch
whose readings are redelivered and ignored as already evaluated, and whose events are published
from the outbox on the next start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from alerts.balance import AreaState
from alerts.dispatch import Senders, run_enricher, run_grouper, run_notifier
from alerts.engine import (
    AlertChange,
    Engine,
    Evaluation,
    KeyState,
    SensorInfo,
    in_partition,
    restored_states,
    wanted_history,
)
from alerts.security import (
    DEVICE_EVENTS,
    SECURITY_FILTER,
    SecurityEventError,
    device_refusal_change,
    parse_device_event,
)
from alerts.source_loss import describe
from alerts.stores import (
    alert_rows,
    balance_state,
    catalogue,
    detector_state,
    incidents,
    outbox,
    source_loss,
)
from alerts.stores.actions import escalate_due
from alerts.stores.batch import write_evaluation
from alerts.stores.outbox import OutboxEvent
from cityops.kernel.crypto import load_keyring
from cityops.kernel.db import connect
from cityops.kernel.mqtt import AckingConsumer, Inbox, Message, Publisher
from cityops.kernel.settings import Settings
from sensors.payload import PayloadError, Reading, TimeWindow, decode_message
from sensors.topics import TopicError, parse_telemetry_topic, shared, telemetry_filter

log = logging.getLogger("alerts.service")

BATCH_MAX_MESSAGES = 2000
BATCH_AGE_S = 0.005  # collect for at most this long after the first message of a batch
SENSOR_RELOAD_S = 30.0  # pick up new sensors and changed limits this often
UNKNOWN_RELOADS_PER_MIN = 30  # reloads for readings of unknown sensors, at most
UNKNOWN_RETRY_S = 60.0  # and for the same unknown sensor at most this often
RETRY_MAX_S = 10.0
CHORES_EVERY_S = 1.0  # silence and escalation checks, outbox sweep
INCIDENT_CHECK_S = 30.0
SILENCE_GRACE_S = 5.0  # after start, let the broker's backlog arrive before calling anyone silent
SILENCE_EVERY_STREAM_S = 10.0  # while readings stream in, check silence this often (stream time)
# the metered areas' learnt balance is written with every batch that changes an area alert, and
# otherwise this often: a crash loses at most this much learning, never an alert's state
BALANCE_SAVE_S = 30.0
AREA_KINDS = frozenset({"water_burst", "night_flow_rise", "night_flow_step", "inlet_flow_low"})


@dataclass
class Stats:
    messages: int = 0
    readings: int = 0
    rejected: int = 0
    other_partition: int = 0  # messages of sensors another worker owns
    events: int = 0
    batches: int = 0
    latency_ms: list[float] | None = None  # message received -> events published, last batches


def run(
    settings: Settings,
    stop: threading.Event | None = None,
    *,
    partition: tuple[int, int] = (0, 1),
    end_session: bool = False,
) -> Stats:
    """Run until SIGTERM/SIGINT (or ``stop`` is set); returns the counters.

    ``partition = (k, n)``: this worker evaluates only the sensors ``in_partition`` k of n.
    With n > 1 each worker subscribes to all telemetry without a share group (every worker
    receives every message and acknowledges the others' at once), which keeps each sensor's
    readings in order on one worker; Mosquitto's shared subscriptions would spread one sensor
    over all workers. Each worker needs its own client id."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():

        def _on_signal(signum: int, _frame: object) -> None:
            log.info("signal %s: stopping after the current batch", signum)
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    return AlertService(settings, stop, partition=partition, end_session=end_session).run()


class AlertService:
    def __init__(
        self,
        settings: Settings,
        stop: threading.Event,
        *,
        partition: tuple[int, int] = (0, 1),
        end_session: bool = False,
    ) -> None:
        if not 0 <= partition[0] < max(partition[1], 1):
            raise ValueError(f"bad partition {partition}")
        self.settings = settings
        self.stop = stop
        self.partition = partition
        # a replay's or benchmark's engine ends its broker session when it stops: a persistent
        # session nobody resumes would queue the city's telemetry for days
        self.end_session = end_session
        self.window = TimeWindow(settings.accept_past_s, settings.accept_future_s)
        self.stats = Stats(latency_ms=[])
        self.conn: psycopg.Connection | None = None
        self.engine = Engine({})
        self._sensors_loaded = 0.0
        self._catalogue_changed = threading.Event()  # set by NOTIFY cityops_catalogue
        self._ready_at = time.monotonic()
        self._incidents_checked = 0.0
        self._unknown: dict[str, float] = {}  # sensor id -> when it last made us reload
        self._unknown_reloads: list[float] = []  # when unknown sensors made us reload
        # the stream's clock as last seen, and when (monotonic): silence is judged on it
        self._stream_seen: tuple[int, float] | None = None
        self._grouping = threading.Event()  # wakes the grouper thread
        self._silence_checked_us = 0
        self._balance_saved = time.monotonic()
        self._balance_dirty: set[str] = set()  # areas that learnt since the last save

    @property
    def _worker(self) -> str:
        """This worker's partition as the source losses it keeps are marked: ``k/n``."""
        return f"{self.partition[0]}/{self.partition[1]}"

    # -- database ---------------------------------------------------------------------------
    def _db(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed:
            conn = connect(
                self.settings.database_url, autocommit=True, application_name="cityops-alerts"
            )
            # a changed catalogue (limits, sensors, metered areas) is applied at the next chore,
            # not within the periodic reload: its tables NOTIFY (migration 0080), and psycopg
            # hands the notification over during any later query on this connection
            conn.add_notify_handler(lambda _n: self._catalogue_changed.set())
            conn.execute("LISTEN cityops_catalogue")
            self.conn = conn
            # what changed while we were not listening is not known: load it all again
            self._catalogue_changed.set()
        return self.conn

    def _drop_db(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None

    def _retry(self, what: str, fn: Callable[[], object]) -> object:
        """Call ``fn`` until it succeeds or we are asked to stop (then raise ``_Stopped``)."""
        delay = 0.2
        while True:
            try:
                return fn()
            except (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError) as exc:
                if rolled_back(exc):  # the connection is still good
                    log.warning("%s rolled back (%s); retrying in %.1f s", what, exc, delay)
                else:
                    log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
                    self._drop_db()
            if self.stop.wait(delay):
                raise _Stopped
            delay = min(delay * 2, RETRY_MAX_S)

    def _reload(self) -> None:
        def load() -> None:
            conn = self._db()
            self._catalogue_changed.clear()  # a change from now on loads again
            sensors = catalogue.read_sensors(conn)
            areas = catalogue.read_metered_areas(conn)
            if not self._sensors_loaded:
                learnt = balance_state.read_balance_states(conn)
                self.engine = Engine(sensors, self._restore(conn, sensors), areas, learnt)
                self.engine.losses = source_loss.read_open_losses(conn, self._worker)
                self._note_stream_clock()
            else:
                self.engine.sensors = dict(sensors)
                self.engine.set_areas(areas)
            self.engine.loss_rule = source_loss.read_rule(conn)
            self.engine.districts = source_loss.read_sensor_districts(conn)
            self.engine.catalogue_changed()
            self._sensors_loaded = time.monotonic()

        self._retry("loading sensors", load)

    def _restore(
        self, conn: psycopg.Connection, sensors: dict[str, SensorInfo]
    ) -> dict[tuple[str, str], KeyState]:
        """This worker's keys as the database kept them (retired sensors' state is history: it
        must not move the stream's clock)."""
        mine = {sid: info for sid, info in sensors.items() if in_partition(sid, self.partition)}
        last = detector_state.read_last_evaluated(conn)
        active = alert_rows.read_active_kinds(conn)
        history = detector_state.read_recent_readings(conn, wanted_history(mine))
        intervals = detector_state.read_intervals(conn)
        return restored_states(mine, last, active, history, intervals)

    # -- main loop --------------------------------------------------------------------------
    def run(self) -> Stats:
        s = self.settings
        consumer = AckingConsumer(
            s.mqtt_url_for("alerts"),
            s.alerts_client_id,
            [
                shared(s.alerts_share_group, f) if self.partition[1] <= 1 else f
                for f in (telemetry_filter(), SECURITY_FILTER)
            ],
        )
        threads = [
            self._side_thread(
                "notifier",
                run_notifier,
                worker=s.alerts_client_id,
                senders=Senders(keyring=load_keyring(Path(s.keys_dir) if s.keys_dir else None)),
            ),
            self._side_thread("enricher", run_enricher),
            self._side_thread("grouper", run_grouper, self._grouping),
        ]
        # subscribe first: telemetry published while we load state waits in our queue (and, on
        # the very first start, is not lost for want of a session)
        if not self._subscribe(consumer):
            return self.stats
        try:
            self._reload()
            with Publisher(s.mqtt_url_for("alerts"), f"{s.alerts_client_id}-pub") as pub:
                self.publisher = pub
                self._publish_outbox()
                for thread in threads:
                    thread.start()
                self._serve(consumer)
        except _Stopped:
            pass
        finally:
            self.stop.set()
            # keep the persistent session: telemetry published while we are down waits for us
            consumer.stop(end_session=self.end_session)
            self._save_balance()
            self._drop_db()
            self._grouping.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(15)
        log.info(
            "alerts engine stopped: %d messages, %d readings, %d events",
            self.stats.messages,
            self.stats.readings,
            self.stats.events,
        )
        return self.stats

    def _side_thread(
        self, name: str, target: Callable[..., None], *args: object, **kw: object
    ) -> threading.Thread:
        """A loop of its own with its own connections (``cityops-<name>``), so that its
        database work never holds up the next batch of readings."""
        url = self.settings.database_url

        def connect_own() -> psycopg.Connection:
            return connect(url, autocommit=True, application_name=f"cityops-{name}")

        return threading.Thread(
            target=target, args=(connect_own, self.stop, *args), kwargs=kw, name=name, daemon=True
        )

    def _subscribe(self, consumer: AckingConsumer) -> bool:
        """Connect and subscribe; False when asked to stop before the broker was reachable."""
        try:
            consumer.start(timeout_s=3.0)
        except TimeoutError:
            # paho keeps trying in the background; wait for it, or for SIGTERM
            log.warning("broker not reachable yet; waiting for it")
            while consumer.status.connects == 0:
                if self.stop.wait(0.5):
                    consumer.stop()
                    log.info("alerts engine stopped before the broker was reachable")
                    return False
        return True

    def _serve(self, consumer: AckingConsumer) -> None:
        """Batches of telemetry until asked to stop, with the chores every second."""
        self._ready_at = time.monotonic()
        log.info(
            "alerts engine ready: %d sensors, %d detector states, group %s",
            len(self.engine.sensors),
            len(self.engine.states),
            self.settings.alerts_share_group,
        )
        last_chores = 0.0
        while not self.stop.is_set():
            batch = self._collect(consumer.queue)
            if batch:
                self._process(batch, consumer)
            if time.monotonic() - last_chores > CHORES_EVERY_S:
                self._chores(consumer)
                last_chores = time.monotonic()

    def _collect(self, inbox: Inbox) -> list[Message]:
        """Messages for one step: what waits (up to ``BATCH_MAX_MESSAGES``), and what comes
        within ``BATCH_AGE_S`` of the first."""
        batch = inbox.take(BATCH_MAX_MESSAGES, 0.2)
        deadline = time.monotonic() + BATCH_AGE_S
        while batch and len(batch) < BATCH_MAX_MESSAGES:
            left = deadline - time.monotonic()
            more = inbox.take(BATCH_MAX_MESSAGES - len(batch), left) if left > 0 else []
            if not more:
                break
            batch.extend(more)
        return batch

    def _decode(self, batch: list[Message]) -> list[Reading]:
        now_us = time.time_ns() // 1000
        readings: list[Reading] = []
        for msg in batch:
            if msg.topic.startswith(DEVICE_EVENTS):
                self._security_event(msg)
                continue
            try:
                topic = parse_telemetry_topic(msg.topic)
                if not in_partition(topic.sensor_id, self.partition):
                    self.stats.other_partition += 1
                    continue
                decoded = decode_message(msg.payload, topic.sensor_id, now_us, self.window)
            except (TopicError, PayloadError):
                # ingestion quarantines bad input; the engine only skips it
                self.stats.rejected += 1
                continue
            info = self.engine.sensors.get(topic.sensor_id)
            if info is not None and info.utility != topic.utility.value:
                self.stats.rejected += 1
                continue
            readings.extend(decoded)
        return readings

    def _security_event(self, msg: Message) -> None:
        """A device guard's refusal: an alert on the device's sensor (raised with this batch)."""
        try:
            event = parse_device_event(msg.topic, msg.payload)
        except SecurityEventError as exc:
            log.warning("ignored a message on %s: %s", msg.topic, exc)
            return
        sid = event["username"]
        if not in_partition(sid, self.partition):
            return
        info = self.engine.sensors.get(sid)
        if info is None:
            log.warning("bus refusal for %s, which is no registered sensor: %s", sid, event)
            return
        self._security_changes.append(device_refusal_change(event, info))

    def _process(self, batch: list[Message], consumer: AckingConsumer) -> None:
        self._security_changes: list[AlertChange] = []
        readings = self._decode(batch)
        evaluation = self.engine.evaluate(readings)
        if evaluation.unknown_sensors and self._worth_reloading(evaluation.unknown_sensors):
            self._reload()  # a sensor registered after we started
            evaluation = self.engine.evaluate(readings)
        if self._security_changes:
            changes = evaluation.changes + tuple(self._security_changes)
            evaluation = dataclasses.replace(evaluation, changes=changes)
        areas = self._balance_to_save(evaluation)
        try:
            events = self._retry(
                "storing alerts",
                lambda: write_evaluation(self._db(), evaluation, group=False, areas=areas),
            )
        except psycopg.Error:
            # not a lost connection: the database refuses something in this batch. Find the
            # message one by one rather than crash and be handed the same batch for ever.
            log.exception("the database refused a batch of %d messages; isolating", len(batch))
            self._process_one_by_one(batch, consumer)
            return
        self.engine.commit(evaluation)
        if areas:
            self._balance_saved = time.monotonic()
            self._balance_dirty = set()
        if events:
            self._publish(events)  # type: ignore[arg-type]
            self._group()
        for msg in batch:
            consumer.ack(msg)
        self._note_stream_clock()
        if (
            self.engine.stream_us is not None
            and self.engine.stream_us - self._silence_checked_us >= SILENCE_EVERY_STREAM_S * 1e6
        ):
            self._check_silence()
        done_ns = time.time_ns()
        self.stats.messages += len(batch)
        self.stats.readings += len(readings)
        self.stats.batches += 1
        if events:
            assert self.stats.latency_ms is not None
            self.stats.latency_ms.append((done_ns - batch[0].received_ns) / 1e6)
            del self.stats.latency_ms[:-1000]

    def _balance_to_save(self, evaluation: Evaluation) -> dict[str, AreaState] | None:
        """Every area's learnt balance when this batch changes an area alert (the flags must
        match the alerts after a restart) or when the last save is ``BALANCE_SAVE_S`` old."""
        dirty = self._balance_dirty | evaluation.areas.keys()
        if not dirty:
            return None
        changed = any(c.kind in AREA_KINDS for c in evaluation.changes)
        if not changed and time.monotonic() - self._balance_saved < BALANCE_SAVE_S:
            self._balance_dirty = dirty
            return None
        # only the areas that learnt something since the last save (a few hundred kB each)
        states = {**self.engine.area_states, **evaluation.areas}
        return {a: states[a] for a in dirty if a in states}

    def _save_balance(self) -> None:
        """At stop: what the areas learnt since the last save (best effort: the engine is
        stopping, and a lost save costs at most ``BALANCE_SAVE_S`` of learning)."""
        dirty = {a: st for a, st in self.engine.area_states.items() if a in self._balance_dirty}
        if not dirty or self.conn is None or self.conn.closed:
            return
        try:
            with self.conn.transaction():
                balance_state.write_balance_states(self.conn, dirty)
        except psycopg.Error as exc:
            log.warning("balance state not saved at stop: %s", exc)

    def _worth_reloading(self, unknown: frozenset[str]) -> bool:
        """Reload the catalogue for a sensor we have not heard of at once (a sensor registered
        a moment ago must not lose its first readings), but not again and again for one that
        stays unknown (a retired or rogue device would make us reload all the time): each id
        makes us reload at most once a minute, and all of them together at most
        ``UNKNOWN_RELOADS_PER_MIN`` times a minute."""
        now = time.monotonic()
        fresh = [sid for sid in unknown if now - self._unknown.get(sid, -1e9) > UNKNOWN_RETRY_S]
        if not fresh:
            return False
        self._unknown_reloads = [t for t in self._unknown_reloads if now - t < 60.0]
        if len(self._unknown_reloads) >= UNKNOWN_RELOADS_PER_MIN:
            return False  # tried again at the next batch that names them, once under the cap
        self._unknown_reloads.append(now)
        for sid in fresh:
            self._unknown[sid] = now
        if len(self._unknown) > 100_000:  # bounded memory
            self._unknown.clear()
        return True

    def _process_one_by_one(self, batch: list[Message], consumer: AckingConsumer) -> None:
        for msg in batch:
            evaluation = self.engine.evaluate(self._decode([msg]))

            def write(ev: Evaluation = evaluation) -> list[OutboxEvent]:
                return write_evaluation(self._db(), ev, group=False)

            try:
                events = self._retry("storing alerts", write)
            except psycopg.Error as exc:
                # refused for good: kept in alert_dead_letters (visible), then acknowledged
                self._dead_letter(msg, exc)
            else:
                self.engine.commit(evaluation)
                if events:
                    self._publish(events)  # type: ignore[arg-type]
                    self._group()
            consumer.ack(msg)
            self.stats.messages += 1

    def _dead_letter(self, msg: Message, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {str(exc).strip()}"
        # logged with its topic and size (its bytes are in the dead-letter table)
        log.error(
            "skipped a message the database refuses: topic %s, %d bytes: %s",
            msg.topic,
            len(msg.payload),
            error.splitlines()[0][:200],
        )
        self.stats.rejected += 1
        received_at = datetime.fromtimestamp(msg.received_ns / 1e9, UTC)

        def write() -> int:
            return outbox.write_dead_letter(
                self._db(), msg.topic, msg.payload, error, received_at=received_at
            )

        try:
            self._retry("storing a dead letter", write)
        except psycopg.Error:
            log.exception("could not keep the refused message from %s as a dead letter", msg.topic)

    def _publish(self, events: list[OutboxEvent]) -> None:
        def publish() -> None:
            for ev in events:
                self.publisher.publish(ev.topic, ev.payload, qos=1)
            self.publisher.flush(timeout_s=10.0)
            outbox.mark_published(self._db(), [ev.event_id for ev in events])

        self._retry("publishing alert events", publish)
        self.stats.events += len(events)
        for ev in events:
            log.info("published alert event %s on %s", ev.event_id, ev.topic)

    def _chores(self, consumer: AckingConsumer) -> None:
        if (
            self._catalogue_changed.is_set()
            or time.monotonic() - self._sensors_loaded > SENSOR_RELOAD_S
        ):
            self._reload()
        if consumer.queue.empty():
            self._check_silence()
        escalated = self._retry("escalating", lambda: escalate_due(self._db()))
        if escalated:
            log.info("escalated %d alerts nobody acknowledged", len(escalated))  # type: ignore[arg-type]
            self._publish(escalated)  # type: ignore[arg-type]
        self._publish_outbox()
        if time.monotonic() - self._incidents_checked > INCIDENT_CHECK_S:
            # quiet is judged on the stream's clock (the newest reading evaluated), not the wall
            # clock: a replayed or delayed stream must group its alerts as it would live
            stream_us = max(
                (st.last_ts_us for st in self.engine.states.values() if st.last_ts_us is not None),
                default=None,
            )
            if stream_us is not None:
                stream_now = min(datetime.now(UTC), datetime.fromtimestamp(stream_us / 1e6, UTC))
                self._retry(
                    "resolving incidents",
                    lambda: incidents.resolve_quiet_incidents(self._db(), now=stream_now),
                )
            self._incidents_checked = time.monotonic()

    def _group(self) -> None:
        """Alerts into incidents, after their events are out: wake the grouper thread (it also
        groups what an engine that stopped in between left ungrouped)."""
        self._grouping.set()

    def _note_stream_clock(self) -> None:
        stream = self.engine.stream_us
        if stream is not None and (self._stream_seen is None or stream > self._stream_seen[0]):
            self._stream_seen = (stream, time.monotonic())

    def silence_now_us(self) -> int | None:
        """ "Now" for the silence check: the stream's clock, run on in real time since it last
        moved, never ahead of the wall clock. Live, that is the wall clock; in a replay or a
        backlog it is the time of the readings, so a sensor is silent when the *others* have
        moved on without it, not because the replay is hours old. After a restart the clock
        starts from the newest reading evaluated before, so nobody is called silent for the
        time the engine itself was down."""
        if self._stream_seen is None:
            return None
        stream_us, seen = self._stream_seen
        run_on_us = stream_us + int((time.monotonic() - seen) * 1e6)
        return min(time.time_ns() // 1000, run_on_us)

    def _check_silence(self) -> None:
        if time.monotonic() - self._ready_at <= SILENCE_GRACE_S:
            return
        now_us = self.silence_now_us()
        if now_us is None:
            return
        self._silence_checked_us = now_us
        silence = self.engine.check_clock(now_us)
        changed = silence.losses.changed if silence.losses is not None else ()
        if changed:
            # the losses first: a crash before the alerts are stored finds them at the restart
            told = self._retry(
                "storing source losses",
                lambda: source_loss.write_losses(
                    self._db(), changed, self._worker, self.settings.timezone
                ),
            )
            for loss in changed:
                log.warning("%s", describe(loss)[1] + (" (closed)" if not loss.is_open else ""))
            if told:
                self._publish(told)  # type: ignore[arg-type]
        if silence.changes:
            events = self._retry(
                "storing silent alerts",
                lambda: write_evaluation(self._db(), silence, group=False),
            )
            self.engine.commit(silence)
            self._publish(events)  # type: ignore[arg-type]
            self._group()
        else:
            self.engine.commit(silence)

    def _publish_outbox(self) -> None:
        """Events committed by an engine that stopped before publishing them."""
        while True:
            events = self._retry(
                "reading the outbox", lambda: outbox.read_unpublished_events(self._db())
            )
            if not events:
                return
            log.info("publishing %d events left in the outbox", len(events))  # type: ignore[arg-type]
            self._publish(events)  # type: ignore[arg-type]


def rolled_back(exc: BaseException) -> bool:
    """A deadlock or serialization failure (SQLSTATE class 40): transient, try again. psycopg
    raises them as OperationalError subclasses (SerializationFailure, DeadlockDetected), not
    all under TransactionRollback, hence the SQLSTATE."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, psycopg.errors.TransactionRollback) or sqlstate.startswith("40")


class _Stopped(Exception):
    pass
