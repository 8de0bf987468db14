import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cityops.kernel.migrate import (
    Migration,
    MigrationOrderError,
    check_order,
    ensure_partitions,
    plan_migrations,
    storage_mode,
)
from cityops.shell.database import prepare_database
from tests.cityops.test_upgrade import previous_migrations
from tests.conftest import create_database, drop_database


def test_plan_picks_the_variant_of_the_storage_path(tmp_path: Path) -> None:
    for name in (
        "0001_core.sql",
        "0002_readings.plain.sql",
        "0002_readings.timescale.sql",
        "0003_more.sql",
    ):
        (tmp_path / name).write_text("SELECT 1;")
    plain = plan_migrations(False, tmp_path)
    ts = plan_migrations(True, tmp_path)
    assert [m.path.name for m in plain] == [
        "0001_core.sql",
        "0002_readings.plain.sql",
        "0003_more.sql",
    ]
    assert [m.path.name for m in ts] == [
        "0001_core.sql",
        "0002_readings.timescale.sql",
        "0003_more.sql",
    ]
    (tmp_path / "0003_other.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="two migrations"):
        plan_migrations(False, tmp_path)


def test_every_shipped_migration_has_both_paths_or_none() -> None:
    assert {m.version for m in plan_migrations(False)} == {m.version for m in plan_migrations(True)}


@pytest.mark.both_storage_paths
def test_migrate_is_idempotent_and_creates_the_contract_relations(
    db_url: str, storage_path: str
) -> None:
    with psycopg.connect(db_url) as conn:
        assert prepare_database(conn) == []  # the template already holds every migration
        assert storage_mode(conn) == storage_path
        for rel in (
            "sensors",
            "sensor_types",
            "sensor_type_quantities",
            "readings",
            "sensor_latest",
            "alerts",
            "quarantine",
            "districts",
            "schema_migrations",
        ):
            assert conn.execute("SELECT to_regclass(%s)", (rel,)).fetchone()[0] is not None, rel
        n_types = conn.execute("SELECT count(*) FROM sensor_types").fetchone()[0]
        assert n_types >= 7


def test_concurrent_migrations_on_a_new_database_do_not_race(stack, db_url: str) -> None:
    name = "t_concurrent_migrate"
    drop_database(stack, name)
    create_database(stack, name)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with psycopg.connect(stack.admin_database_url(name)) as conn:
                results.append(prepare_database(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    applied = sorted(results, key=len)
    assert applied[0] == [] and applied[1] == [] and len(applied[2]) >= 2
    drop_database(stack, name)


@pytest.mark.parametrize("db_url", ["plain"], indirect=True)
def test_partitions_are_created_ahead_and_dropped_by_retention(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        future = datetime.now(UTC) + timedelta(days=10)
        created = ensure_partitions(conn, past=timedelta(0), future=timedelta(days=10))
        assert created >= 8
        conn.execute(
            "INSERT INTO readings (sensor_id, quantity, ts, value) VALUES ('x', 'pressure', %s, 1)",
            (future,),
        )
        # a partition 40 days old, then retention of 35 days drops it and keeps the rest
        old = datetime.now(UTC) - timedelta(days=40)
        ensure_partitions(conn, past=timedelta(0), future=timedelta(0), now=old)
        name = "readings_p" + old.strftime("%Y%m%d")
        assert conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None
        dropped = conn.execute("SELECT cityops_apply_retention(35)").fetchone()[0]
        assert dropped >= 1
        assert conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 1


def test_migrations_run_only_in_version_order() -> None:
    planned = [Migration(v, f"m{v}", Path(f"{v:04d}_m{v}.sql")) for v in (1, 2, 10, 65)]
    assert [m.version for m in check_order(planned, set())] == [1, 2, 10, 65]
    assert [m.version for m in check_order(planned, {1, 2, 10})] == [65]
    assert check_order(planned, {1, 2, 10, 65}) == []
    with pytest.raises(MigrationOrderError, match=r"0002_m2 is missing .* later 0010 is applied"):
        check_order(planned, {1, 10})
    with pytest.raises(MigrationOrderError, match=r"has migration 0070, .* newer release"):
        check_order(planned, {1, 2, 10, 65, 70})


def test_shipped_migrations_are_numbered_after_the_previous_release(tmp_path: Path) -> None:
    """New migrations take the next number: the previous release's databases hold every older
    version, and a lower new number would be a gap (refused by check_order)."""
    previous = plan_migrations(True, previous_migrations(tmp_path))
    highest = max(m.version for m in previous)
    for timescale in (False, True):
        new = {m.version for m in plan_migrations(timescale)} - {m.version for m in previous}
        assert new and min(new) > highest
