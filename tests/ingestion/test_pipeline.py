"""Issue 2 path: readings over MQTT are stored exactly; bad input is quarantined and does not stop
the stream; a redelivered message is stored once; the real `cityops ingest` subprocess works."""

from __future__ import annotations

import signal
import subprocess
import uuid
from datetime import UTC, datetime

import psycopg
import pytest

from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from ingestion.service import Ingestor
from sensors.payload import encode_reading
from tests.conftest import start_cityops
from tests.ingestion.conftest import (
    REFUSE_POISON_READING,
    add_sensors,
    new_id,
    now_ms,
    query,
    wait_for,
    water_topic,
)


def _ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.mark.both_storage_paths
def test_readings_are_stored_exactly(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    t0 = now_ms() - 10_000
    sent = []
    for i, sid in enumerate(water_sensors):
        for k in range(5):
            ts, seq, value = t0 + k * 1000 + i, 100 + k, 300.0 + i + k / 8 + 1e-9
            publisher.publish(water_topic(sid), encode_reading(ts, seq, {"pressure": value}))
            sent.append((sid, "pressure", _ts(ts), value, seq))
    publisher.flush()
    wait_for(lambda: query(db_url, "SELECT count(*) FROM readings")[0][0] >= len(sent))
    stored = query(
        db_url,
        "SELECT sensor_id, quantity, ts, value, seq FROM readings ORDER BY sensor_id, ts",
    )
    assert stored == sorted(sent)
    latest = query(db_url, "SELECT sensor_id, value, seq FROM sensor_latest ORDER BY sensor_id")
    assert latest == sorted((sid, v, seq) for sid, _, ts, v, seq in sent if seq == 104)


def test_units_are_converted_and_quality_flagged(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    sid = water_sensors[0]
    t0 = now_ms()
    publisher.publish(
        water_topic(sid), encode_reading(t0, 1, {"pressure": 0.3}, {"pressure": "MPa"})
    )
    # 9000 kPa: physically possible, far outside a water main's plausible band -> stored, flagged
    publisher.publish(water_topic(sid), encode_reading(t0 + 1, 2, {"pressure": 9000.0}))
    publisher.flush()
    rows = wait_for(
        lambda: (
            (r := query(db_url, "SELECT seq, value, quality FROM readings ORDER BY seq"))
            and len(r) == 2
            and r
        )
    )
    assert rows == [(1, 300.0, 0), (2, 9000.0, 1)]


def test_bad_input_is_quarantined_and_the_stream_goes_on(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    sid = water_sensors[0]
    unknown = new_id("nobody")
    t0 = now_ms()
    publisher.publish(water_topic(sid), b"this is not json")
    publisher.publish(water_topic(unknown), encode_reading(t0, 1, {"pressure": 300.0}))
    publisher.publish(water_topic(sid), encode_reading(t0 + 1, 7, {"pressure": 301.5}))
    publisher.flush()
    wait_for(lambda: query(db_url, "SELECT count(*) FROM readings")[0][0] == 1)
    q = wait_for(
        lambda: (
            (
                r := query(
                    db_url,
                    "SELECT topic, reason, sensor_id, payload, payload_size FROM quarantine"
                    " WHERE sensor_id IN (%s, %s) ORDER BY reason",
                    (sid, unknown),
                )
            )
            and len(r) == 2
            and r
        )
    )
    assert q[0][:3] == (water_topic(sid), "not_json", sid)
    assert bytes(q[0][3]) == b"this is not json" and q[0][4] == 16
    assert q[1][:3] == (water_topic(unknown), "unknown_sensor", unknown)
    assert query(db_url, "SELECT sensor_id, seq, value FROM readings") == [(sid, 7, 301.5)]


@pytest.mark.both_storage_paths
def test_redelivered_message_is_stored_once(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    sid = water_sensors[1]
    msg = encode_reading(now_ms(), 5, {"pressure": 250.0})
    for _ in range(3):  # the same message again, as after a crash between commit and ack
        publisher.publish(water_topic(sid), msg)
    publisher.publish(water_topic(sid), encode_reading(now_ms() + 5, 6, {"pressure": 251.0}))
    publisher.flush()
    wait_for(lambda: ingestor.health().stored == 2 and ingestor.metrics.received._value.get() >= 4)
    assert query(db_url, "SELECT seq, value FROM readings ORDER BY seq") == [(5, 250.0), (6, 251.0)]
    assert query(db_url, "SELECT sum(duplicates) FROM ingest_duplicates_1h") == [(2,)]
    assert query(db_url, "SELECT n FROM readings_1m WHERE sensor_id = %s", (sid,))[0][0] in (1, 2)
    assert query(db_url, "SELECT sum(n) FROM readings_1h") == [(2,)]


def test_ingest_subprocess(settings: Settings, db_url: str) -> None:
    sid = new_id("proc")
    add_sensors(db_url, [(sid, "water", "water_pressure")])
    proc = start_cityops(settings, "ingest", stdout=subprocess.PIPE)
    try:
        wait_for(
            lambda: query(
                db_url,
                "SELECT 1 FROM ingest_workers WHERE client_id = %s AND state = 'running'",
                (settings.ingest_client_id,),
            ),
            timeout_s=30,
        )
        t0 = now_ms()
        with Publisher(settings.mqtt_url, f"pub-{uuid.uuid4().hex[:8]}") as pub:
            for k in range(50):
                pub.publish(water_topic(sid), encode_reading(t0 + k, k, {"pressure": 300.0 + k}))
        wait_for(lambda: query(db_url, "SELECT count(*) FROM readings")[0][0] == 50, 30)
        assert query(db_url, "SELECT array_agg(seq ORDER BY seq) FROM readings")[0][0] == list(
            range(50)
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert '"event": "ingest_stopped"' in err
    assert query(
        db_url,
        "SELECT state FROM ingest_workers WHERE client_id = %s",
        (settings.ingest_client_id,),
    ) == [("stopped",)]


@pytest.mark.both_storage_paths
def test_a_message_the_database_refuses_is_quarantined_alone(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    # a trigger stands in for any row the database refuses (a constraint added by an operator)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(REFUSE_POISON_READING)
    sid = water_sensors[0]
    t0 = now_ms()
    for k in range(20):
        value = 666.25 if k == 7 else 300.0 + k
        publisher.publish(water_topic(sid), encode_reading(t0 + k, k, {"pressure": value}))
    publisher.flush()
    wait_for(lambda: query(db_url, "SELECT count(*) FROM readings")[0][0] == 19)
    rows = wait_for(lambda: query(db_url, "SELECT reason, payload FROM quarantine"))
    assert [(r, bytes(p)) for r, p in rows] == [
        ("store_refused", encode_reading(t0 + 7, 7, {"pressure": 666.25}))
    ]
    assert ingestor.health().state == "running"
