"""Fixtures on the real services: a private PostgreSQL/PostGIS and Mosquitto for the session.

The suite starts its own servers (cityops.stack) so that tests may stop, kill and restart them
without touching anything else on the machine. Each test gets a fresh database cloned from a
migrated template, so tests do not see each other's rows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cityops.migrate import migrate
from cityops.settings import Settings
from cityops.stack import LocalStack, default_stack_dir

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_DB = "cityops_template"


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
def template_db(stack: LocalStack) -> str:
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    with psycopg.connect(stack.admin_database_url(TEMPLATE_DB)) as conn:
        migrate(conn)
    return TEMPLATE_DB


@pytest.fixture
def db_url(stack: LocalStack, template_db: str) -> Iterator[str]:
    """A freshly migrated database of this test's own."""
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield stack.admin_database_url(name)
    with psycopg.connect(stack.admin_database_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(stack: LocalStack, db_url: str) -> Settings:
    """Settings for one test: its own database and client ids, the stack's broker identities."""
    tag = uuid.uuid4().hex[:8]
    return Settings(
        database_url=db_url,
        mqtt_url=stack.mqtt_url("cityops-admin"),
        ingest_mqtt_url=stack.mqtt_url("cityops-ingest"),
        alerts_mqtt_url=stack.mqtt_url("cityops-alerts"),
        sim_mqtt_url=stack.mqtt_url("cityops-sim"),
        ingest_client_id=f"ingest-{tag}",
        ingest_share_group=f"ingest-{tag}",
        alerts_client_id=f"alerts-{tag}",
        alerts_share_group=f"alerts-{tag}",
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `cityops` subprocess use ``settings``."""
    env = dict(os.environ)
    for key, value in settings.model_dump().items():
        env[f"CITYOPS_{key.upper()}"] = str(value)
    return env


def cityops_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "cityops", *args]


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
