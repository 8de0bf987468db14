"""Security events from the message bus as alerts on the console (pure).

The broker's device guard (deploy/mosquitto/device_guard.c) publishes each refusal of a device on
``city/security/devices/<username>``: a publish to another topic, a subscription, a flood. Each
becomes an alert on that device's sensor (quantity ``bus``, kind ``device_<reason>``), so that
emergency staff see where the device is, what it tried and what to do. A bus alert never clears
by itself (no reading clears it): a person checks the device and resolves it.
"""

from __future__ import annotations

import json
from typing import Any

from alerts.engine import AlertChange, SensorInfo

SECURITY_FILTER = "city/security/#"
DEVICE_EVENTS = "city/security/devices/"
BUS_QUANTITY = "bus"

# reason -> (severity, what it tried in zh, en, what to do in zh, en)
_REASONS: dict[str, tuple[str, str, str]] = {
    "foreign_topic": ("major", "向其他设备的主题发布数据", "published on another device's topic"),
    "subscribe": ("major", "试图订阅", "tried to subscribe to"),
    "flood": ("warning", "发送过快（已限流）", "sent too fast (throttled) on"),
}
_TODO_ZH = "核查设备是否被盗用或克隆；必要时吊销：cityops devices revoke {id}"
_TODO_EN = "check the device for theft or cloning; if so revoke it: cityops devices revoke {id}"


class SecurityEventError(ValueError):
    """A message on the security topic that is not a device guard event."""


def parse_device_event(topic: str, payload: bytes) -> dict[str, Any]:
    if not topic.startswith(DEVICE_EVENTS):
        raise SecurityEventError(f"not a device event topic: {topic}")
    try:
        event = json.loads(payload)
    except ValueError as exc:
        raise SecurityEventError(f"not JSON: {exc}") from None
    if not isinstance(event, dict) or event.get("reason") not in _REASONS:
        raise SecurityEventError("unknown device event")
    if event.get("username") != topic.removeprefix(DEVICE_EVENTS):
        raise SecurityEventError("the event's username is not its topic's")
    return event


def device_refusal_change(event: dict[str, Any], info: SensorInfo) -> AlertChange:
    """The alert raised for a guard event on ``info``'s device."""
    reason = event["reason"]
    severity, what_zh, what_en = _REASONS[reason]
    topic, address = str(event.get("topic", "")), str(event.get("address", ""))
    refused = int(event.get("refused", 1))
    sid = info.sensor_id
    zh = f"设备 {sid} {what_zh} {topic}（来自 {address}，拒绝 {refused} 次）。" + _TODO_ZH.format(
        id=sid
    )
    en = f"device {sid} {what_en} {topic} (from {address}, refused {refused}x). " + _TODO_EN.format(
        id=sid
    )
    return AlertChange(
        "raised",
        sid,
        info.utility,
        BUS_QUANTITY,
        f"device_{reason}",
        severity,
        float(refused),
        None,
        int(float(event.get("ts", 0)) * 1_000_000),
        zh,
        en,
    )
