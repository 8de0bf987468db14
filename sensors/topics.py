"""The MQTT topic scheme, built and parsed here only (docs/contracts/mqtt.md).

    city/<utility>/<sensor_id>/telemetry   devices -> cityops, QoS 1
    city/alerts/<utility>/<sensor_id>      cityops -> subscribers, QoS 1 (alert raised / cleared)

A sensor id is 1-64 characters of [a-z0-9_-], starting with a letter or digit, so it can never
carry the MQTT wildcards ``+ #``, a level separator ``/`` or look-alike Unicode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sensors.quantities import Utility

ROOT = "city"
TELEMETRY = "telemetry"
ALERTS = "alerts"
SENSOR_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_UTILITIES = frozenset(u.value for u in Utility)


class TopicError(ValueError):
    """The topic is not one cityops accepts; ``reason`` is machine-readable."""

    def __init__(self, reason: str, topic: str) -> None:
        super().__init__(f"{reason}: {topic!r}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TelemetryTopic:
    utility: Utility
    sensor_id: str


def is_valid_sensor_id(sensor_id: str) -> bool:
    return bool(SENSOR_ID_RE.fullmatch(sensor_id))


def telemetry_topic(utility: Utility | str, sensor_id: str) -> str:
    u = Utility(utility)
    if not is_valid_sensor_id(sensor_id):
        raise ValueError(f"invalid sensor id {sensor_id!r}")
    return f"{ROOT}/{u.value}/{sensor_id}/{TELEMETRY}"


def telemetry_filter(utility: Utility | str | None = None) -> str:
    """Subscription filter for the telemetry of one utility or all of them."""
    return f"{ROOT}/{Utility(utility).value if utility else '+'}/+/{TELEMETRY}"


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 / Mosquitto shared subscription: messages are split among the group's members."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", group):
        raise ValueError(f"invalid share group {group!r}")
    return f"$share/{group}/{topic_filter}"


def parse_telemetry_topic(topic: str) -> TelemetryTopic:
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != ROOT or parts[3] != TELEMETRY:
        raise TopicError("topic_not_telemetry", topic)
    if parts[1] not in _UTILITIES:
        raise TopicError("topic_unknown_utility", topic)
    if not is_valid_sensor_id(parts[2]):
        raise TopicError("topic_invalid_sensor_id", topic)
    return TelemetryTopic(Utility(parts[1]), parts[2])


def alert_topic(utility: Utility | str, sensor_id: str) -> str:
    return f"{ROOT}/{ALERTS}/{Utility(utility).value}/{sensor_id}"


def alert_filter() -> str:
    return f"{ROOT}/{ALERTS}/#"


def source_loss_topic(loss_id: int) -> str:
    """Where a source loss's opening and closing are announced (alerts/source_loss.py): under
    the alert topics, so that their subscribers and ACLs cover it."""
    return f"{ROOT}/{ALERTS}/source_loss/{int(loss_id)}"
