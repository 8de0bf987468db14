"""Fixtures of the ingestion tests: sensors in the test's database, an in-process ingestor on the
real broker and database, a QoS 1 publisher, and polling helpers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import psycopg
import pytest

from cityops.kernel.mqtt import NO_MATCHING_SUBSCRIBERS, UNROUTED_RETRY_S, Publisher
from cityops.kernel.settings import Settings
from ingestion.service import Ingestor
from sensors.quantities import Utility
from sensors.topics import telemetry_topic
from tests.waiting import wait_for

__all__ = ["wait_for"]  # the suite's one waiting helper, re-exported for the ingestion tests

T = TypeVar("T")


# the database refuses readings of value 666.25 (a trigger stands in for any refusal, e.g. a
# constraint an operator added)
REFUSE_POISON_READING = """
CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.value = 666.25 THEN RAISE EXCEPTION 'poison reading'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER refuse_poison BEFORE INSERT ON readings
    FOR EACH ROW EXECUTE FUNCTION refuse_poison();
"""


def query(db_url: str, sql: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def add_sensors(db_url: str, sensors: list[tuple[str, str, str]], status: str = "active") -> None:
    """``(sensor_id, utility, sensor_type)`` into the catalogue, somewhere in Chengdu."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for sid, utility, stype in sensors:
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, status, geom)"
                " VALUES (%s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
                (sid, utility, stype, sid, status),
            )


def new_id(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def water_sensors(db_url: str) -> list[str]:
    """Three active water-pressure sensors unique to this test."""
    ids = [new_id("wp") for _ in range(3)]
    add_sensors(db_url, [(i, "water", "water_pressure") for i in ids])
    return ids


@pytest.fixture
def ingestor(settings: Settings) -> Iterator[Ingestor]:
    ing = Ingestor(settings)
    ing.start()
    yield ing
    ing.stop(end_session=True)


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Publisher]:
    with Publisher(settings.mqtt_url, f"pub-{uuid.uuid4().hex[:8]}") as pub:
        yield pub


def water_topic(sensor_id: str) -> str:
    return telemetry_topic(Utility.WATER, sensor_id)


class Load:
    """A bounded load of single-reading messages with per-sensor sequence numbers, published at
    QoS 1 from a thread. It survives broker restarts: a message counts as sent only once the
    broker acknowledged it, and anything unacknowledged is published again (the ingestor stores
    a repeat once). A message the broker acknowledged with "no matching subscribers" (after a
    broker restart, before the ingestor subscribed again) is published again, as the contract
    asks of MQTT 5 publishers (decision 0081). ``expected`` holds every (sensor_id, seq)
    sent."""

    def __init__(self, url: str, sensors: list[str], per_sensor: int, rate_per_s: float) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

        from cityops.kernel.settings import parse_mqtt_url

        self.sensors = sensors
        self.per_sensor = per_sensor
        self.rate = rate_per_s
        self.t0 = now_ms() - 60_000
        self.expected = {(s, k) for s in sensors for k in range(per_sensor)}
        ep = parse_mqtt_url(url)
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"load-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.username_pw_set(ep.username, ep.password)
        self._client.max_inflight_messages_set(100)
        self._client.reconnect_delay_set(0.2, 1)
        self._unrouted_mids: set[int] = set()
        self.unrouted = 0  # acknowledgements that said no subscriber took the message
        self._client.on_publish = self._on_publish
        self._client.connect(ep.host, ep.port, keepalive=10)
        self._client.loop_start()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.done = threading.Event()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code == NO_MATCHING_SUBSCRIBERS:
            self._unrouted_mids.add(mid)
        else:
            self._unrouted_mids.discard(mid)

    def _message(self, sid: str, k: int) -> tuple[str, bytes]:
        from sensors.payload import encode_reading

        return water_topic(sid), encode_reading(self.t0 + k * 10, k, {"pressure": 300.0 + k % 100})

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            pending: dict[tuple[str, int], tuple[Any, float]] = {}
            interval = 1.0 / self.rate
            next_t = time.monotonic()
            for k in range(self.per_sensor):
                for sid in self.sensors:
                    topic, body = self._message(sid, k)
                    pending[(sid, k)] = (self._client.publish(topic, body, qos=1), time.monotonic())
                    next_t += interval
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    while len(pending) > 500:
                        self._settle(pending)
            while pending:
                self._settle(pending)
        except BaseException as exc:  # reported by wait()
            self.error = exc
        finally:
            self.done.set()

    def _settle(self, pending: dict) -> None:
        now = time.monotonic()
        for key, (info, sent_at) in list(pending.items()):
            try:
                published = info is not None and info.is_published()
                failed = False
            except (RuntimeError, ValueError):  # not connected when published
                published, failed = False, True
            if published and info.mid in self._unrouted_mids:  # kept by nobody: again soon
                self._unrouted_mids.discard(info.mid)
                self.unrouted += 1
                pending[key] = (None, now)
            elif published:
                del pending[key]
            elif info is None and now - sent_at < UNROUTED_RETRY_S:
                continue
            elif (info is None or failed or now - sent_at > 3.0) and self._client.is_connected():
                topic, body = self._message(*key)
                pending[key] = (self._client.publish(topic, body, qos=1), now)
        time.sleep(0.02)

    def wait(self, timeout_s: float = 60) -> None:
        assert self.done.wait(timeout_s), "load did not finish"
        self._client.disconnect()
        self._client.loop_stop()
        if self.error:
            raise self.error


def stored_pairs(db_url: str) -> list[tuple[str, int]]:
    return [(s, k) for s, k in query(db_url, "SELECT sensor_id, seq FROM readings")]


def wait_stored(db_url: str, load: Load, timeout_s: float) -> None:
    """Wait until every reading of ``load`` is stored; a timeout says how many are, which are
    missing and how many the broker acknowledged with "no matching subscribers"."""
    try:
        wait_for(lambda: len(stored_pairs(db_url)) >= len(load.expected), timeout_s=timeout_s)
    except AssertionError:
        missing = sorted(load.expected - set(stored_pairs(db_url)))
        raise AssertionError(
            f"{len(load.expected) - len(missing)} of {len(load.expected)} readings stored after "
            f"{timeout_s} s; missing {len(missing)}, first {missing[:5]}; "
            f"{load.unrouted} acknowledgements said no subscriber took the message"
        ) from None
