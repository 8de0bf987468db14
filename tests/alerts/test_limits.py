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


def test_a_changed_limit_holds_from_the_next_reading(
    settings, db_url: str, engine, alert_subscriber
) -> None:  # type: ignore[no-untyped-def]
    """The running engine applies a limit override at once (NOTIFY cityops_catalogue, migration
    0080), not at its next periodic reload 30 s later: a reading sent a moment after the
    override is judged by it."""
    import time

    from alerts.events import decode_alert_event
    from alerts.service import SENSOR_RELOAD_S
    from cityops.kernel.mqtt import Publisher
    from sensors.payload import encode_reading
    from sensors.topics import telemetry_topic
    from tests.alerts.conftest import thresholds_only
    from tests.alerts.test_engine import publish_until_evaluated

    add_sensors(db_url, [("wp-lim-1", "water", "water_pressure")])
    thresholds_only(db_url)
    t0 = (time.time_ns() // 1_000_000) - 600_000
    engine.start()
    with Publisher(settings.mqtt_url_for("sim"), f"sim-{settings.alerts_client_id}") as pub:
        t0 = publish_until_evaluated(pub, db_url, "wp-lim-1", t0, 300.0)  # inside 200-700 kPa
        with psycopg.connect(db_url, autocommit=True) as conn:
            write_limit_override(conn, "li.na", "wp-lim-1", "pressure", 350.0, 800.0, 10.0, "zone")
        changed = time.monotonic()
        # the next chore (every 0.2-1 s) reloads; the reading after it is under the new 350 kPa
        for i in range(1, 40):
            pub.publish(
                telemetry_topic("water", "wp-lim-1"),
                encode_reading(t0 + i * 1000, i, {"pressure": 300.0}),
            )
            pub.flush()
            if not alert_subscriber.messages.empty():
                break
            time.sleep(0.25)
        _, payload, received = alert_subscriber.get(timeout=10)
    after_s = received - changed
    raised = decode_alert_event(payload)
    print(
        f"limit override -> first alert under it: {after_s:.2f} s (reload every {SENSOR_RELOAD_S} s)"
    )
    assert (raised.kind, raised.limit) == ("threshold_low", 350.0)
    assert after_s < 5.0
