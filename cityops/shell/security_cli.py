"""``cityops keys ...``, ``cityops verify`` and ``cityops audit verify``: the key lifecycle of
the national cryptography (SM2 signing keys, SM4 data keys; docs/security.md "Keys", decision
0072), signature checks for receivers of exports and webhooks, and the audit chains' check.

The key directory is ``CITYOPS_KEYS_DIR``, or ``<stack dir>/keys`` (``var/stack/keys``) when it
is empty, the folder ``cityops up`` keeps its servers in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from cityops.kernel.settings import Settings

console = Console(stderr=True)

keys_app = typer.Typer(
    help="SM2 signing and SM4 data keys: generate, list, rotate, revoke, export the public key,"
    " re-encrypt stored secrets (docs/security.md).",
    no_args_is_help=True,
)
audit_app = typer.Typer(help="The SM3 hash chains over the audit logs.", no_args_is_help=True)

KINDS = ("sm2", "sm4")


def register(app: typer.Typer) -> None:
    """Mount ``keys``, ``audit`` and ``verify`` on the ``cityops`` command."""
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
    app.command("verify")(verify)


def _settings() -> Settings:
    from cityops.shell.stack import command_settings

    return command_settings()


def keys_dir() -> Path:
    """``CITYOPS_KEYS_DIR``, or the stack's ``keys`` folder."""
    settings = _settings()
    if settings.keys_dir:
        return Path(settings.keys_dir)
    from cityops.shell.paths import PROJECT_ROOT
    from cityops.shell.stack import default_stack_dir

    return default_stack_dir(PROJECT_ROOT) / "keys"


def _kinds(kind: str) -> tuple[str, ...]:
    if kind == "all":
        return KINDS
    if kind not in KINDS:
        raise typer.BadParameter(f"--kind must be sm2, sm4 or all, not {kind!r}")
    return (kind,)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(1)


KindOption = Annotated[str, typer.Option(help="sm2 (signing), sm4 (data) or all")]


@keys_app.command("generate")
def generate(kind: KindOption = "all") -> None:
    """Make new keys (0600 files) and make them active; earlier keys stay for verifying and
    decrypting until revoked. The first run on an installation, and every rotation."""
    from cityops.kernel.crypto import CryptoError, generate_keys

    where = keys_dir()
    try:
        made = generate_keys(where, kinds=_kinds(kind))
    except (CryptoError, OSError) as exc:
        raise _fail(str(exc)) from None
    for k, key_id in made.items():
        typer.echo(f"{k} {key_id} active")
    console.print(f"keys in {where}")
    if "sm2" in made:
        console.print(f"publish {where}/sm2-signing-{made['sm2']}.pub.pem to the receivers")
    if "sm4" in made:
        console.print("then `cityops keys reencrypt` moves stored secrets to the new data key")


@keys_app.command("rotate")
def rotate(kind: KindOption = "all") -> None:
    """New active keys of ``kind``; the old ones still verify and decrypt until revoked
    (``cityops keys reencrypt`` first for data keys)."""
    generate(kind)


@keys_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """Every key of the key directory: id, kind, active, revoked (never a key's bytes)."""
    import json

    from cityops.kernel.crypto import list_keys

    where = keys_dir()
    found = list_keys(where)
    if not found:
        console.print(f"no keys in {where} (`cityops keys generate`)")
    for k in found:
        state = "active" if k.active else "revoked" if k.revoked else "kept"
        if as_json:
            typer.echo(json.dumps({"key_id": k.key_id, "kind": k.kind, "state": state}))
        else:
            typer.echo(f"{k.kind} {k.key_id} {state}")


@keys_app.command("revoke")
def revoke(
    key_id: str,
    force: Annotated[
        bool, typer.Option(help="revoke a data key although stored values still use it")
    ] = False,
) -> None:
    """Revoke a key that is not active: its secret file is deleted, its id listed as revoked.
    A data key still encrypting stored secrets is refused (run `cityops keys reencrypt`)."""
    from cityops.kernel.crypto import CryptoError, list_keys, revoke_key

    where = keys_dir()
    kind = next((k.kind for k in list_keys(where) if k.key_id == key_id), None)
    if kind == "sm4" and not force:
        in_use = _values_under(key_id)
        if in_use:
            raise _fail(
                f"{in_use} stored secrets still use data key {key_id}: run `cityops keys"
                " reencrypt` first (or --force, and lose them)"
            )
    try:
        revoked = revoke_key(where, key_id)
    except CryptoError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"{revoked} {key_id} revoked")


