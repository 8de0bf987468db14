"""The TimescaleDB path: hypertable, compression and retention policies, continuous aggregates
equal to a recomputation from raw readings. Runs only where CITYOPS_TEST_TIMESCALE_URL names a
PostgreSQL server with the timescaledb extension (a superuser URL; a database per test is made)."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from cityops.migrate import migrate
from cityops.mqtt import Publisher
from cityops.settings import Settings
from cityops.stack import LocalStack
from ingestion.service import Ingestor
from sensors.payload import encode_reading
from tests.ingestion.conftest import add_sensors, new_id, now_ms, query, wait_for, water_topic

TIMESCALE_URL = os.environ.get("CITYOPS_TEST_TIMESCALE_URL", "")
pytestmark = pytest.mark.skipif(
    not TIMESCALE_URL,
    reason="CITYOPS_TEST_TIMESCALE_URL is not set: no TimescaleDB server for the hypertable path",
)


@pytest.fixture
def ts_db_url() -> Iterator[str]:
    name = "t_ts_" + uuid.uuid4().hex[:10]
    with psycopg.connect(TIMESCALE_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_conninfo(TIMESCALE_URL, dbname=name)
    try:
        with psycopg.connect(url) as conn:
            migrate(conn, use_timescale=True)
        yield url
    finally:
        with psycopg.connect(TIMESCALE_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_schema_uses_hypertable_compression_retention_and_caggs(ts_db_url: str) -> None:
    assert query(ts_db_url, "SELECT value FROM cityops_meta WHERE key = 'storage'") == [
        ("timescaledb",)
    ]
    assert query(
        ts_db_url,
        "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_name = 'readings'",
    ) == [("readings", True)]
    caggs = query(
        ts_db_url,
        "SELECT view_name FROM timescaledb_information.continuous_aggregates ORDER BY 1",
    )
    assert caggs == [("readings_1h",), ("readings_1m",)]
    jobs = {r[0] for r in query(ts_db_url, "SELECT proc_name FROM timescaledb_information.jobs")}
    assert {"policy_compression", "policy_refresh_continuous_aggregate"} <= jobs
    # retention follows CITYOPS_RETENTION_DAYS through the workers' maintenance (0012)
    assert "policy_retention" not in jobs


def test_ingest_into_hypertable_and_caggs_equal_recomputation(
    stack: LocalStack, ts_db_url: str
) -> None:
    sensors = [new_id("ts") for _ in range(3)]
    add_sensors(ts_db_url, [(s, "water", "water_pressure") for s in sensors])
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        database_url=ts_db_url,
        mqtt_url=stack.mqtt_url("cityops-admin"),
        ingest_mqtt_url=stack.mqtt_url("cityops-ingest"),
        ingest_client_id=f"ingest-ts-{tag}",
        ingest_share_group=f"ts-{tag}",
    )
    # a reading older than the retention, in a chunk of its own: dropped by the maintenance
    query(
        ts_db_url,
        "INSERT INTO readings (sensor_id, quantity, ts, value)"
        " VALUES (%s, 'pressure', now() - interval '50 days', 1) RETURNING 1",
        (sensors[0],),
    )
    settings.retention_days = 45
    ing = Ingestor(settings)
    ing.start()
    assert query(ts_db_url, "SELECT count(*) FROM readings") == [(0,)]
    rng = random.Random(5)
    base = now_ms() - 3 * 3_600_000
    msgs = [
        (
            s,
            encode_reading(
                base + rng.randrange(3 * 3_600_000), k, {"pressure": rng.uniform(150, 650)}
            ),
        )
        for s in sensors
        for k in range(100)
    ]
    rng.shuffle(msgs)
    try:
        with Publisher(settings.mqtt_url, f"pub-ts-{tag}") as pub:
            for s, body in msgs + msgs[:20]:
                pub.publish(water_topic(s), body)
        wait_for(lambda: ing.health().stored >= len({m for m in msgs}), timeout_s=30)
    finally:
        ing.stop(end_session=True)
    with psycopg.connect(ts_db_url, autocommit=True) as conn:
        for view in ("readings_1m", "readings_1h"):
            conn.execute(f"CALL refresh_continuous_aggregate('{view}', NULL, NULL)")
    for view, width in (("readings_1m", "1 minute"), ("readings_1h", "1 hour")):
        mismatches = query(
            ts_db_url,
            f"""
            WITH raw AS (
                SELECT sensor_id, quantity, time_bucket(INTERVAL '{width}', ts) AS bucket,
                       min(value) AS mn, max(value) AS mx, avg(value) AS mean, count(*) AS n,
                       last(value, ts) AS last
                FROM readings GROUP BY 1, 2, 3)
            SELECT raw.*, r.* FROM raw FULL JOIN {view} r USING (sensor_id, quantity, bucket)
            WHERE r.n IS DISTINCT FROM raw.n OR r.value_min IS DISTINCT FROM raw.mn
               OR r.value_max IS DISTINCT FROM raw.mx OR r.value_last IS DISTINCT FROM raw.last
               OR abs(r.value_mean - raw.mean) > 1e-9
            """,  # noqa: S608 - view and width are constants of this test
        )
        assert mismatches == [], (view, mismatches[:3])
    assert query(ts_db_url, "SELECT count(*) FROM data_trust_24h") == [(3,)]
