"""The national algorithms against their standards' published vectors (GB/T 32905 SM3,
GB/T 32907 SM4, GB/T 32918 SM2), SM4-GCM envelopes, SM2 signatures checked by OpenSSL too,
and the key directory's lifecycle and permissions."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cityops.kernel import crypto
from cityops.kernel.crypto import CryptoError, KeyPermissionError

# GB/T 32918 (SM2) example with the recommended curve sm2p256v1, default ID 1234567812345678
D = int("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8", 16)
QX = int("09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020", 16)
QY = int("CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13", 16)
R = int("F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3", 16)
S = int("B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA", 16)
MESSAGE = b"message digest"


def test_sm3_published_vectors() -> None:
    assert crypto.sm3_hex(b"abc") == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert crypto.sm3_hex(b"abcd" * 16) == (
        "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
    )
    assert crypto.sm3_digest(b"abc").hex() == crypto.sm3_hex(b"abc")


def test_sm4_published_block_vector() -> None:
    key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()
    assert (enc.update(key) + enc.finalize()).hex() == "681edf34d206965e86b3e94f536e4246"


def test_sm4_gcm_round_trip_and_tampering() -> None:
    key = os.urandom(16)
    blob = crypto.sm4_gcm_encrypt(key, "短信网关密钥".encode(), b"header")
    assert len(blob) == 12 + len("短信网关密钥".encode()) + 16
    assert crypto.sm4_gcm_decrypt(key, blob, b"header").decode() == "短信网关密钥"
    assert crypto.sm4_gcm_encrypt(key, b"x", b"h") != crypto.sm4_gcm_encrypt(key, b"x", b"h")
    flipped = bytearray(blob)
    flipped[14] ^= 1
    for bad_blob, bad_key, aad in (
        (bytes(flipped), key, b"header"),  # ciphertext altered
        (blob[:-1] + bytes([blob[-1] ^ 1]), key, b"header"),  # tag altered
        (blob, key, b"other"),  # associated data differs
        (blob, os.urandom(16), b"header"),  # another key
        (blob[:20], key, b"header"),  # truncated
    ):
        with pytest.raises(CryptoError):
            crypto.sm4_gcm_decrypt(bad_key, bad_blob, aad)


def _ring(tmp_path: Path) -> crypto.Keyring:
    crypto.generate_keys(tmp_path / "keys")
    return crypto.load_keyring(tmp_path / "keys", environ={})


def test_secret_envelopes(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    token = crypto.encrypt_secret("smtp://duty:pa55@mail.gov.cn:465", ring)
    assert token.startswith(f"sm4gcm:v1:{ring.sm4_active_id}:") and "pa55" not in token
    assert crypto.envelope_key_id(token) == ring.sm4_active_id
    assert crypto.decrypt_secret(token, ring) == "smtp://duty:pa55@mail.gov.cn:465"
    assert crypto.decrypt_secret("plain, from before", ring) == "plain, from before"
    assert crypto.decrypt_optional(None, ring) is None
    # the header is authenticated: moving the value to another key id does not decrypt
    other = crypto.Keyring(sm4={"k2": os.urandom(16), **ring.sm4}, sm4_active_id="k2")
    moved = token.replace(f":{ring.sm4_active_id}:", ":k2:")
    with pytest.raises(CryptoError, match="does not authenticate"):
        crypto.decrypt_secret(moved, other)
    with pytest.raises(CryptoError, match="not in the key ring"):
        crypto.decrypt_secret(token, crypto.EMPTY_KEYRING)
    with pytest.raises(CryptoError, match="no active SM4 data key"):
        crypto.encrypt_secret("x", crypto.EMPTY_KEYRING)
    with pytest.raises(CryptoError, match="malformed"):
        crypto.decrypt_secret("sm4gcm:v1:no-payload", ring)


def test_sm2_published_signature_verifies() -> None:
    private = crypto.sm2_private_from_int(D)
    numbers = private.public_key().public_numbers()
    assert (numbers.x, numbers.y) == (QX, QY)  # Q = dG
    public = crypto.sm2_public_from_point(QX, QY)
    signature = crypto.sm2_signature_from_rs(R, S)
    assert signature[0] == 0x30  # DER SEQUENCE (GM/T 0009)
    assert crypto.sm2_verify(public, MESSAGE, signature)
    assert not crypto.sm2_verify(public, b"message digesT", signature)
    assert not crypto.sm2_verify(public, MESSAGE, crypto.sm2_signature_from_rs(R, S + 1))
    assert not crypto.sm2_verify(public, MESSAGE, crypto.sm2_signature_from_rs(R + 1, S))
    assert not crypto.sm2_verify(public, MESSAGE, b"\x30\x02garbage")


def test_sm2_sign_verify_round_trips_and_tampering() -> None:
    key = crypto.generate_sm2_key()
    other = crypto.generate_sm2_key()
    body = "告警 #7: 燃气浓度超限".encode()
    sig = crypto.sm2_sign(key, body)
    assert sig != crypto.sm2_sign(key, body)  # randomised k
    public = crypto.load_sm2_public_pem(crypto.sm2_public_pem(key))
    assert crypto.sm2_verify(public, body, sig)
    assert not crypto.sm2_verify(public, body + b"!", sig)
    assert not crypto.sm2_verify(other.public_key(), body, sig)
    broken = bytearray(sig)
    broken[-1] ^= 1
    assert not crypto.sm2_verify(public, body, bytes(broken))
    reloaded = crypto.load_sm2_private_pem(crypto.sm2_private_pem(key))
    assert crypto.sm2_verify(public, body, crypto.sm2_sign(reloaded, body))


def test_signature_header_for_webhooks(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    body = b'{"alert_id": 7}'
    header = crypto.signature_header(ring, body, 1_764_144_000)
    assert header.startswith(f"keyid={ring.sm2_active_id},t=1764144000,sm2=")
    public = ring.sm2_public[ring.sm2_active_id]
    assert crypto.verify_signature_header(public, header, body, 1_764_144_010)
    assert not crypto.verify_signature_header(public, header, body + b" ", 1_764_144_010)
    assert not crypto.verify_signature_header(public, header, body, 1_764_144_301)  # replay
    forged = header.replace("t=1764144000", "t=1764144100")
    assert not crypto.verify_signature_header(public, forged, body, 1_764_144_100)
    assert not crypto.verify_signature_header(public, "garbage", body, 1_764_144_000)


def test_signed_files_verify_here_and_with_openssl(tmp_path: Path) -> None:
    ring = _ring(tmp_path)
    export = tmp_path / "pipes.geojson"
    export.write_text('{"type": "FeatureCollection", "features": []}\n')
    sig = crypto.sign_file(export, ring)
    assert sig == tmp_path / "pipes.geojson.sig"
    assert ring.sm2_active_id is not None
    pub = crypto.sm2_public_path(tmp_path / "keys", ring.sm2_active_id)
    assert crypto.verify_file(export, sig, pub.read_bytes())
    # an independent implementation agrees (OpenSSL 3: SM2 with SM3 and the default ID)
    cmd = ["openssl", "dgst", "-sm3", "-verify", str(pub), "-signature", str(sig)]
    distid = ["-sigopt", "distid:1234567812345678"]
    ok = subprocess.run([*cmd, *distid, str(export)], capture_output=True, text=True)
    assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stderr
    export.write_text('{"type": "FeatureCollection", "features": [1]}\n')
    assert not crypto.verify_file(export, sig, pub.read_bytes())
    bad = subprocess.run([*cmd, *distid, str(export)], capture_output=True, text=True)
    assert bad.returncode != 0


def test_key_files_lifecycle_and_permissions(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    first = crypto.generate_keys(keys)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    private = crypto.sm2_private_path(keys, first["sm2"])
    data = crypto.sm4_path(keys, first["sm4"])
    for path in (private, data):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(data.read_bytes())) == 16
    assert b"PRIVATE KEY" in private.read_bytes()
    assert b"PUBLIC KEY" in crypto.sm2_public_path(keys, first["sm2"]).read_bytes()

    second = crypto.generate_keys(keys)  # rotation
    ring = crypto.load_keyring(keys, environ={})
    assert (ring.sm2_active_id, ring.sm4_active_id) == (second["sm2"], second["sm4"])
    assert set(ring.sm4) == {first["sm4"], second["sm4"]}
    with pytest.raises(CryptoError, match="is active"):
        crypto.revoke_key(keys, second["sm4"])
    assert crypto.revoke_key(keys, first["sm4"]) == "sm4"
    assert crypto.revoke_key(keys, first["sm2"]) == "sm2"
    assert not data.exists() and not private.exists()
    ring = crypto.load_keyring(keys, environ={})
    assert first["sm4"] not in ring.sm4 and first["sm2"] not in ring.sm2_public
    listed = {(k.key_id, k.kind): (k.active, k.revoked) for k in crypto.list_keys(keys)}
    assert listed == {
        (first["sm2"], "sm2"): (False, True),
        (first["sm4"], "sm4"): (False, True),
        (second["sm2"], "sm2"): (True, False),
        (second["sm4"], "sm4"): (True, False),
    }
    with pytest.raises(CryptoError, match="no key"):
        crypto.revoke_key(keys, "19990101-000000")

    # a private key others may read is refused, with the file and the fix named
    crypto.sm4_path(keys, second["sm4"]).chmod(0o644)
    with pytest.raises(KeyPermissionError, match=r"mode 0644.*chmod 600"):
        crypto.load_keyring(keys, environ={})
    crypto.sm4_path(keys, second["sm4"]).chmod(0o600)
    crypto.sm2_private_path(keys, second["sm2"]).chmod(0o640)
    with pytest.raises(KeyPermissionError, match=f"sm2-signing-{second['sm2']}.pem"):
        crypto.load_keyring(keys, environ={})


def test_sm4_key_from_an_environment_secret(tmp_path: Path) -> None:
    raw = os.urandom(16)
    env = {"CITYOPS_SM4_KEY": base64.b64encode(raw).decode(), "CITYOPS_SM4_KEY_ID": "k8s-1"}
    ring = crypto.load_keyring(None, environ=env)
    assert ring.active_sm4() == ("k8s-1", raw) and not ring.can_sign
    token = crypto.encrypt_secret("+8613800000000", ring)
    assert token.startswith("sm4gcm:v1:k8s-1:")
    # with a key directory too: the environment's key encrypts, the files' keys still decrypt
    old = _ring(tmp_path)
    old_token = crypto.encrypt_secret("old", old)
    both = crypto.load_keyring(tmp_path / "keys", environ=env)
    assert both.sm4_active_id == "k8s-1" and both.can_sign
    assert crypto.decrypt_secret(old_token, both) == "old"
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(CryptoError, match="CITYOPS_SM4_KEY"):
            crypto.load_keyring(None, environ={"CITYOPS_SM4_KEY": bad})


def test_chain_links_are_canonical() -> None:
    at = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    shanghai = at.astimezone(timezone(timedelta(hours=8)))
    a = crypto.chain_link("sm3", "", [7, at, "zhang.wei", {"b": 1, "a": "二"}])
    assert a == crypto.chain_link("sm3", "", [7, shanghai, "zhang.wei", {"a": "二", "b": 1}])
    assert len(a) == 64
    assert a != crypto.chain_link("sm3", "x", [7, at, "zhang.wei", {"b": 1, "a": "二"}])
    assert a != crypto.chain_link("sm3", "", [7, at, "li.na", {"b": 1, "a": "二"}])
    assert a != crypto.chain_link("sha256", "", [7, at, "zhang.wei", {"b": 1, "a": "二"}])
