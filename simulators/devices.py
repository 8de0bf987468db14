"""Per-sensor broker identities: a device's MQTT username is its sensor id, and the broker's
dynamic-security plugin lets it publish only its own telemetry topic (access/bus.py).

``make_credentials`` draws a password per sensor; ``enrol_devices`` gives them to a running
broker (as ``cityops devices add`` does for registered sensors). The simulator reads the
credentials back from a JSON file (0600).
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from cityops.kernel.settings import with_mqtt_credentials
from sensors.topics import telemetry_topic


def make_credentials(sensor_ids: Iterable[str]) -> dict[str, str]:
    return {sid: secrets.token_urlsafe(18) for sid in sensor_ids}


def enrol_devices(
    admin_url: str, credentials: Mapping[str, str], utility: str = "water", *, replace: bool = False
) -> None:
    """Enrol the devices (sensor id -> password) of one utility on the broker at ``admin_url``
    (the admin identity): each may then publish its own telemetry topic only. ``replace``
    gives devices enrolled already their new password."""
    from access.bus import BusAdmin

    devices = {sid: (telemetry_topic(utility, sid), pw) for sid, pw in credentials.items()}
    with BusAdmin(admin_url) as admin:
        admin.enrol(devices, replace=replace)


def write_credentials(path: Path, credentials: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(credentials), indent=1))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def read_credentials(path: Path) -> dict[str, str]:
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ValueError(f"{path}: expected a JSON object of sensor id -> password")
    return data


def device_url(base_url: str, sensor_id: str, credentials: Mapping[str, str]) -> str:
    """The broker URL of ``base_url`` with the device's own identity."""
    if sensor_id not in credentials:
        raise KeyError(f"no credentials for sensor {sensor_id}")
    return with_mqtt_credentials(base_url, sensor_id, credentials[sensor_id])
