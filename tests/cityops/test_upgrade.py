"""Upgrading a database made by the previous release (its migration set is kept, unchanged, in
``data/migrations-0.1.0.tar.gz``): every reading is kept, and the current release ingests into
it."""

from __future__ import annotations

import tarfile
import uuid
from pathlib import Path

import psycopg
import pytest

from cityops.kernel.migrate import plan_migrations, storage_mode
from cityops.kernel.mqtt import Publisher
from cityops.shell.database import prepare_database
from cityops.shell.stack import LocalStack
from ingestion.service import Ingestor
from sensors.payload import encode_reading
from tests.conftest import ROOT, create_database, drop_database, run_policy_jobs, stack_settings
from tests.ingestion.conftest import add_sensors, new_id, now_ms, query, wait_for, water_topic

PREVIOUS_RELEASE = Path(__file__).parent / "data" / "migrations-0.1.0.tar.gz"


def previous_migrations(into: Path) -> Path:
    """The previous release's migration files, unpacked under ``into``."""
    # the "data" filter (no links out, no device files) where Python has it (3.11.4 and later)
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    with tarfile.open(PREVIOUS_RELEASE) as tar:
        tar.extractall(into, **safe)
    return into / "migrations-0.1.0"


@pytest.mark.parametrize("path", ["timescaledb", "plain"])
def test_migrate_keeps_every_reading_of_a_previous_release_database(
    stack: LocalStack, timescaledb_available: bool, path: str, tmp_path: Path
) -> None:
    if path == "timescaledb" and not timescaledb_available:
        pytest.skip("the server has no TimescaleDB")
    timescale = path == "timescaledb"
    previous = previous_migrations(tmp_path)
    name = "t_upgrade_" + uuid.uuid4().hex[:8]
    url = create_database(stack, name)
    try:
        with psycopg.connect(url) as conn:
            applied = prepare_database(conn, use_timescale=timescale, directory=previous)
        assert len(applied) == len(plan_migrations(timescale, previous))
        sensors = [new_id("up") for _ in range(3)]
        add_sensors(url, [(s, "water", "water_pressure") for s in sensors])
        # what the previous release stored: 20 days of readings, up to yesterday (several partitions
        # or chunks; on TimescaleDB some compressed by hand, as its 35-day policy would have)
        query(
            url,
            "INSERT INTO readings (sensor_id, quantity, ts, value, seq)"
            " SELECT s, 'pressure', now() - interval '21 days' + k * interval '10 minutes',"
            "        200 + k %% 50, k"
            " FROM unnest(%s::text[]) s, generate_series(0, 2879) k RETURNING 1",
            (sensors,),
        )
        before = query(url, "SELECT count(*), sum(value), sum(seq) FROM readings")
        assert before[0][0] == 3 * 2880
        if timescale:
            query(
                url,
                "SELECT compress_chunk(c) FROM show_chunks('readings',"
                " older_than => interval '10 days') c",
            )

        with psycopg.connect(url) as conn:
            upgraded = prepare_database(conn)
            assert storage_mode(conn) == path
        # 0.1.0 had migrations up to 0064: every later one applies, in order
        later = (ROOT / "cityops" / "migrations").glob("*.sql")
        assert upgraded == sorted({f.name.split(".")[0] for f in later if int(f.name[:4]) >= 65})
        assert query(url, "SELECT count(*), sum(value), sum(seq) FROM readings") == before
        assert query(url, "SELECT to_regprocedure('cityops_apply_retention(integer)')") != [(None,)]

        # the current release ingests into the upgraded database
        settings = stack_settings(stack, url)
        tag = settings.ingest_client_id
        ing = Ingestor(settings)
        ing.start()
        try:
            t = now_ms() - 5 * 60_000
            with Publisher(settings.mqtt_url, f"pub-up-{tag}") as pub:
                for k, s in enumerate(sensors):
                    pub.publish(water_topic(s), encode_reading(t + k, 10_000 + k, {"pressure": 1}))
            wait_for(lambda: ing.health().stored == 3)
        finally:
            ing.stop(end_session=True)
        run_policy_jobs(url, "policy_refresh_continuous_aggregate")
        assert query(url, "SELECT count(*) FROM readings") == [(before[0][0] + 3,)]
        recent = query(
            url, "SELECT sum(n) FROM readings_1m WHERE bucket > now() - interval '1 hour'"
        )
        assert int(recent[0][0]) == 3
    finally:
        drop_database(stack, name)
