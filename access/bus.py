"""Identity and authorization on the message bus: who may publish and subscribe where.

Mosquitto's dynamic-security plugin holds the identities: one client per service and per device,
each with roles whose ACLs allow exactly what it needs, and a default of *deny* for every
publish and every subscription. The plain password and ACL files of Mosquitto 2.0 could not do
that: they let any client *subscribe* anywhere and only filtered delivery, so a device that
joined ``$share/cityops-ingest/...`` took its share of every reading and dropped it (10 of 20
readings lost in the attack of issue 14). Here a device may only publish its own telemetry topic;
its subscriptions are refused at SUBACK.

``build_dynsec_config`` writes the file a broker starts from (the private stack, the compose
stack); ``BusAdmin`` enrols, disables and revokes devices on a running broker through the
plugin's control topic, as the admin identity (``cityops devices ...``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cityops.kernel.clock import Deadline

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
PASSWORD_ITERATIONS = 10_000  # PBKDF2-SHA512 rounds of the plugin's password hashes
DEVICE_ROLE_PREFIX = "device:"

TELEMETRY_ALL = "city/+/+/telemetry"
SHARED_TELEMETRY = "$share/+/" + TELEMETRY_ALL
ALERTS_ALL = "city/alerts/#"
SECURITY_ALL = "city/security/#"  # the device guard's events (deploy/mosquitto/device_guard.c)


def _allow(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


# what each service identity may do (docs/contracts/mqtt.md); everything else is denied
SERVICE_ACLS: dict[str, list[dict[str, Any]]] = {
    "cityops-ingest": [
        _allow("subscribePattern", SHARED_TELEMETRY),
        _allow("subscribePattern", TELEMETRY_ALL),
    ],
    "cityops-alerts": [
        _allow("subscribePattern", SHARED_TELEMETRY),
        _allow("subscribePattern", TELEMETRY_ALL),
        _allow("subscribePattern", ALERTS_ALL),
        _allow("publishClientSend", ALERTS_ALL),
        _allow("subscribePattern", SECURITY_ALL),
        _allow("subscribePattern", "$share/+/" + SECURITY_ALL),
    ],
    "cityops-sim": [_allow("publishClientSend", TELEMETRY_ALL)],
    "cityops-dashboard": [_allow("subscribePattern", ALERTS_ALL)],
    "cityops-admin": [
        _allow("publishClientSend", "city/#"),
        _allow("subscribePattern", "city/#"),
        _allow("subscribePattern", "$share/+/city/#"),
        _allow("publishClientSend", CONTROL_TOPIC),
        _allow("subscribePattern", RESPONSE_TOPIC),
        _allow("publishClientReceive", RESPONSE_TOPIC),
        _allow("subscribePattern", "$SYS/#"),
    ],
}

DEFAULT_ACCESS = {
    "publishClientSend": False,
    "publishClientReceive": True,
    "subscribe": False,
    "unsubscribe": True,
}


class BusAdminError(RuntimeError):
    """The broker refused or did not answer a control command."""


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The plugin's stored form of a password: PBKDF2-SHA512, base64 hash and salt."""
    salt = salt if salt is not None else os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PASSWORD_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PASSWORD_ITERATIONS,
    }


def device_role(sensor_id: str, topic: str) -> dict[str, Any]:
    """A device's role: publish to its own telemetry topic (sensors.topics), nothing else."""
    return {
        "rolename": DEVICE_ROLE_PREFIX + sensor_id,
        "acls": [_allow("publishClientSend", topic)],
    }


