"""The TimescaleDB path: hypertable, policies run by TimescaleDB's own scheduler, retention that
follows the setting, and late readings into compressed chunks stored exactly once.

Runs on the suite's private server, which has TimescaleDB wherever ``./run`` could build it
(``./run test`` then requires it: its absence fails the run rather than skipping these)."""

from __future__ import annotations

import time

import psycopg
import pytest

from cityops.kernel.mqtt import Publisher
from cityops.kernel.settings import Settings
from ingestion.service import Ingestor
from ingestion.store import IngestConnection
from sensors.payload import encode_reading
from tests.conftest import run_policy_jobs
from tests.ingestion.conftest import add_sensors, new_id, now_ms, query, wait_for, water_topic

DAY_MS = 86_400_000


@pytest.fixture(autouse=True)
def _timescaledb_only(storage_path: str) -> None:
    if storage_path != "timescaledb":
        pytest.skip("the server has no TimescaleDB: ./run installs it from its source release")


def _jobs(db_url: str) -> dict[tuple[str, str], dict]:
    """(procedure, relation) -> the job's schedule and config."""
    rows = query(
        db_url,
        "SELECT j.proc_name, coalesce(c.view_name, j.hypertable_name),"
        " j.schedule_interval::text, j.config"
        " FROM timescaledb_information.jobs j"
        " LEFT JOIN timescaledb_information.continuous_aggregates c"
        "   ON c.materialization_hypertable_name = j.hypertable_name"
        " WHERE j.proc_name LIKE 'policy_%%' AND j.proc_name <> 'policy_job_stat_history_retention'"
        "   AND j.proc_name <> 'policy_telemetry'",
    )
    return {(p, rel): {"every": every, **(config or {})} for p, rel, every, config in rows}


