"""The device guard's events as alerts (pure): what the console shows, and what is refused."""

import json

import pytest

from alerts.engine import SensorInfo
from alerts.security import SecurityEventError, device_refusal_change, parse_device_event

INFO = SensorInfo("wp-1", "water", "water_pressure", {})


def _event(**over) -> bytes:
    event = {
        "event": "device_refused",
        "reason": "flood",
        "username": "wp-1",
        "client_id": "c1",
        "address": "10.1.2.3",
        "topic": "city/water/wp-1/telemetry",
        "refused": 140,
        "ts": 1796234723,
    }
    return json.dumps({**event, **over}).encode()


def test_a_flood_is_a_warning_on_the_devices_sensor_with_what_to_do() -> None:
    ch = device_refusal_change(parse_device_event("city/security/devices/wp-1", _event()), INFO)
    assert (ch.event, ch.sensor_id, ch.utility, ch.quantity) == ("raised", "wp-1", "water", "bus")
    assert (ch.kind, ch.severity, ch.value) == ("device_flood", "warning", 140.0)
    assert ch.ts_us == 1796234723 * 1_000_000
    assert "10.1.2.3" in ch.message_zh and "cityops devices revoke wp-1" in ch.message_zh
    assert "throttled" in ch.message_en


@pytest.mark.parametrize(
    ("topic", "payload", "why"),
    [
        ("city/security/devices/wp-1", b"{not json", "not JSON"),
        ("city/security/devices/wp-1", _event(reason="coffee"), "unknown"),
        ("city/security/devices/wp-2", _event(), "username"),
        ("city/security/other", _event(), "topic"),
    ],
)
def test_anything_else_on_the_security_topic_is_refused(topic, payload, why) -> None:
    with pytest.raises(SecurityEventError, match=why):
        parse_device_event(topic, payload)
