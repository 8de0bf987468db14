"""Fixtures on the real services: a private PostgreSQL/PostGIS and Mosquitto for the session.

The suite starts its own servers (cityops.stack) so that tests may stop, kill and restart them
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
def settings(stack: LocalStack, db_url: str) -> Iterator[Settings]:
    """Settings for one test: its own database and client ids, the stack's broker identities.
    Afterwards the test's persistent broker sessions are ended: a session nobody resumes would
    have every later test's telemetry queued for it (the broker grew to 600 MB and stalled)."""
    tag = uuid.uuid4().hex[:8]
    s = Settings(
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
    yield s
    for url, client_id in (
        (s.mqtt_url_for("ingest"), s.ingest_client_id),
        (s.mqtt_url_for("alerts"), s.alerts_client_id),
        *((s.mqtt_url_for("alerts"), f"{s.alerts_client_id}-w{k}") for k in range(4)),
    ):
        end_mqtt_session(url, client_id)


def end_mqtt_session(url: str, client_id: str) -> None:
    """Discard the broker's stored session of ``client_id`` (connect with a clean start and
    no session expiry, then leave)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    from cityops.settings import parse_mqtt_url

    ep = parse_mqtt_url(url)
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    c.username_pw_set(ep.username, ep.password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    try:
        c.connect(ep.host, ep.port, keepalive=10, clean_start=True, properties=props)
        c.loop_start()
        deadline = time.monotonic() + 5
        while not c.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        c.disconnect()
        c.loop_stop()
    except OSError:
        pass  # the broker is gone (a test stopped it): nothing is kept either


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a `cityops` subprocess use ``settings``."""
    return {**os.environ, **settings.as_environment()}


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
