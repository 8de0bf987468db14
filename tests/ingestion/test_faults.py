"""Faults under a bounded load with sequence numbers: kill -9 of the ingestor, PostgreSQL and
the broker restarted, two workers on one shared subscription. Afterwards every sequence number is
stored exactly once. The tests that restart the session's servers restore them in ``finally``."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import urllib.request
from collections import Counter

import pytest

import cityops.shell.stack
from cityops.kernel.mqtt import RECEIVE_MAXIMUM, Publisher, end_session
from cityops.kernel.settings import Settings
from cityops.shell.stack import LocalStack, free_port
from ingestion.service import Ingestor
from sensors.payload import encode_reading
from tests.conftest import start_cityops
from tests.ingestion.conftest import (
    Load,
    add_sensors,
    new_id,
    now_ms,
    query,
    stored_pairs,
    wait_for,
    wait_stored,
    water_topic,
)

# the faults must be survived on both storage paths (decision 0005)
pytestmark = pytest.mark.both_storage_paths


def _sensors(db_url: str, n: int) -> list[str]:
    ids = [new_id("ft") for _ in range(n)]
    add_sensors(db_url, [(i, "water", "water_pressure") for i in ids])
    return ids


def _assert_exactly_once(db_url: str, load: Load) -> None:
    got = stored_pairs(db_url)
    counts = Counter(got)
    assert [p for p, c in counts.items() if c > 1] == []
    assert set(got) == load.expected


def test_kill_9_of_the_ingestor_under_load_loses_and_doubles_nothing(
    settings: Settings, db_url: str
) -> None:
    sensors = _sensors(db_url, 4)
    rng = random.Random(3)
    proc = start_cityops(settings, "ingest")
    load = None
    try:
        wait_for(
            lambda: query(db_url, "SELECT 1 FROM ingest_workers WHERE state = 'running'"),
            timeout_s=30,
        )
        load = Load(settings.mqtt_url, sensors, per_sensor=1000, rate_per_s=1500).start()
        kills = 0
        while kills < 3:
            time.sleep(rng.uniform(0.4, 1.0))
            proc.kill()  # SIGKILL: no chance to commit or acknowledge anything in hand
            proc.wait(10)
            kills += 1
            proc = start_cityops(settings, "ingest")
        load.wait(60)
        wait_stored(db_url, load, timeout_s=60)
        _assert_exactly_once(db_url, load)
        assert 0 < query(db_url, "SELECT count(*) FROM readings")[0][0] == 4000
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        end_session(settings.mqtt_url_for("ingest"), settings.ingest_client_id)
    assert proc.returncode == 0, err[-2000:]


@pytest.fixture
def reuse_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restart servers on the ports the clients know: a port left in TIME_WAIT by the stopped
    server would otherwise make cityops.shell.stack choose a new one."""
    monkeypatch.setattr(cityops.shell.stack, "port_is_free", lambda port: True)