def test_schema_uses_hypertable_caggs_and_policies(db_url: str) -> None:
    assert query(db_url, "SELECT value FROM cityops_meta WHERE key = 'storage'") == [
        ("timescaledb",)
    ]
    assert query(db_url, "SELECT value FROM cityops_meta WHERE key = 'timescaledb_version'") == (
        query(db_url, "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    )
    assert query(
        db_url,
        "SELECT hypertable_name, compression_enabled FROM timescaledb_information.hypertables"
        " WHERE hypertable_name = 'readings'",
    ) == [("readings", True)]
    assert query(
        db_url,
        "SELECT view_name, materialized_only, compression_enabled"
        " FROM timescaledb_information.continuous_aggregates ORDER BY 1",
    ) == [("readings_1h", False, True), ("readings_1m", False, True)]  # real-time, compressed
    jobs = _jobs(db_url)
    assert jobs[("policy_compression", "readings")]["compress_after"] == "2 days"
    assert jobs[("policy_refresh_continuous_aggregate", "readings_1m")]["every"] == "00:01:00"
    assert jobs[("policy_refresh_continuous_aggregate", "readings_1h")]["every"] == "00:05:00"
    for view in ("readings_1m", "readings_1h"):
        assert jobs[("policy_compression", view)]["compress_after"] == "35 days"
    # retention is set by the ingestion workers from CITYOPS_RETENTION_DAYS (next test)
    assert not [k for k in jobs if k[0] == "policy_retention"]


def test_retention_policy_follows_the_setting(settings: Settings, db_url: str) -> None:
    ic = IngestConnection(db_url, settings.ingest_client_id)
    try:
        for days, expected in ((45, "45 days"), (45, "45 days"), (400, "400 days"), (0, None)):
            settings.retention_days = days
            Ingestor(settings)._maintenance(ic)  # what runs at start and hourly
            policy = _jobs(db_url).get(("policy_retention", "readings"))
            assert (policy or {}).get("drop_after") == expected, days
    finally:
        ic.close()


def test_the_scheduler_runs_every_policy_job(db_url: str) -> None:
    """TimescaleDB's own background scheduler (not a test calling the procedure) runs each
    policy, and its last run succeeds."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT cityops_apply_retention(400)")
        jobs = conn.execute(
            "SELECT job_id, proc_name FROM timescaledb_information.jobs"
            " WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_compression',"
            " 'policy_retention')"
        ).fetchall()
        assert len(jobs) == 6  # 2 refreshes, 3 compressions, 1 retention
        for job_id, _ in jobs:
            conn.execute("SELECT alter_job(%s, next_start => now())", (job_id,))
        # a database cloned from a template is found by TimescaleDB's launcher only at its next
        # look for new databases (bgw_launcher_poll_time, 60 s); asking it to start this one's
        # scheduler now is what CREATE EXTENSION does. The scheduler then runs the jobs itself.
        conn.execute("SELECT _timescaledb_functions.start_background_workers()")

    def all_succeeded() -> bool:
        rows = query(
            db_url,
            "SELECT count(*) FROM timescaledb_information.job_stats"
            " WHERE job_id = ANY(%s) AND last_run_status = 'Success' AND total_successes >= 1",
            ([j for j, _ in jobs],),
        )
        return rows[0][0] == len(jobs)

    try:
        wait_for(all_succeeded, timeout_s=180, interval_s=0.5)
    except AssertionError as timed_out:
        # say which job did not run, or failed, and whether the database has a scheduler
        stats = query(
            db_url,
            "SELECT job_id, last_run_status, total_runs, total_failures, next_start"
            " FROM timescaledb_information.job_stats WHERE job_id = ANY(%s) ORDER BY job_id",
            ([j for j, _ in jobs],),
        )
        # (seen once: two jobs started and still running after 180 s under a loaded suite)
        workers = query(
            db_url,
            "SELECT backend_type, state, wait_event_type, wait_event, left(query, 80)"
            " FROM pg_stat_activity WHERE backend_type LIKE 'TimescaleDB%%'"
            " OR application_name LIKE 'TimescaleDB%%'",
        )
        raise AssertionError(
            f"policy jobs not all run: {stats} of {jobs}; TimescaleDB workers {workers}"
        ) from timed_out


def test_a_late_reading_into_a_compressed_chunk_is_stored_once(
    settings: Settings, db_url: str
) -> None:
    """The documented rule: compressed chunks accept late readings inside the accept window,
    checked against the compressed data, so a repeat is still stored once; the compression
    policy recompresses the chunk afterwards."""
    sid = new_id("late")
    add_sensors(db_url, [(sid, "water", "water_pressure")])
    old_ms = now_ms() - 10 * DAY_MS
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO readings (sensor_id, quantity, ts, value, seq)"
            " SELECT %s, 'pressure', to_timestamp(%s / 1000.0) + k * interval '1 minute', 300, k"
            " FROM generate_series(0, 59) k",
            (sid, old_ms),
        )
        assert run_policy_jobs(db_url, "policy_compression") == 3
        chunk = conn.execute(
            "SELECT c.chunk_name, c.is_compressed FROM timescaledb_information.chunks c"
            " WHERE c.hypertable_name = 'readings' AND to_timestamp(%s / 1000.0)"
            "   BETWEEN c.range_start AND c.range_end",
            (old_ms,),
        ).fetchone()
        assert chunk is not None and chunk[1] is True
    ing = Ingestor(settings)
    ing.start()
    try:
        with Publisher(settings.mqtt_url, f"pub-late-{new_id()}") as pub:
            late_new = encode_reading(old_ms + 30_000, 1000, {"pressure": 555.0})
            repeat = encode_reading(old_ms + 5 * 60_000, 5, {"pressure": 300.0})
            for body in (late_new, repeat, late_new):
                pub.publish(water_topic(sid), body)
        wait_for(lambda: ing.metrics.received._value.get() >= 3)
        wait_for(lambda: ing.health().stored >= 1)
        time.sleep(0.3)
    finally:
        ing.stop(end_session=True)
    assert query(
        db_url,
        "SELECT count(*), count(*) FILTER (WHERE value = 555) FROM readings WHERE sensor_id = %s",
        (sid,),
    ) == [(61, 1)]
    assert ing.health().stored == 1
    assert query(db_url, "SELECT count(*) FROM quarantine") == [(0,)]
    run_policy_jobs(db_url, "policy_compression")  # recompresses the partial chunk
    assert query(
        db_url,
        "SELECT count(*) FROM readings WHERE sensor_id = %s AND value = 555",
        (sid,),
    ) == [(1,)]
