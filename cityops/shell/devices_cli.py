"""``cityops devices``: enrol, list, rotate, disable and revoke device identities on the bus.

A device's identity is its sensor id with a password drawn here and shown once (or written to a
0600 credentials file for a fleet); the broker keeps only its PBKDF2 hash. The sensor must be
registered (``cityops sensors import``): its utility decides the one topic it may publish to.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)


def _settings():
    from cityops.shell.stack import command_settings

    return command_settings()


def _registered_topics(sensor_ids: list[str], all_sensors: bool) -> dict[str, str]:
    """sensor id -> its telemetry topic, for registered sensors named by their catalogue id or
    by the utility's own (``sensors.external_id``, as `sensors import` kept it); unknown ids are
    an error. The device's identity is the catalogue id."""
    from cityops.kernel.db import connect
    from sensors.topics import telemetry_topic

    with connect(_settings().database_url) as conn:
        rows = conn.execute(
            "SELECT sensor_id, utility, external_id FROM sensors"
            " WHERE (%s AND status = 'active') OR sensor_id = ANY(%s) OR external_id = ANY(%s)",
            (all_sensors, sensor_ids, sensor_ids),
        ).fetchall()
    found = {sid: telemetry_topic(utility, sid) for sid, utility, _ in rows}
    named = {sid for sid, _, _ in rows} | {ext for _, _, ext in rows if ext}
    mapped = [f"{ext} -> {sid}" for sid, _, ext in rows if ext and ext in sensor_ids]
    if mapped:
        console.print(f"utility ids mapped: {', '.join(mapped[:10])}", soft_wrap=True)
    unknown = sorted(set(sensor_ids) - named)
    if unknown:
        console.print(f"[red]not registered sensors: {', '.join(unknown[:10])}[/]")
        raise typer.Exit(2)
    return found


def _give_out(passwords: dict[str, str], credentials_file: Path | None) -> None:
    """Write the new passwords to the 0600 credentials file (merged), or print them once."""
    if credentials_file is None:
        for sid, pw in passwords.items():
            print(f"{sid} {pw}")
        return
    old = json.loads(credentials_file.read_text()) if credentials_file.exists() else {}
    tmp = credentials_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({**old, **passwords}, f, indent=1)
    tmp.replace(credentials_file)
    console.print(f"{len(passwords)} device passwords written to {credentials_file} (0600)")


def _device_ca():
    from access.certificates import DeviceCA

    directory = _settings().device_ca_dir
    if not directory or not DeviceCA(Path(directory)).exists():
        console.print("[red]no device CA: set CITYOPS_DEVICE_CA_DIR (`cityops up` makes one)[/]")
        raise typer.Exit(2)
    return DeviceCA(Path(directory))


def _issue_certificates(sensor_ids: list[str], out_dir: Path) -> None:
    from access.certificates import write_private

    ca = _device_ca()
    out_dir.mkdir(parents=True, exist_ok=True)
    for sid in sensor_ids:
        key, cert = ca.issue_device(sid)
        write_private(out_dir / f"{sid}.key", key)
        (out_dir / f"{sid}.crt").write_bytes(cert)
    (out_dir / "ca.crt").write_bytes(ca.cert_path.read_bytes())
    console.print(f"{len(sensor_ids)} certificates in {out_dir} (keys 0600), with the CA's ca.crt")


def _admin():
    from access.bus import BusAdmin

    return BusAdmin(_settings().mqtt_url)


def _fail(exc: Exception) -> None:
    console.print(f"[red]{exc}[/]")
    raise typer.Exit(2) from None


IdsArg = Annotated[list[str] | None, typer.Argument(help="Sensor ids.")]
FileOpt = Annotated[
    Path | None,
    typer.Option(help="Merge the passwords into this JSON file (0600) instead of printing them."),
]