def build_dynsec_config(
    service_passwords: Mapping[str, str], existing: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The plugin's configuration: the services with their passwords and roles, and the
    devices (clients and roles) of ``existing`` kept as they are (enrolled at run time)."""
    kept_clients = [
        c for c in (existing or {}).get("clients", []) if c["username"] not in service_passwords
    ]
    kept_roles = [
        r for r in (existing or {}).get("roles", []) if r["rolename"].startswith(DEVICE_ROLE_PREFIX)
    ]
    services = [
        {"username": user, "roles": [{"rolename": user}], **hash_password(password)}
        for user, password in service_passwords.items()
    ]
    roles = [{"rolename": user, "acls": acls} for user, acls in SERVICE_ACLS.items()]
    return {
        "defaultACLAccess": DEFAULT_ACCESS,
        "clients": services + kept_clients,
        "groups": [],
        "roles": roles + kept_roles,
    }


SERVICE_PREFIX = "cityops-"  # reserved: the device guard and the TLS listener trust it


def enrol_commands(devices: Mapping[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Control commands creating each device (sensor id -> (telemetry topic, password, or None
    for a device that proves itself with a client certificate)): its role, allowed to publish
    its own topic only, and its client with that role."""
    commands: list[dict[str, Any]] = []
    for sensor_id, (topic, password) in devices.items():
        if sensor_id.startswith(SERVICE_PREFIX):
            raise BusAdminError(f"{sensor_id}: names starting with {SERVICE_PREFIX} are services'")
        role = device_role(sensor_id, topic)
        client: dict[str, Any] = {
            "command": "createClient",
            "username": sensor_id,
            "roles": [{"rolename": role["rolename"]}],
        }
        if password is not None:
            client["password"] = password
        commands.append({"command": "createRole", **role})
        commands.append(client)
    return commands


def revoke_commands(sensor_ids: Iterable[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for sid in sensor_ids:
        out.append({"command": "deleteClient", "username": sid})
        out.append({"command": "deleteRole", "rolename": DEVICE_ROLE_PREFIX + sid})
    return out


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    sensor_id: str
    enabled: bool


class BusAdmin:
    """Sends control commands to a running broker's dynamic-security plugin as the admin
    identity and waits for their answers (a few commands per call, in one message)."""

    def __init__(self, admin_url: str, *, timeout_s: float = 10.0) -> None:
        from cityops.kernel.mqtt import new_client  # the kernel's paho client with its buffer
        from cityops.kernel.settings import parse_mqtt_url

        self._url = parse_mqtt_url(admin_url)
        self._timeout_s = timeout_s
        self._client = new_client(
            f"cityops-busadmin-{uuid.uuid4().hex[:8]}", admin_url, manual_ack=False
        )
        self._answers: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._subscribed = threading.Event()
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_connect = lambda c, *_: c.subscribe(RESPONSE_TOPIC, qos=1)

    def __enter__(self) -> BusAdmin:
        self._client.connect(self._url.host, self._url.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(self._timeout_s):
            raise BusAdminError("the broker did not confirm the control subscription")
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self._answers.extend(json.loads(msg.payload).get("responses", []))
            self._lock.notify_all()

    def run(self, commands: list[dict[str, Any]], *, tolerate: tuple[str, ...] = ()) -> list[dict]:
        """Run ``commands`` (in order, one message) and return their answers; an error not in
        ``tolerate`` (e.g. "Client already exists") raises ``BusAdminError``."""
        if not commands:
            return []
        with self._lock:
            self._answers.clear()
        self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        deadline = Deadline(self._timeout_s)
        with self._lock:
            while len(self._answers) < len(commands):
                if deadline.passed() or not self._lock.wait(deadline.left()):
                    raise BusAdminError(f"no answer to {len(commands)} control commands")
            answers = list(self._answers)
        for a in answers:
            error = a.get("error")
            if error and not any(t in error for t in tolerate):
                raise BusAdminError(f"{a.get('command')}: {error}")
        return answers

    def enrol(
        self, devices: Mapping[str, tuple[str, str | None]], *, replace: bool = False
    ) -> None:
        """Give each device (sensor id -> (telemetry topic, password)) its identity on the bus;
        one enrolled already is an error, or (``replace``) gets the new password."""
        items = list(devices.items())
        tolerate = ("already exists",) if replace else ()
        for i in range(0, len(items), 100):  # a few hundred commands per control message
            self.run(enrol_commands(dict(items[i : i + 100])), tolerate=tolerate)
        if replace:
            self.set_passwords({sid: pw for sid, (_topic, pw) in items if pw is not None})

    def revoke(self, sensor_ids: Iterable[str]) -> None:
        """Remove the devices' identities: they can no longer connect (a connected one is
        disconnected by the broker)."""
        ids = list(sensor_ids)
        for i in range(0, len(ids), 100):
            self.run(revoke_commands(ids[i : i + 100]), tolerate=("not found",))

    def set_passwords(self, passwords: Mapping[str, str]) -> None:
        """New passwords for enrolled devices (rotation); their old ones stop working."""
        self.run(
            [
                {"command": "setClientPassword", "username": sid, "password": pw}
                for sid, pw in passwords.items()
            ]
        )

    def set_enabled(self, sensor_id: str, enabled: bool) -> None:
        command = "enableClient" if enabled else "disableClient"
        self.run([{"command": command, "username": sensor_id}])

    def devices(self) -> list[DeviceIdentity]:
        """Every device identity the broker holds (services left out)."""
        answer = self.run([{"command": "listClients", "verbose": True, "count": -1, "offset": 0}])
        clients = answer[0].get("data", {}).get("clients", [])
        return [
            DeviceIdentity(c["username"], not c.get("disabled", False))
            for c in clients
            if c["username"] not in SERVICE_ACLS
        ]