def _values_under(key_id: str) -> int:
    from alerts.api import count_route_keys
    from cityops.kernel.db import connect

    settings = _settings()
    if not settings.database_url:
        raise _fail(
            "CITYOPS_DATABASE_URL is not set: cannot check that no stored secret still uses"
            " this key (set it, or --force)"
        )
    with connect(settings.database_url) as conn:
        return count_route_keys(conn).get(key_id, 0)


@keys_app.command("export-public")
def export_public(
    key_id: Annotated[str, typer.Option(help="the SM2 key; default: the active one")] = "",
    output: Annotated[Path | None, typer.Option("--out", help="file (default: stdout)")] = None,
) -> None:
    """The SM2 public key (PEM) for receivers of signed exports and webhooks."""
    from cityops.kernel.crypto import read_active, read_revoked, sm2_public_path

    where = keys_dir()
    key_id = key_id or read_active(where).get("sm2", "")
    if not key_id:
        raise _fail(f"no active SM2 key in {where} (`cityops keys generate`)")
    if key_id in read_revoked(where):
        raise _fail(f"SM2 key {key_id} is revoked")
    path = sm2_public_path(where, key_id)
    if not path.exists():
        raise _fail(f"no SM2 key {key_id} in {where}")
    if output is None:
        typer.echo(path.read_text(), nl=False)
    else:
        output.write_bytes(path.read_bytes())
        console.print(f"wrote {output}")


@keys_app.command("sign")
def sign(file: Path) -> None:
    """Sign a file with the active SM2 key: writes ``<file>.sig`` (DER)."""
    from cityops.kernel.crypto import CryptoError, load_keyring, sign_file

    try:
        sig = sign_file(file, load_keyring(keys_dir()))
    except (CryptoError, OSError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(str(sig))


@keys_app.command("reencrypt")
def reencrypt() -> None:
    """Encrypt every stored secret (notification routes' targets, recipients, HMAC keys) with
    the active data key: plain values from before encryption, and values under older keys.
    Run after an upgrade to this release and after each data-key rotation."""
    from alerts.api import reencrypt_routes
    from cityops.kernel.crypto import CryptoError, load_keyring
    from cityops.kernel.db import connect

    try:
        ring = load_keyring(keys_dir())
        with connect(_settings().database_url) as conn:
            changed, total = reencrypt_routes(conn, ring)
    except CryptoError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"notification routes: {changed} of {total} re-encrypted with {ring.sm4_active_id}")


def verify(
    file: Path,
    signature: Annotated[Path, typer.Option(help="the DER signature (<file>.sig)")],
    public_key: Annotated[Path, typer.Option(help="the sender's SM2 public key (PEM)")],
) -> None:
    """Check a file's SM2 signature (SM3, default ID) against the sender's public key: exit 0
    when it verifies, 1 when the file or signature was altered or the key is another's."""
    from cityops.kernel.crypto import CryptoError, verify_file

    try:
        ok = verify_file(file, signature, public_key.read_bytes())
    except (CryptoError, OSError) as exc:
        raise _fail(str(exc)) from None
    if not ok:
        raise _fail(f"{file}: signature does NOT verify")
    typer.echo(f"{file}: signature OK (SM2/SM3)")


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute every audit chain (alert actions; security events: tokens, exports, roles;
    logins and the admin page's changes): "N entries, chain intact" (exit 0), or the first
    entry edited, removed or reordered (exit 1)."""
    from access.accounts import DASHBOARD_AUDIT_CHAIN
    from alerts.api import AUDIT_CHAIN
    from cityops.kernel.crypto import SECURITY_AUDIT_CHAIN, ChainBroken, verify_chain
    from cityops.kernel.db import connect

    broken = False
    with connect(_settings().database_url) as conn:
        for chain in (AUDIT_CHAIN, SECURITY_AUDIT_CHAIN, DASHBOARD_AUDIT_CHAIN):
            try:
                n = verify_chain(conn, chain)
            except ChainBroken as exc:
                typer.echo(f"{chain.table}: BROKEN: entry {exc.entry_id} {exc.reason}")
                broken = True
                continue
            typer.echo(f"{chain.table}: {n} entries, chain intact")
    if broken:
        raise typer.Exit(1)
