"""National cryptography: SM3 hashes, SM4-GCM secrets at rest, SM2 signatures, the key ring, and
the SM3 hash chain over audited tables (docs/security.md "Keys", decision 0072).

* SM3 (GB/T 32905) is OpenSSL's (``hashlib.new("sm3")``).
* SM4 (GB/T 32907) in GCM mode is the ``cryptography`` package's. A secret stored in a column is
  an envelope ``sm4gcm:v1:<key id>:<base64url(nonce | ciphertext | tag)>``; the key id lets keys
  rotate: old keys decrypt until ``cityops keys reencrypt`` has moved every value to the active
  one and the old key is revoked.
* SM2 (GB/T 32918) signatures come from ``tongsuopy`` (Tongsuo, the OpenSSL fork with the
  national algorithms): SM3 over Z || message, Z from the default ID ``1234567812345678``, the
  signature DER-encoded (GM/T 0009). ``cryptography`` has no SM2.

Keys live in a key directory (``Settings.keys_dir``): ``sm2-signing-<id>.pem`` (private, 0600),
``sm2-signing-<id>.pub.pem`` (its public key, to publish), ``sm4-data-<id>.key`` (base64, 0600),
``active`` (which ids sign and encrypt) and ``revoked``. A container may pass the SM4 key as the
environment secret ``CITYOPS_SM4_KEY`` (base64; id ``CITYOPS_SM4_KEY_ID``, default ``env``).
A private key file that its group or others may read is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from psycopg import sql

SM4_KEY_BYTES = 16
SM4_NONCE_BYTES = 12  # GCM's 96-bit nonce, random per value (2^32 values per key is far off)
SM4_TAG_BYTES = 16
ENVELOPE_PREFIX = "sm4gcm:v1:"
SM2_DEFAULT_ID = b"1234567812345678"  # GM/T 0009's default distinguishing identifier
KEY_ENV = "CITYOPS_SM4_KEY"
KEY_ID_ENV = "CITYOPS_SM4_KEY_ID"


class CryptoError(RuntimeError):
    """A key is missing, unreadable, revoked, or a value does not decrypt."""


class KeyPermissionError(CryptoError):
    """A private key file that its group or others may read."""


# -- SM3 ---------------------------------------------------------------------------------------


def sm3_digest(data: bytes) -> bytes:
    """SM3 (GB/T 32905) of ``data``: 32 bytes."""
    return hashlib.new("sm3", data).digest()


def sm3_hex(data: bytes) -> str:
    return hashlib.new("sm3", data).hexdigest()


# -- SM4-GCM -----------------------------------------------------------------------------------


def sm4_gcm_encrypt(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """``nonce | ciphertext | tag`` of ``plaintext`` under the 128-bit ``key``, with a fresh
    random nonce; ``aad`` is authenticated, not encrypted."""
    nonce = secrets.token_bytes(SM4_NONCE_BYTES)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    body = enc.update(plaintext) + enc.finalize()
    return nonce + body + enc.tag


def sm4_gcm_decrypt(key: bytes, blob: bytes, aad: bytes = b"") -> bytes:
    """The plaintext of ``sm4_gcm_encrypt``'s output; CryptoError when it was altered, or the key
    or ``aad`` differ."""
    if len(blob) < SM4_NONCE_BYTES + SM4_TAG_BYTES:
        raise CryptoError("SM4-GCM value too short")
    nonce, body, tag = blob[:SM4_NONCE_BYTES], blob[SM4_NONCE_BYTES:-SM4_TAG_BYTES], blob[-16:]
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(body) + dec.finalize()
    except InvalidTag:
        raise CryptoError("SM4-GCM value does not authenticate (altered, or wrong key)") from None


def is_encrypted(value: str | None) -> bool:
    return value is not None and value.startswith(ENVELOPE_PREFIX)


def envelope_key_id(value: str) -> str | None:
    """The SM4 key id an envelope was made with, or None for a plain value."""
    if not is_encrypted(value):
        return None
    return value[len(ENVELOPE_PREFIX) :].split(":", 1)[0]


def encrypt_secret(plaintext: str, keyring: Keyring) -> str:
    """The envelope of ``plaintext`` under the key ring's active SM4 key. The envelope's header
    (version and key id) is the GCM associated data, so it cannot be swapped either."""
    key_id, key = keyring.active_sm4()
    header = f"{ENVELOPE_PREFIX}{key_id}"
    blob = sm4_gcm_encrypt(key, plaintext.encode(), header.encode())
    return f"{header}:{base64.urlsafe_b64encode(blob).decode()}"


def decrypt_secret(value: str, keyring: Keyring) -> str:
    """The plaintext of an envelope. A value that is no envelope is returned as it is: a row
    written before encryption, until ``cityops keys reencrypt`` has converted it."""
    if not is_encrypted(value):
        return value
    try:
        key_id, payload = value[len(ENVELOPE_PREFIX) :].split(":", 1)
        blob = base64.urlsafe_b64decode(payload.encode())
    except (ValueError, binascii.Error):
        raise CryptoError("malformed SM4 envelope") from None
    key = keyring.sm4_key(key_id)
    header = f"{ENVELOPE_PREFIX}{key_id}"
    return sm4_gcm_decrypt(key, blob, header.encode()).decode()


def encrypt_optional(value: str | None, keyring: Keyring) -> str | None:
    return None if value is None else encrypt_secret(value, keyring)


def decrypt_optional(value: str | None, keyring: Keyring) -> str | None:
    return None if value is None else decrypt_secret(value, keyring)


# -- SM2 ---------------------------------------------------------------------------------------
# tongsuopy has no type information; its objects travel as Any behind these functions.


def _sm2() -> Any:
    from tongsuopy.crypto.asymciphers import ec

    return ec


def generate_sm2_key() -> Any:
    """A new SM2 private key on the recommended curve (sm2p256v1)."""
    ec = _sm2()
    return ec.generate_private_key(ec.SM2())


def sm2_private_from_int(d: int) -> Any:
    ec = _sm2()
    return ec.derive_private_key(d, ec.SM2())


def sm2_public_from_point(x: int, y: int) -> Any:
    ec = _sm2()
    return ec.EllipticCurvePublicNumbers(x, y, ec.SM2()).public_key()


def sm2_private_pem(key: Any) -> bytes:
    from tongsuopy.crypto import serialization as ser

    return bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))


def sm2_public_pem(key: Any) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private or public SM2 key (what receivers get)."""
    from tongsuopy.crypto import serialization as ser

    public = key.public_key() if hasattr(key, "private_numbers") else key
    return bytes(public.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo))