def _metrics(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def test_postgres_stopped_and_restarted_under_load(
    stack: LocalStack, settings: Settings, db_url: str, reuse_ports: None
) -> None:
    sensors = _sensors(db_url, 3)
    settings.metrics_port = free_port()
    ing = Ingestor(settings)
    ing.healthy_within_s = 1.5  # unhealthy soon after the last commit
    ing.start()
    try:
        load = Load(settings.mqtt_url, sensors, per_sensor=800, rate_per_s=1200).start()
        time.sleep(0.5)
        assert "cityops_ingest_healthy 1.0" in _metrics(settings.metrics_port)
        try:
            stack.stop_postgres()
            wait_for(lambda: ing.health().state == "stalled", timeout_s=10)
            assert "cityops_ingest_stalled 1.0" in _metrics(settings.metrics_port)
            stored_while_down = ing.health().stored
            time.sleep(1.0)
            depth = ing.health().queue_depth
            time.sleep(1.0)
            h = ing.health()
            assert h.stored == stored_while_down and h.state == "stalled"
            # bounded memory: with nothing acknowledged the broker stops sending (its in-flight
            # window, which Mosquitto overshoots a little), the rest of the load waits there
            assert h.queue_depth <= depth <= 2 * RECEIVE_MAXIMUM
            assert "cityops_ingest_healthy 0.0" in _metrics(settings.metrics_port)
        finally:
            stack.start_postgres()
        load.wait(60)
        wait_stored(db_url, load, timeout_s=60)
        _assert_exactly_once(db_url, load)
        wait_for(lambda: ing.health().state == "running")
        assert "cityops_ingest_stalled 0.0" in _metrics(settings.metrics_port)
        ing.healthy_within_s = 30.0
        assert "cityops_ingest_healthy 1.0" in _metrics(settings.metrics_port)
    finally:
        ing.stop(end_session=True)


def test_broker_restarted_cleanly_under_load(
    stack: LocalStack, settings: Settings, db_url: str, reuse_ports: None
) -> None:
    sensors = _sensors(db_url, 3)
    ing = Ingestor(settings)
    ing.start()
    try:
        load = Load(settings.mqtt_url, sensors, per_sensor=800, rate_per_s=1200).start()
        time.sleep(0.6)
        try:
            stack.stop_mosquitto()
            time.sleep(0.5)
        finally:
            stack.start_mosquitto()
        load.wait(60)
        # under a full suite on 2 cores the reconnect back-off and the redelivered backlog can
        # take over a minute; a lost reading still fails here, with the counts
        wait_stored(db_url, load, timeout_s=120)
        _assert_exactly_once(db_url, load)
        assert ing.consumer.status.connects >= 2 and ing.consumer.status.sessions_lost == 0
        assert query(db_url, "SELECT count(*) FROM ingest_gaps") == [(0,)]
    finally:
        ing.stop(end_session=True)


def test_broker_restarted_before_the_ingestor_returns_loses_nothing(
    stack: LocalStack, settings: Settings, db_url: str, reuse_ports: None
) -> None:
    """Mosquitto 2.0.11 does not keep shared subscriptions over a restart (decision 0081): until
    the ingestor subscribes again, telemetry is acknowledged with "no matching subscribers" and
    kept by nobody. A publisher that honours the contract sends it again and every reading is
    stored once; one that does not loses what it sent in that window."""
    keen_sensor, careless_sensor = _sensors(db_url, 2)
    away = Ingestor(settings)
    away.start()
    away.stop()  # its session (and, until the restart, its subscription) stays with the broker
    try:
        stack.stop_mosquitto()
    finally:
        stack.start_mosquitto()
    t0 = now_ms() - 60_000
    with Publisher(settings.mqtt_url, f"careless-{new_id('p')}") as careless:
        careless.publish(water_topic(careless_sensor), encode_reading(t0, 0, {"pressure": 300.0}))
    keen = Publisher(settings.mqtt_url, f"keen-{new_id('p')}", resend_unrouted_s=60)

    def send() -> None:
        with keen:
            for k in range(200):
                keen.publish(water_topic(keen_sensor), encode_reading(t0 + k, k, {"pressure": 1.0}))

    sender = threading.Thread(target=send)
    sender.start()
    back = Ingestor(settings)
    try:
        wait_for(lambda: keen.resent_unrouted > 0, timeout_s=20, what="a reading nobody took")
        back.start()
        sender.join(60)
        assert not sender.is_alive() and keen.dropped_unrouted == 0
        wait_for(
            lambda: len(stored_pairs(db_url)) >= 200,
            timeout_s=60,
            what="200 readings stored",
        )
        assert sorted(stored_pairs(db_url)) == [(keen_sensor, k) for k in range(200)]
        assert (
            back.consumer.status.sessions_lost == 0
        )  # the session came back, its subscription not
    finally:
        back.stop(end_session=True)


def test_two_workers_on_a_shared_subscription(settings: Settings, db_url: str) -> None:
    sensors = _sensors(db_url, 4)
    a = Ingestor(settings.model_copy(update={"ingest_client_id": settings.ingest_client_id + "-a"}))
    b = Ingestor(settings.model_copy(update={"ingest_client_id": settings.ingest_client_id + "-b"}))
    a.start()
    b.start()
    try:
        load = Load(settings.mqtt_url, sensors, per_sensor=500, rate_per_s=3000).start()
        load.wait(60)
        wait_for(lambda: a.health().stored + b.health().stored >= len(load.expected), 30)
        _assert_exactly_once(db_url, load)
        assert a.health().stored > 0 and b.health().stored > 0
        assert a.health().stored + b.health().stored == len(load.expected)
    finally:
        a.stop(end_session=True)
        b.stop(end_session=True)


def test_clean_stop_under_load_is_prompt_and_the_rest_arrives_after_restart(
    settings: Settings, db_url: str
) -> None:
    sensors = _sensors(db_url, 3)
    settings.ingest_queue_max = 20  # the network thread blocks on a full queue most of the time
    ing = Ingestor(settings)
    ing.start()
    load = Load(settings.mqtt_url, sensors, per_sensor=700, rate_per_s=3000).start()
    time.sleep(0.4)
    t = time.monotonic()
    ing.stop()  # keeps the session: what was not committed is delivered again
    assert time.monotonic() - t < 10
    assert 0 < ing.health().stored < len(load.expected)
    ing2 = Ingestor(settings)
    ing2.start()
    try:
        load.wait(60)
        wait_stored(db_url, load, timeout_s=60)
        _assert_exactly_once(db_url, load)
    finally:
        ing2.stop(end_session=True)


def test_received_bytes_are_bounded_and_nothing_is_lost(settings: Settings, db_url: str) -> None:
    sensors = _sensors(db_url, 2)
    budget = 20_000
    ing = Ingestor(settings, queue_max_bytes=budget)
    ing.start()
    try:
        padding = "x" * 2000  # unknown fields are ignored by the decoder
        t0 = int(time.time() * 1000) - 60_000
        peak = 0
        with Publisher(settings.mqtt_url, f"pub-bytes-{settings.ingest_client_id}") as pub:
            for k in range(300):
                sid = sensors[k % 2]
                body = json.dumps(
                    {"v": 1, "ts": t0 + k, "seq": k, "q": {"pressure": 300.0}, "pad": padding}
                ).encode()
                pub.publish(water_topic(sid), body)
                peak = max(peak, ing.health().queue_bytes)
        wait_for(lambda: ing.health().stored == 300, timeout_s=30)
        assert peak <= budget + 2100  # one message may always enter
        assert query(db_url, "SELECT count(DISTINCT seq) FROM readings") == [(300,)]
    finally:
        ing.stop(end_session=True)


def test_postgres_killed_during_commits_under_load(
    stack: LocalStack, settings: Settings, db_url: str, reuse_ports: None
) -> None:
    """kill -9 of the postmaster while batches commit: each batch is stored once, or delivered
    again (it was not acknowledged) and then stored once."""
    sensors = _sensors(db_url, 3)
    ing = Ingestor(settings)
    ing.start()
    try:
        load = Load(settings.mqtt_url, sensors, per_sensor=600, rate_per_s=1500).start()
        time.sleep(0.6)
        try:
            stack.kill_postgres()
            wait_for(lambda: ing.health().state == "stalled", timeout_s=10)
        finally:
            time.sleep(3.0)  # the orphaned backends notice the postmaster's death and exit
            stack.start_postgres()  # crash recovery
        load.wait(60)
        wait_stored(db_url, load, timeout_s=60)
        _assert_exactly_once(db_url, load)
        wait_for(lambda: ing.health().state == "running")
    finally:
        ing.stop(end_session=True)
