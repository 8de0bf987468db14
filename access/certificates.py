"""The project's own certificate authority for the message bus: the broker's server certificate
and one client certificate per device (its common name is its sensor id, which the broker's TLS
listener takes as the username, so the device's dynamic-security role applies to it).

ECDSA P-256 with SHA-256: what Mosquitto's OpenSSL, paho-mqtt and device TLS stacks all speak.
(SM2 certificates need a TLCP stack that Debian's Mosquitto does not have; decision 0073.)
Keys are written 0600; the CA key never leaves its directory. Revoked serials go into a CRL
that the broker reads when it starts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825
DEVICE_DAYS = 730  # a device's certificate is renewed with `cityops devices add --certificate`


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret 0600 from the start (never readable by others, even for a moment)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    tmp.replace(path)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class DeviceCA:
    """The authority in ``directory``: ca.key (0600), ca.crt, crl.pem and issued.json (sensor id
    -> serial of its current certificate)."""

    directory: Path

    @property
    def cert_path(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    def exists(self) -> bool:
        return (self.directory / "ca.key").exists() and self.cert_path.exists()

    def create(self, common_name: str = "cityops device CA") -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        key = _key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        write_private(self.directory / "ca.key", _key_pem(key))
        self.cert_path.write_bytes(_cert_pem(cert))
        self._write_issued({}, [])

    def _load(self) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        path = self.directory / "ca.key"
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others; chmod 600 it")
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key, x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def _issue(self, cn: str, days: int, server: bool) -> tuple[bytes, bytes, int]:
        ca_key, ca_cert = self._load()
        key = _key()
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server:
            names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return _key_pem(key), _cert_pem(cert), serial

    def issue_server(self, directory: Path) -> None:
        """server.key (0600) and server.crt for the broker's TLS listener on 127.0.0.1."""
        key, cert, _ = self._issue("127.0.0.1", SERVER_DAYS, server=True)
        write_private(directory / "server.key", key)
        (directory / "server.crt").write_bytes(cert)

    def issue_device(self, sensor_id: str, days: int = DEVICE_DAYS) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM) for a device; a certificate it had before is revoked."""
        key, cert, serial = self._issue(sensor_id, days, server=False)
        issued, revoked = self._read_issued()
        if sensor_id in issued:
            revoked.append(issued[sensor_id])
        issued[sensor_id] = serial
        self._write_issued(issued, revoked)
        return key, cert

    def revoke(self, sensor_ids: list[str]) -> int:
        """Put the devices' certificates on the CRL; returns how many had one."""
        issued, revoked = self._read_issued()
        n = 0
        for sid in sensor_ids:
            if sid in issued:
                revoked.append(issued.pop(sid))
                n += 1
        self._write_issued(issued, revoked)
        return n

    def _read_issued(self) -> tuple[dict[str, int], list[int]]:
        data = json.loads((self.directory / "issued.json").read_text())
        return {k: int(v) for k, v in data["issued"].items()}, [int(s) for s in data["revoked"]]

    def _write_issued(self, issued: dict[str, int], revoked: list[int]) -> None:
        data = {
            "issued": {k: str(v) for k, v in issued.items()},
            "revoked": [str(s) for s in revoked],
        }
        (self.directory / "issued.json").write_text(json.dumps(data, indent=1))
        self._write_crl(revoked)

    def _write_crl(self, revoked: list[int]) -> None:
        ca_key, ca_cert = self._load()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca_cert.subject)
            .last_update(_now() - dt.timedelta(minutes=5))
            .next_update(_now() + dt.timedelta(days=CA_DAYS))
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(_now() - dt.timedelta(minutes=1))
                .build()
            )
        crl = builder.sign(ca_key, hashes.SHA256())
        self.crl_path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