def register(app: typer.Typer) -> None:
    @app.command("add")
    def add(
        sensor_ids: IdsArg = None,
        all_sensors: Annotated[
            bool, typer.Option("--all", help="Every active registered sensor.")
        ] = False,
        credentials_file: FileOpt = None,
        certificate_dir: Annotated[
            Path | None,
            typer.Option(
                help="Issue each a client certificate from the device CA instead of a password:"
                " <id>.key (0600) and <id>.crt in this folder, for the broker's TLS listener."
            ),
        ] = None,
    ) -> None:
        """Enrol devices: each may publish only its own telemetry topic, subscribe nowhere."""
        from access.bus import BusAdminError

        topics = _registered_topics(sensor_ids or [], all_sensors)
        if certificate_dir is not None:
            _issue_certificates(list(topics), certificate_dir)
            passwords: dict[str, str | None] = dict.fromkeys(topics)
        else:
            passwords = {sid: secrets.token_urlsafe(18) for sid in topics}
        try:
            with _admin() as admin:
                admin.enrol({sid: (topics[sid], passwords[sid]) for sid in topics})
        except BusAdminError as exc:
            _fail(exc)
        if certificate_dir is None:
            _give_out({k: v for k, v in passwords.items() if v}, credentials_file)
        console.print(f"{len(passwords)} devices enrolled")

    @app.command("rotate")
    def rotate(sensor_ids: IdsArg = None, credentials_file: FileOpt = None) -> None:
        """New passwords for enrolled devices; the old ones stop working at once."""
        from access.bus import BusAdminError

        passwords = {sid: secrets.token_urlsafe(18) for sid in sensor_ids or []}
        try:
            with _admin() as admin:
                admin.set_passwords(passwords)
        except BusAdminError as exc:
            _fail(exc)
        _give_out(passwords, credentials_file)

    @app.command("list")
    def list_devices() -> None:
        """The enrolled devices and whether they may connect."""
        with _admin() as admin:
            devices = admin.devices()
        for d in sorted(devices, key=lambda d: d.sensor_id):
            print(f"{d.sensor_id}\t{'enabled' if d.enabled else 'disabled'}")
        console.print(f"{len(devices)} devices")

    @app.command("disable")
    def disable(
        sensor_ids: IdsArg = None,
        enable: Annotated[bool, typer.Option(help="Enable them again instead.")] = False,
    ) -> None:
        """Refuse (or allow again) the devices' connections; a connected one is cut off."""
        from access.bus import BusAdminError

        try:
            with _admin() as admin:
                for sid in sensor_ids or []:
                    admin.set_enabled(sid, enable)
        except BusAdminError as exc:
            _fail(exc)
        console.print(f"{len(sensor_ids or [])} devices {'enabled' if enable else 'disabled'}")

    @app.command("bus-config")
    def bus_config(
        out: Annotated[Path, typer.Option(help="The plugin's JSON file (kept devices, 0600).")],
    ) -> None:
        """Write the broker's identities for a deployment (docker-compose.yml): the services'
        passwords from CITYOPS_MQTT_<SERVICE>_PASSWORD, hashed; devices in ``out`` kept."""
        from access.bus import build_dynsec_config

        passwords = {
            f"cityops-{name}": os.environ.get(f"CITYOPS_MQTT_{name.upper()}_PASSWORD", "")
            for name in ("admin", "ingest", "alerts", "sim", "dashboard")
        }
        missing = [u for u in ("cityops-admin", "cityops-ingest") if not passwords[u]]
        if missing:
            console.print(f"[red]no password for {', '.join(missing)} in the environment[/]")
            raise typer.Exit(2)
        existing = json.loads(out.read_text()) if out.exists() else None
        config = build_dynsec_config({u: p for u, p in passwords.items() if p}, existing)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=1)
        tmp.replace(out)
        console.print(f"wrote {out}: {len(config['clients'])} identities")

    @app.command("revoke")
    def revoke(sensor_ids: IdsArg = None) -> None:
        """Delete the devices' identities: they can never connect again with them."""
        from access.bus import BusAdminError

        try:
            with _admin() as admin:
                admin.revoke(sensor_ids or [])
        except BusAdminError as exc:
            _fail(exc)
        console.print(f"{len(sensor_ids or [])} devices revoked")
        directory = _settings().device_ca_dir
        if directory:
            from access.certificates import DeviceCA

            ca = DeviceCA(Path(directory))
            if ca.exists() and (n := ca.revoke(sensor_ids or [])):
                # the identity is gone at once (nothing it sends is allowed); the TLS handshake
                # itself is refused once the broker reads the new CRL at its next start
                console.print(f"{n} certificates on the CRL ({ca.crl_path})")
