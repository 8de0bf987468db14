"""Per-sensor alarm limits (sensor_limit_overrides) on the real database."""

from __future__ import annotations

import psycopg
import pytest

from alerts.stores.catalogue import read_sensors, write_limit_override
from tests.alerts.conftest import add_sensors


def test_per_sensor_limit_override(db_url: str) -> None:
    add_sensors(
        db_url, [("wp-hi", "water", "water_pressure"), ("wp-std", "water", "water_pressure")]
    )
    with psycopg.connect(db_url, autocommit=True) as conn:
        write_limit_override(
            conn, "li.na", "wp-hi", "pressure", 250.0, 800.0, 15.0, "high-pressure zone 高压区"
        )
        with pytest.raises(LookupError):
            write_limit_override(conn, "li.na", "wp-hi", "voltage", 1.0, 2.0, 0.0, "x")
        with pytest.raises(ValueError):
            write_limit_override(conn, "li.na", "wp-hi", "pressure", 1.0, 2.0, 0.0, " ")
        with pytest.raises(psycopg.errors.CheckViolation):
            write_limit_override(conn, "li.na", "wp-hi", "pressure", 900.0, 800.0, 0.0, "x")
        sensors = read_sensors(conn)
    hi, std = sensors["wp-hi"].limits["pressure"], sensors["wp-std"].limits["pressure"]
    assert (hi.alarm_low, hi.alarm_high, hi.deadband) == (250.0, 800.0, 15.0)
    assert (std.alarm_low, std.alarm_high, std.deadband) == (200.0, 700.0, 10.0)