def load_sm2_private_pem(pem: bytes) -> Any:
    from tongsuopy.crypto import serialization as ser

    try:
        key = ser.load_pem_private_key(pem, None)
    except (ValueError, TypeError) as exc:
        raise CryptoError(f"not an SM2 private key: {exc}") from None
    _require_sm2(key)
    return key


def load_sm2_public_pem(pem: bytes) -> Any:
    from tongsuopy.crypto import serialization as ser

    try:
        key = ser.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise CryptoError(f"not an SM2 public key: {exc}") from None
    _require_sm2(key)
    return key


def _require_sm2(key: Any) -> None:
    curve = getattr(key, "curve", None)
    if getattr(curve, "name", "") != "SM2":
        raise CryptoError("the key is not on the SM2 curve")


def sm2_sign(private_key: Any, data: bytes) -> bytes:
    """The DER-encoded SM2 signature (r, s) of SM3(Z || data), Z for the default ID."""
    from tongsuopy.crypto import hashes

    ec = _sm2()
    return bytes(private_key.sign(data, ec.ECDSA(hashes.SM3())))


def sm2_verify(public_key: Any, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` (DER) is the SM2 signature of ``data`` by ``public_key``."""
    from tongsuopy.crypto import hashes
    from tongsuopy.crypto.exceptions import InternalError, InvalidSignature

    ec = _sm2()
    try:
        public_key.verify(signature, data, ec.ECDSA(hashes.SM3()))
    except (InvalidSignature, InternalError, ValueError):
        # InternalError: Tongsuo's answer to a signature that is not even DER
        return False
    return True


def sm2_signature_from_rs(r: int, s: int) -> bytes:
    """DER ``SEQUENCE { INTEGER r, INTEGER s }`` (GM/T 0009) from the two integers."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return encode_dss_signature(r, s)


def sign_file(path: Path, keyring: Keyring) -> Path:
    """Sign an exported file with the active SM2 key: writes ``<path>.sig`` (the DER signature,
    the form ``openssl dgst -sm3 -verify`` reads) and returns its path. Receivers check it with
    ``cityops verify <file> --signature <file>.sig --public-key sm2-signing-<id>.pub.pem``."""
    _key_id, key = keyring.active_sm2()
    sig_path = path.with_name(path.name + ".sig")
    sig_path.write_bytes(sm2_sign(key, path.read_bytes()))
    return sig_path


def verify_file(path: Path, signature_path: Path, public_pem: bytes) -> bool:
    return sm2_verify(
        load_sm2_public_pem(public_pem), path.read_bytes(), signature_path.read_bytes()
    )


def signature_header(keyring: Keyring, body: bytes, timestamp_s: int) -> str:
    """``keyid=<id>,t=<unix s>,sm2=<base64 DER>``: the SM2 signature of ``"<t>." + body``
    (the timestamp inside the signature stops replays of old bodies)."""
    key_id, key = keyring.active_sm2()
    sig = sm2_sign(key, f"{timestamp_s}.".encode() + body)
    return f"keyid={key_id},t={timestamp_s},sm2={base64.b64encode(sig).decode()}"


def verify_signature_header(
    public_key: Any, header: str, body: bytes, now_s: int, tolerance_s: int = 300
) -> bool:
    """What a webhook receiver does with ``signature_header``'s value and the body."""
    try:
        fields = dict(part.strip().split("=", 1) for part in header.split(","))
        ts = int(fields["t"])
        sig = base64.b64decode(fields["sm2"], validate=True)
    except (KeyError, ValueError, binascii.Error):
        return False
    if abs(now_s - ts) > tolerance_s:
        return False
    return sm2_verify(public_key, f"{ts}.".encode() + body, sig)


# -- the key ring ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keyring:
    """The keys this process may use: SM4 data keys and SM2 signing keys by id, which of each
    is active, and the SM2 public keys (revoked ones excluded)."""

    sm4: Mapping[str, bytes] = field(default_factory=dict)
    sm4_active_id: str | None = None
    sm2: Mapping[str, Any] = field(default_factory=dict)  # id -> private key
    sm2_public: Mapping[str, Any] = field(default_factory=dict)  # id -> public key
    sm2_active_id: str | None = None
    source: str = ""  # where it was loaded from, for messages

    def active_sm4(self) -> tuple[str, bytes]:
        if self.sm4_active_id is None or self.sm4_active_id not in self.sm4:
            raise CryptoError(
                f"no active SM4 data key ({self.source or 'no key directory'});"
                " run `cityops keys generate` or set CITYOPS_SM4_KEY"
            )
        return self.sm4_active_id, self.sm4[self.sm4_active_id]

    def sm4_key(self, key_id: str) -> bytes:
        try:
            return self.sm4[key_id]
        except KeyError:
            raise CryptoError(
                f"SM4 key {key_id!r} is not in the key ring ({self.source or 'none'}):"
                " revoked, or the key directory is not this deployment's"
            ) from None

    def active_sm2(self) -> tuple[str, Any]:
        if self.sm2_active_id is None or self.sm2_active_id not in self.sm2:
            raise CryptoError(
                f"no active SM2 signing key ({self.source or 'no key directory'});"
                " run `cityops keys generate`"
            )
        return self.sm2_active_id, self.sm2[self.sm2_active_id]

    @property
    def can_sign(self) -> bool:
        return self.sm2_active_id is not None and self.sm2_active_id in self.sm2

    @property
    def can_encrypt(self) -> bool:
        return self.sm4_active_id is not None and self.sm4_active_id in self.sm4


EMPTY_KEYRING = Keyring()


def new_key_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-<6 hex>``: sortable by creation day, unique by chance."""
    day = (now or datetime.now(UTC)).strftime("%Y%m%d")
    return f"{day}-{secrets.token_hex(3)}"


def sm2_private_path(keys_dir: Path, key_id: str) -> Path:
    return keys_dir / f"sm2-signing-{key_id}.pem"


def sm2_public_path(keys_dir: Path, key_id: str) -> Path:
    return keys_dir / f"sm2-signing-{key_id}.pub.pem"


def sm4_path(keys_dir: Path, key_id: str) -> Path:
    return keys_dir / f"sm4-data-{key_id}.key"


def read_private_file(path: Path) -> bytes:
    """A secret file's bytes; KeyPermissionError when its group or others may read or write
    it (the key may already have leaked: make a new one, or chmod 600 if it cannot have)."""
    st = path.stat()
    if st.st_mode & 0o077:
        raise KeyPermissionError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}: a private key must be readable by"
            f" its owner only (chmod 600 {path}; rotate the key if others may have read it)"
        )
    return path.read_bytes()


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 from the start (never readable by others, even briefly);
    refuses to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def read_active(keys_dir: Path) -> dict[str, str]:
    """``{"sm2": id, "sm4": id}`` from the ``active`` file (missing: none active)."""
    path = keys_dir / "active"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: str(v) for k, v in data.items() if k in ("sm2", "sm4")}


def write_active(keys_dir: Path, active: Mapping[str, str]) -> None:
    tmp = keys_dir / "active.tmp"
    tmp.write_text(json.dumps(dict(sorted(active.items()))) + "\n", encoding="utf-8")
    tmp.replace(keys_dir / "active")


def read_revoked(keys_dir: Path) -> set[str]:
    path = keys_dir / "revoked"
    if not path.exists():
        return set()
    return {line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line}


def ensure_keys_dir(keys_dir: Path) -> None:
    keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    keys_dir.chmod(0o700)


def generate_keys(keys_dir: Path, *, kinds: Sequence[str] = ("sm2", "sm4")) -> dict[str, str]:
    """New keys of ``kinds`` in ``keys_dir``, made active (the previous ones stay, to verify
    and decrypt, until revoked); returns kind -> new id."""
    ensure_keys_dir(keys_dir)
    active = read_active(keys_dir)
    made: dict[str, str] = {}
    for kind in kinds:
        key_id = new_key_id()
        if kind == "sm2":
            key = generate_sm2_key()
            write_private_file(sm2_private_path(keys_dir, key_id), sm2_private_pem(key))
            sm2_public_path(keys_dir, key_id).write_bytes(sm2_public_pem(key))
        elif kind == "sm4":
            raw = secrets.token_bytes(SM4_KEY_BYTES)
            write_private_file(sm4_path(keys_dir, key_id), base64.b64encode(raw) + b"\n")
        else:
            raise ValueError(f"unknown key kind {kind!r} (sm2, sm4)")
        active[kind] = key_id
        made[kind] = key_id
    write_active(keys_dir, active)
    return made


def revoke_key(keys_dir: Path, key_id: str) -> str:
    """Revoke a key: its secret file is deleted and its id listed in ``revoked`` (an SM2 key's
    public file stays, so that ``keys list`` can show receivers what was revoked). The active
    key of a kind cannot be revoked: rotate first. Returns the kind."""
    active = read_active(keys_dir)
    if key_id in active.values():
        raise CryptoError(f"key {key_id} is active: rotate (`cityops keys rotate`) before revoking")
    sm2_file, sm4_file = sm2_private_path(keys_dir, key_id), sm4_path(keys_dir, key_id)
    if sm2_file.exists() or sm2_public_path(keys_dir, key_id).exists():
        kind = "sm2"
    elif sm4_file.exists():
        kind = "sm4"
    else:
        raise CryptoError(f"no key {key_id} in {keys_dir}")
    with (keys_dir / "revoked").open("a", encoding="utf-8") as f:
        f.write(f"{key_id} {kind} {datetime.now(UTC).isoformat(timespec='seconds')}\n")
    sm2_file.unlink(missing_ok=True)
    sm4_file.unlink(missing_ok=True)
    return kind


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    kind: str  # sm2 | sm4
    active: bool
    revoked: bool
    source: str  # file or environment


def list_keys(keys_dir: Path) -> list[KeyInfo]:
    """The keys in ``keys_dir`` (revoked ones included), oldest first."""
    if not keys_dir.is_dir():
        return []
    active, revoked = read_active(keys_dir), read_revoked(keys_dir)
    found: dict[tuple[str, str], str] = {}
    for path in keys_dir.iterdir():
        name = path.name
        if name.startswith("sm2-signing-") and name.endswith(".pub.pem"):
            found[("sm2", name[len("sm2-signing-") : -len(".pub.pem")])] = str(path)
        elif name.startswith("sm4-data-") and name.endswith(".key"):
            found[("sm4", name[len("sm4-data-") : -len(".key")])] = str(path)
    revoked_path = keys_dir / "revoked"
    for line in revoked_path.read_text().splitlines() if revoked_path.exists() else []:
        parts = line.split()
        if len(parts) >= 2:
            found.setdefault((parts[1], parts[0]), "revoked")
    return [
        KeyInfo(key_id, kind, active.get(kind) == key_id, key_id in revoked, src)
        for (kind, key_id), src in sorted(found.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]


def load_keyring(keys_dir: Path | None, environ: Mapping[str, str] | None = None) -> Keyring:
    """The key ring of ``keys_dir`` (None or missing: no files) plus the SM4 key of the
    environment secret ``CITYOPS_SM4_KEY``, which then is the active SM4 key. Revoked keys are
    left out; private files readable by others are refused (KeyPermissionError)."""
    environ = os.environ if environ is None else environ
    sm4: dict[str, bytes] = {}
    sm2: dict[str, Any] = {}
    sm2_public: dict[str, Any] = {}
    active: dict[str, str] = {}
    source = ""
    if keys_dir is not None and keys_dir.is_dir():
        source = str(keys_dir)
        revoked = read_revoked(keys_dir)
        active = read_active(keys_dir)
        for path in sorted(keys_dir.iterdir()):
            name = path.name
            if name.startswith("sm4-data-") and name.endswith(".key"):
                key_id = name[len("sm4-data-") : -len(".key")]
                if key_id not in revoked:
                    sm4[key_id] = _decode_sm4_key(read_private_file(path), str(path))
            elif name.startswith("sm2-signing-") and name.endswith(".pub.pem"):
                key_id = name[len("sm2-signing-") : -len(".pub.pem")]
                if key_id not in revoked:
                    sm2_public[key_id] = load_sm2_public_pem(path.read_bytes())
            elif name.startswith("sm2-signing-") and name.endswith(".pem"):
                key_id = name[len("sm2-signing-") : -len(".pem")]
                if key_id not in revoked:
                    sm2[key_id] = load_sm2_private_pem(read_private_file(path))
        for key_id, key in sm2.items():
            sm2_public.setdefault(key_id, key.public_key())
    env_key = environ.get(KEY_ENV, "")
    if env_key:
        key_id = environ.get(KEY_ID_ENV, "") or "env"
        sm4[key_id] = _decode_sm4_key(env_key.encode(), KEY_ENV)
        active["sm4"] = key_id
        source = f"{source} + {KEY_ENV}" if source else KEY_ENV
    return Keyring(
        sm4=sm4,
        sm4_active_id=active.get("sm4") if active.get("sm4") in sm4 else None,
        sm2=sm2,
        sm2_public=sm2_public,
        sm2_active_id=active.get("sm2") if active.get("sm2") in sm2 else None,
        source=source,
    )


def _decode_sm4_key(text: bytes, where: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise CryptoError(f"{where}: not base64") from None
    if len(raw) != SM4_KEY_BYTES:
        raise CryptoError(f"{where}: an SM4 key is {SM4_KEY_BYTES} bytes, not {len(raw)}")
    return raw


# -- SM3 hash chain over audited tables -------------------------------------------------------
# Every audited table (alert_audit, security_audit ...) carries hash_alg, prev_hash and hash;
# a ChainedTable names its content columns, and the same two functions append and verify.

CHAIN_ALG = "sm3"
_CHAIN_INSERT_ROWS = 1000  # rows per INSERT: PostgreSQL takes at most 65,535 parameters


@dataclass(frozen=True, slots=True)
class ChainedTable:
    table: str
    id_column: str
    columns: tuple[str, ...]  # the content, in the order it is hashed
    lock_key: int  # transaction advisory lock that orders the writers


# security_audit (logins, exports, tokens, roles: migration 0066) is written by every part
# that audits (access, gis ...), which import only the kernel: its chain is described here.
# Its writer appends through ``append_chained(conn, SECURITY_AUDIT_CHAIN, [(at, actor, action,
# target, Jsonb(detail))])`` (``at`` set in Python: it is hashed).
SECURITY_AUDIT_CHAIN = ChainedTable(
    table="security_audit",
    id_column="id",
    columns=("at", "actor", "action", "target", "detail"),
    lock_key=0x0C17_5EC0,
)


class ChainBroken(RuntimeError):
    def __init__(self, table: str, entry_id: int, reason: str) -> None:
        super().__init__(f"{table}: entry {entry_id} {reason}")
        self.table = table
        self.entry_id = entry_id
        self.reason = reason


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if hasattr(value, "obj"):  # psycopg's Jsonb wrapper
        return value.obj
    return value


def chain_link(alg: str, prev: str, values: Sequence[Any]) -> str:
    """One link: hash (SM3; SHA-256 for rows written where OpenSSL lacked SM3) of the previous
    link followed by the entry's content as canonical JSON (times in UTC, keys sorted)."""
    body = json.dumps(
        [_canonical(v) for v in values],
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.new(alg, (prev + body).encode()).hexdigest()


def lock_chain(conn: psycopg.Connection, spec: ChainedTable) -> None:
    """The chain's transaction-level lock: writers append one after another."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (spec.lock_key,))


def append_chained(
    conn: psycopg.Connection, spec: ChainedTable, rows: Sequence[Sequence[Any]]
) -> list[int]:
    """Insert ``rows`` (values of ``spec.columns``) chained after the table's last entry; returns
    their ids. In one transaction (the caller's, or its own) holding the chain's lock until it
    commits, so concurrent writers chain in commit order and their ids rise in that order too;
    the chain's head (``audit_chain_heads``) moves in the same transaction."""
    if not rows:
        return []
    ids: list[int] = []
    width = len(spec.columns) + 3
    one = sql.SQL("({})").format(sql.SQL(", ").join([sql.Placeholder()] * width))
    table, id_column = sql.Identifier(spec.table), sql.Identifier(spec.id_column)
    columns = sql.SQL(", ").join(
        sql.Identifier(c) for c in (*spec.columns, "hash_alg", "prev_hash", "hash")
    )
    with conn.transaction():
        lock_chain(conn, spec)
        last = conn.execute(
            sql.SQL("SELECT hash FROM {} WHERE hash IS NOT NULL ORDER BY {} DESC LIMIT 1").format(
                table, id_column
            )
        ).fetchone()
        prev = last[0] if last else ""
        for start in range(0, len(rows), _CHAIN_INSERT_ROWS):
            chunk = rows[start : start + _CHAIN_INSERT_ROWS]
            params: list[Any] = []
            for values in chunk:
                link = chain_link(CHAIN_ALG, prev, values)
                params.extend([*values, CHAIN_ALG, prev, link])
                prev = link
            cur = conn.execute(
                sql.SQL("INSERT INTO {} ({}) VALUES {} RETURNING {}").format(
                    table, columns, sql.SQL(", ").join([one] * len(chunk)), id_column
                ),
                params,
            )
            ids.extend(int(r[0]) for r in cur.fetchall())
        conn.execute(
            "INSERT INTO audit_chain_heads (table_name, entry_id, hash) VALUES (%s, %s, %s)"
            " ON CONFLICT (table_name) DO UPDATE SET entry_id = EXCLUDED.entry_id,"
            " hash = EXCLUDED.hash, updated_at = now()",
            (spec.table, max(ids), prev),
        )
    return ids


def verify_chain(conn: psycopg.Connection, spec: ChainedTable) -> int:
    """Walk the table in id order and recompute every link; returns the entries checked, or
    raises ChainBroken at the first entry that was edited, that does not follow its
    predecessor (one removed before it, or entries reordered), that was written without the
    chain, or, past the last entry, when the newest entries were removed (the recorded head).
    Rows from before the table's chain began (unchained, ahead of every chained one: an upgraded
    table's history) are skipped; they are protected by the append-only triggers alone."""
    seen: set[str] = set()
    prev, n, last_id = "", 0, 0
    query = sql.SQL("SELECT {}, {}, hash_alg, prev_hash, hash FROM {} ORDER BY {}").format(
        sql.Identifier(spec.id_column),
        sql.SQL(", ").join(sql.Identifier(c) for c in spec.columns),
        sql.Identifier(spec.table),
        sql.Identifier(spec.id_column),
    )
    with conn.transaction():
        head = conn.execute(
            "SELECT entry_id, hash FROM audit_chain_heads WHERE table_name = %s", (spec.table,)
        ).fetchone()
        with conn.cursor(name=f"chain_{spec.table}") as cur:
            cur.itersize = 2000
            cur.execute(query)
            for row in cur:
                entry_id, values = int(row[0]), row[1:-3]
                alg, prev_hash, digest = row[-3:]
                if digest is None and n == 0 and (head is None or head[0] > entry_id):
                    continue  # written before the table's chain began (an upgrade): not covered
                if digest is None or alg is None or prev_hash is None:
                    raise ChainBroken(
                        spec.table, entry_id, "is not chained: it was written without its hash"
                    )
                if chain_link(alg, prev_hash, values) != digest:
                    raise ChainBroken(
                        spec.table, entry_id, "was edited: its content does not match its hash"
                    )
                if prev_hash != prev:
                    reason = _why_unlinked(conn, spec, prev_hash, seen)
                    raise ChainBroken(spec.table, entry_id, reason)
                seen.add(digest)
                prev, last_id = digest, entry_id
                n += 1
        if head is not None and (head[0] != last_id or head[1] != prev):
            if head[0] > last_id:
                reason = f"is the last left, but the chain's head is entry {head[0]}: the newest entries were removed"
            else:
                reason = f"is not the chain's recorded head (entry {head[0]}): the head was altered"
            raise ChainBroken(spec.table, last_id, reason)
    return n


def _why_unlinked(
    conn: psycopg.Connection, spec: ChainedTable, prev_hash: str, seen: set[str]
) -> str:
    """Why an entry does not follow the one before it, from where its predecessor went."""
    if prev_hash == "":
        return "claims to be the first: the entries before it were removed"
    if prev_hash in seen:
        return "does not follow the entry before it: entries were moved (reordered)"
    row = conn.execute(
        sql.SQL("SELECT {} FROM {} WHERE hash = %s LIMIT 1").format(
            sql.Identifier(spec.id_column), sql.Identifier(spec.table)
        ),
        (prev_hash,),
    ).fetchone()
    if row is not None:
        return f"is out of order: its predecessor is now entry {row[0]} (entries were reordered)"
    return "does not follow the entry before it: its predecessor was removed"
