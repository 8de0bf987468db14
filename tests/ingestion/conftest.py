"""Fixtures of the ingestion tests: sensors in the test's database, an in-process ingestor on the
real broker and database, a QoS 1 publisher, and polling helpers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import pytest

from cityops.mqtt import Publisher
from cityops.settings import Settings
from ingestion.service import Ingestor
from sensors.quantities import Utility
from sensors.topics import telemetry_topic

T = TypeVar("T")


def wait_for(fn: Callable[[], T], timeout_s: float = 15.0, interval_s: float = 0.05) -> T:
    """Poll ``fn`` until it returns something truthy; return that, or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: T = fn()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s (last: {last!r})")
        time.sleep(interval_s)
        last = fn()
    return last


def query(db_url: str, sql: str, params: Any = None) -> list[tuple]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def add_sensors(db_url: str, sensors: list[tuple[str, str, str]], status: str = "active") -> None:
    """``(sensor_id, utility, sensor_type)`` into the catalogue, somewhere in Chengdu."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for sid, utility, stype in sensors:
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, status, geom)"
                " VALUES (%s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
                (sid, utility, stype, sid, status),
            )


def new_id(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def water_sensors(db_url: str) -> list[str]:
    """Three active water-pressure sensors unique to this test."""
    ids = [new_id("wp") for _ in range(3)]
    add_sensors(db_url, [(i, "water", "water_pressure") for i in ids])
    return ids


@pytest.fixture
def ingestor(settings: Settings) -> Iterator[Ingestor]:
    ing = Ingestor(settings)
    ing.start()
    yield ing
    ing.stop(end_session=True)


@pytest.fixture
def publisher(settings: Settings) -> Iterator[Publisher]:
    with Publisher(settings.mqtt_url, f"pub-{uuid.uuid4().hex[:8]}") as pub:
        yield pub


def water_topic(sensor_id: str) -> str:
    return telemetry_topic(Utility.WATER, sensor_id)
