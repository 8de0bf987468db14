"""Per-sensor broker identities: a device's MQTT username is its sensor id (the stack's ACL
pattern ``write city/+/%u/telemetry`` lets it write only its own topic).

``make_credentials`` draws a password per sensor; ``mosquitto_password_lines`` renders them in
Mosquitto's password-file format (``user:$7$<iterations>$<salt>$<hash>``, PBKDF2-SHA512, as
``mosquitto_passwd`` writes) for an operator or the stack to append, after which the broker
reloads on SIGHUP. The simulator reads the credentials back from a JSON file (0600).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from cityops.kernel.settings import with_mqtt_credentials

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$


def make_credentials(sensor_ids: Iterable[str]) -> dict[str, str]:
    return {sid: secrets.token_urlsafe(18) for sid in sensor_ids}


def mosquitto_hash(password: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def mosquitto_password_lines(credentials: Mapping[str, str]) -> str:
    return "".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in credentials.items())


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


def append_to_password_file(passwd: Path, credentials: Mapping[str, str]) -> int:
    """Add the devices to a Mosquitto password file (users already in it are left alone);
    returns how many were added. The broker reads it again on SIGHUP (``reload_broker``)."""
    existing = set()
    if passwd.exists():
        existing = {
            line.split(":", 1)[0] for line in passwd.read_text().splitlines() if ":" in line
        }
    new = {u: p for u, p in credentials.items() if u not in existing}
    if new:
        with passwd.open("a") as f:
            f.write(mosquitto_password_lines(new))
    return len(new)


def reload_broker(pid_file: Path) -> None:
    """Ask the Mosquitto whose pid is in ``pid_file`` to reload its password file and ACL."""
    import signal

    os.kill(int(Path(pid_file).read_text().strip()), signal.SIGHUP)
