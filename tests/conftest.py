"""Fixtures on the real services: a private PostgreSQL/PostGIS and Mosquitto for the session.

The suite starts its own servers (cityops.shell.stack) so that tests may stop, kill and restart them
without touching anything else on the machine. Each test gets a fresh database cloned from a
migrated template, so tests do not see each other's rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cityops.kernel.db import has_timescaledb
from cityops.kernel.mqtt import end_session
from cityops.kernel.settings import Settings
from cityops.shell.database import prepare_database
from cityops.shell.stack import LocalStack, default_stack_dir

ROOT = Path(__file__).resolve().parent.parent
# one migrated template per storage path (decision 0005): the suite runs on TimescaleDB where the
# server has it, and the tests marked ``both_storage_paths`` run on plain PostgreSQL as well
TEMPLATES = {"timescaledb": "cityops_template", "plain": "cityops_plain_template"}
STORAGE_PATHS = tuple(TEMPLATES)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_storage_paths: run the test on the TimescaleDB and on the plain-PostgreSQL path",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "db_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "both_storage_paths"
    ):
        metafunc.parametrize("db_url", STORAGE_PATHS, indirect=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    # CITYOPS_TEST_STACK_DIR lets two suites run side by side with servers of their own
    override = os.environ.get("CITYOPS_TEST_STACK_DIR")
    st = LocalStack(Path(override) if override else default_stack_dir(ROOT, "test-stack"))
    st.start()
    yield st
    if not os.environ.get("CITYOPS_TEST_KEEP_STACK"):
        st.stop()


@pytest.fixture(scope="session")
def timescaledb_available(stack: LocalStack) -> bool:
    """Whether the suite's server has TimescaleDB. ``./run test`` sets
    CITYOPS_TEST_REQUIRE_TIMESCALEDB when it installed the extension, and then its absence fails
    the run instead of quietly testing only the plain path."""
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        available = has_timescaledb(conn)
    if not available and os.environ.get("CITYOPS_TEST_REQUIRE_TIMESCALEDB"):
        pytest.fail("CITYOPS_TEST_REQUIRE_TIMESCALEDB is set but the server has no TimescaleDB")
    return available


def create_database(stack: LocalStack, name: str, template: str | None = None) -> str:
    """A new database (a clone of ``template`` when given); returns its URL."""
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        if template:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return stack.admin_database_url(name)


def drop_database(stack: LocalStack, name: str) -> None:
    """Drop a database (a template too), ending its sessions (TimescaleDB's scheduler as well)."""
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE false ALLOW_CONNECTIONS true')
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seal_template(stack: LocalStack, name: str) -> str:
    """Mark a prepared database as a template to clone per test, closed to connections. A session
    on the template makes ``CREATE DATABASE ... TEMPLATE`` fail ("being accessed by other users"),
    and TimescaleDB keeps one there: its launcher runs a scheduler on every database that allows
    connections and is no template, and restarts the template's scheduler at every clone unless
    the template refuses connections. The scheduler that ran while it was prepared is ended.
    Clones are ordinary databases with a scheduler of their own, as in production."""
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false')
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchone() != (0,):
            if time.monotonic() > deadline:
                raise RuntimeError(f"sessions on {name} did not end")
            time.sleep(0.05)
    return name


def make_template(stack: LocalStack, name: str, *, timescale: bool) -> str:
    """A migrated template database of one storage path."""
    drop_database(stack, name)
    with psycopg.connect(create_database(stack, name)) as conn:
        prepare_database(conn, use_timescale=timescale)
    return seal_template(stack, name)


@pytest.fixture(scope="session")
def templates(stack: LocalStack, timescaledb_available: bool) -> dict[str, str]:
    """Storage path -> template database; without TimescaleDB both paths are plain."""
    plain = make_template(stack, TEMPLATES["plain"], timescale=False)
    if not timescaledb_available:
        return {"timescaledb": plain, "plain": plain}
    return {
        "timescaledb": make_template(stack, TEMPLATES["timescaledb"], timescale=True),
        "plain": plain,
    }


@pytest.fixture(scope="session")
def template_db(templates: dict[str, str]) -> str:
    """The default template: TimescaleDB where the server has it."""
    return templates["timescaledb"]


@pytest.fixture
def storage_path(request: pytest.FixtureRequest, timescaledb_available: bool) -> str:
    """The storage path of this test's database (``db_url``)."""
    callspec = getattr(request.node, "callspec", None)
    path = callspec.params.get("db_url", "timescaledb") if callspec else "timescaledb"
    return path if timescaledb_available else "plain"


@pytest.fixture
def db_url(
    request: pytest.FixtureRequest, stack: LocalStack, templates: dict[str, str]
) -> Iterator[str]:
    """A freshly migrated database of this test's own, on TimescaleDB by default (on either
    path for tests marked ``both_storage_paths``)."""
    template = templates[getattr(request, "param", None) or "timescaledb"]
    name = "t_" + uuid.uuid4().hex[:12]
    yield create_database(stack, name, template)
    drop_database(stack, name)


@pytest.fixture
def settings(stack: LocalStack, db_url: str) -> Iterator[Settings]:
    """Settings for one test: its own database and client ids, the stack's broker identities.
    Afterwards the test's persistent broker sessions are ended: a session nobody resumes would
    have every later test's telemetry queued for it (the broker grew to 600 MB and stalled)."""
    s = stack_settings(stack, db_url)
    yield s
    for url, client_id in (
        (s.mqtt_url_for("ingest"), s.ingest_client_id),
        (s.mqtt_url_for("alerts"), s.alerts_client_id),
        *((s.mqtt_url_for("alerts"), f"{s.alerts_client_id}-w{k}") for k in range(4)),
    ):
        end_session(url, client_id)


def stack_settings(stack: LocalStack, database_url: str, tag: str = "") -> Settings:
    """Settings for ``database_url`` with the stack's broker identities and client ids and
    share groups of their own (``tag``, random by default), so that tests do not share
    sessions."""
    tag = tag or uuid.uuid4().hex[:8]
    return Settings(
        database_url=database_url,
        mqtt_url=stack.mqtt_url("cityops-admin"),
        ingest_mqtt_url=stack.mqtt_url("cityops-ingest"),
        alerts_mqtt_url=stack.mqtt_url("cityops-alerts"),
        sim_mqtt_url=stack.mqtt_url("cityops-sim"),
        device_ca_dir=str(stack.device_ca.directory),
        ingest_client_id=f"ingest-{tag}",
        ingest_share_group=f"ingest-{tag}",
        alerts_client_id=f"alerts-{tag}",
        alerts_share_group=f"alerts-{tag}",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `cityops` subprocess use ``settings``."""
    return {**os.environ, **settings.as_environment()}


def cityops_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cityops", *args]


def start_cityops(
    settings: Settings, *args: str, stdout: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """A `cityops` command running as a real subprocess with ``settings`` (stderr kept)."""
    return subprocess.Popen(
        cityops_cmd(*args),
        env=settings_env(settings),
        cwd=ROOT,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cityops(
    settings: Settings, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cityops_cmd(*args),
        env=settings_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_policy_jobs(db_url: str, proc_name: str) -> int:
    """Run now, one after the other, the TimescaleDB policy jobs called ``proc_name`` (for
    example ``policy_refresh_continuous_aggregate``): the same procedures its scheduler runs on
    their schedule. Returns how many ran; 0 on plain PostgreSQL, which has no jobs."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('timescaledb_information.jobs')").fetchone() == (None,):
            return 0
        jobs = conn.execute(
            "SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = %s ORDER BY job_id",
            (proc_name,),
        ).fetchall()
        for (job_id,) in jobs:
            conn.execute("CALL run_job(%s)", (job_id,))
    return len(jobs)
