"""Batch and SenML payloads, rollups against recomputation, data trust, possible gaps, metrics."""

from __future__ import annotations

import json
import random
import time
import urllib.request
import uuid

import pytest

from cityops.kernel.mqtt import Publisher, end_session
from cityops.kernel.settings import Settings
from cityops.shell.stack import free_port
from ingestion.service import Ingestor
from sensors.payload import encode_batch, encode_reading
from tests.conftest import run_policy_jobs
from tests.ingestion.conftest import add_sensors, new_id, now_ms, query, wait_for, water_topic

# storage, rollups and data trust hold on both storage paths (decision 0005)
pytestmark = pytest.mark.both_storage_paths


def test_batch_and_senml_messages(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    a, b, _ = water_sensors
    flow = new_id("wf")
    add_sensors(db_url, [(flow, "water", "water_flow")])
    t = now_ms() - 60_000
    publisher.publish(
        water_topic(a),
        encode_batch([(t + k * 1000, k, {"pressure": 300.0 + k}) for k in range(100)]),
    )
    senml = [
        {"bn": f"urn:dev:cityops:{flow}:", "bt": t / 1000, "n": "flow", "u": "m3/h", "v": 36.0},
        {"n": "pressure", "u": "MPa", "v": 0.25},
        {"n": "flow", "t": 1, "u": "l/s", "v": 11.5},
    ]
    publisher.publish(water_topic(flow), json.dumps(senml).encode())
    publisher.publish(water_topic(b), encode_reading(t, 1, {"pressure": 222.0}))
    publisher.flush()
    wait_for(lambda: query(db_url, "SELECT count(*) FROM readings")[0][0] == 104)
    assert query(
        db_url,
        "SELECT array_agg(seq ORDER BY ts), min(value), max(value) FROM readings"
        " WHERE sensor_id = %s",
        (a,),
    ) == [(list(range(100)), 300.0, 399.0)]
    got = query(
        db_url,
        "SELECT quantity, round(value::numeric, 9)::float, extract(epoch FROM ts) * 1000"
        " FROM readings WHERE sensor_id = %s ORDER BY ts, quantity",
        (flow,),
    )
    assert [(q, v, int(ms)) for q, v, ms in got] == [
        ("flow", 10.0, t),
        ("pressure", 250.0, t),
        ("flow", 11.5, t + 1000),
    ]


def test_rollups_equal_recomputation_after_late_and_out_of_order_data(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    """Shuffled readings over three hours; then, after the rollups were materialised (the
    TimescaleDB refresh policy ran), late readings into those same buckets and repeated copies.
    After the next refresh both paths' rollups equal a recomputation from the raw readings."""
    rng = random.Random(7)
    base = now_ms() - 3 * 3_600_000
    msgs = []
    for sid in water_sensors:
        for k in range(150):
            ts = base + rng.randrange(0, 3 * 3_600_000)
            msgs.append((sid, encode_reading(ts, k, {"pressure": round(rng.uniform(150, 650), 3)})))
    rng.shuffle(msgs)
    first, late = msgs[:300], msgs[300:]
    dup = msgs[:40]  # redelivered copies must not count twice

    def publish(batch: list[tuple[str, bytes]]) -> None:
        for i, (sid, body) in enumerate(batch):
            publisher.publish(water_topic(sid), body)
            if i % 100 == 99:  # several batches, so that buckets are merged across transactions
                publisher.flush()
                time.sleep(0.05)
        publisher.flush()

    def stored_all(sent: list[tuple[str, bytes]], received: int) -> bool:
        return (
            ingestor.health().stored >= len(set(sent))
            and ingestor.metrics.received._value.get() >= received
        )

    publish(first)
    wait_for(lambda: stored_all(first, len(first)))
    run_policy_jobs(db_url, "policy_refresh_continuous_aggregate")
    publish(late + dup)
    wait_for(lambda: stored_all(msgs, len(msgs) + len(dup)))
    run_policy_jobs(db_url, "policy_refresh_continuous_aggregate")
    for table, unit in (("readings_1m", "minute"), ("readings_1h", "hour")):
        mismatches = query(
            db_url,
            f"""
            WITH raw AS (
                SELECT sensor_id, quantity, date_trunc('{unit}', ts) AS bucket,
                       min(value) AS mn, max(value) AS mx, avg(value) AS mean, count(*) AS n,
                       (array_agg(value ORDER BY ts DESC))[1] AS last, max(ts) AS last_ts
                FROM readings GROUP BY 1, 2, 3)
            SELECT raw.*, r.* FROM raw FULL JOIN {table} r USING (sensor_id, quantity, bucket)
            WHERE r.n IS DISTINCT FROM raw.n OR r.value_min IS DISTINCT FROM raw.mn
               OR r.value_max IS DISTINCT FROM raw.mx OR r.value_last IS DISTINCT FROM raw.last
               OR r.last_ts IS DISTINCT FROM raw.last_ts OR abs(r.value_mean - raw.mean) > 1e-9
            """,  # noqa: S608 - table and unit are constants of this test
        )
        assert mismatches == [], (table, mismatches[:3])
    assert query(db_url, "SELECT sum(n) FROM readings_1h")[0][0] == len(set(msgs))


def test_data_trust_counts_gaps_duplicates_late_and_silence(
    ingestor: Ingestor, publisher: Publisher, db_url: str, water_sensors: list[str]
) -> None:
    a, b, silent = water_sensors
    t0 = now_ms() - 600_000  # ten minutes ago, one reading a minute
    seqs = [0, 1, 2, 5, 6, 7, 9]  # 3, 4 and 8 missing
    query(db_url, "UPDATE sensors SET created_at = now() - interval '1 day' RETURNING 1")
    for s in seqs:
        publisher.publish(water_topic(a), encode_reading(t0 + s * 60_000, s, {"pressure": 300.0}))
    publisher.publish(water_topic(a), encode_reading(t0 + 60_000, 1, {"pressure": 300.0}))  # dup
    publisher.publish(water_topic(b), encode_reading(now_ms() - 1000, 1, {"pressure": 300.0}))
    publisher.flush()
    wait_for(lambda: ingestor.health().stored == len(seqs) + 1)
    wait_for(lambda: query(db_url, "SELECT sum(duplicates) FROM ingest_duplicates_1h")[0][0] == 1)
    rows = query(
        db_url,
        "SELECT sensor_id, expected, received, seq_gaps, duplicates, late, lag_max_s, silent_s"
        " FROM data_trust(now() - interval '11 minutes', now()) ORDER BY sensor_id",
    )
    by = {r[0]: r[1:] for r in rows}
    expected, received, gaps, dups, late, lag_max, silent_s = by[a]
    assert (expected, received, gaps, dups) == (11, 7, 3, 1)
    assert late == 7  # each arrived at least one interval (60 s) after its timestamp
    assert lag_max > 500 and silent_s < 60 + 5
    assert by[b][1:5] == (1, 0, 0, 0)
    assert by[silent][1] == 0 and by[silent][6] is None  # never heard: silent
    assert set(by) == set(water_sensors)
    assert query(db_url, "SELECT count(*) FROM data_trust_24h WHERE sensor_id = %s", (a,)) == [(1,)]


def test_lost_session_is_recorded_as_possible_gap_and_ingestion_resumes(
    settings: Settings, db_url: str, water_sensors: list[str], publisher: Publisher
) -> None:
    settings.metrics_port = free_port()
    ing = Ingestor(settings)
    ing.start()
    try:
        # a clean start with the ingestor's client id: the broker drops its session
        end_session(settings.mqtt_url, settings.ingest_client_id)
        gaps = wait_for(
            lambda: query(db_url, "SELECT client_id, kind FROM ingest_gaps"), timeout_s=20
        )
        assert gaps == [(settings.ingest_client_id, "session_lost")]
        wait_for(lambda: ing.consumer.status.connected)
        publisher.publish(
            water_topic(water_sensors[0]), encode_reading(now_ms(), 1, {"pressure": 300.0})
        )
        publisher.flush()
        wait_for(lambda: query(db_url, "SELECT count(*) FROM readings")[0][0] == 1)
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5)
            .read()
            .decode()
        )
        assert "cityops_ingest_sessions_lost_total 1.0" in body
        assert "cityops_ingest_readings_stored_total 1.0" in body
        assert "cityops_ingest_stalled 0.0" in body
    finally:
        ing.stop(end_session=True)


def test_session_absent_on_restart_is_a_possible_gap(
    settings: Settings, db_url: str, water_sensors: list[str], publisher: Publisher
) -> None:
    ing = Ingestor(settings)
    ing.start()
    publisher.publish(
        water_topic(water_sensors[0]), encode_reading(now_ms(), 1, {"pressure": 300.0})
    )
    publisher.flush()
    wait_for(lambda: ing.health().stored == 1)
    ing.stop(end_session=True)  # the broker forgets this client id's session
    ing2 = Ingestor(settings.model_copy(update={"ingest_share_group": f"g-{uuid.uuid4().hex[:6]}"}))
    ing2.start()
    try:
        gaps = wait_for(lambda: query(db_url, "SELECT kind FROM ingest_gaps"))
        assert gaps == [("session_absent_on_start",)]
    finally:
        ing2.stop(end_session=True)
