"""`cityops tokens ...`: API tokens for machine clients (wiring only; rules in access.tokens).

Mounted by cityops/shell/cli.py: ``from access.cli import register; register(tokens_app)``.
The secret is printed once, on standard output, and is not stored; every create and revoke is
written to ``security_audit`` with the operating-system user who ran the command.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="API tokens for QGIS, GDAL/OWSLib and other systems (shown once, stored hashed).",
    no_args_is_help=True,
)
console = Console(stderr=True)


def _connect():
    from cityops.kernel.db import connect
    from cityops.kernel.settings import Settings

    return connect(Settings().database_url, autocommit=True)  # type: ignore[call-arg]


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary uid)
        return "cli:unknown"


@app.command("create")
def create_cmd(
    username: Annotated[str, typer.Argument(help="The account the token belongs to.")],
    name: Annotated[str, typer.Option(help="What the token is for, e.g. 'QGIS on pc-17'.")],
    days: Annotated[int, typer.Option(help="Days until it expires (1-365).")] = 90,
    layers: Annotated[
        str,
        typer.Option(help="Comma-separated layers it is limited to (default: all the role reads)."),
    ] = "",
    role: Annotated[
        str | None, typer.Option(help="A lesser role than the account's (default: the account's).")
    ] = None,
) -> None:
    """Create a token and print it once (keep it in QGIS's authentication database or a
    secret store; it cannot be shown again)."""
    from access.tokens import TokenError, write_token

    with _connect() as conn:
        try:
            secret, token = write_token(
                conn,
                username,
                name,
                actor=_actor(),
                now=datetime.now(UTC),
                days=days,
                layers=layers,
                role=role,
            )
        except TokenError as exc:
            console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None
    console.print(
        f"token {token.id} for {token.username} ({token.role}"
        f"{'; layers ' + ','.join(token.layers) if token.layers else ''}),"
        f" expires {token.expires_at:%Y-%m-%d}. It is shown once:"
    )
    typer.echo(secret)


@app.command("list")
def list_cmd(
    user: Annotated[str | None, typer.Option(help="Only this account's tokens.")] = None,
) -> None:
    """The tokens (never the secret): id, owner, name, role, layers, state, expiry, last use."""
    from rich.table import Table

    from access.tokens import read_tokens

    now = datetime.now(UTC)
    with _connect() as conn:
        tokens = read_tokens(conn, user)
    table = Table("id", "user", "name", "role", "layers", "state", "expires", "last used")
    for t in tokens:
        table.add_row(
            str(t.id),
            t.username,
            t.name,
            t.role,
            ",".join(t.layers) or "(all of the role)",
            t.state(now),
            f"{t.expires_at:%Y-%m-%d}",
            f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "-",
        )
    Console(width=160).print(table)


@app.command("revoke")
def revoke_cmd(
    token_id: Annotated[int, typer.Argument(help="The token's id (tokens list).")],
) -> None:
    """Revoke a token; it stops working at the next request."""
    from access.tokens import revoke_token

    with _connect() as conn:
        if not revoke_token(conn, token_id, actor=_actor(), now=datetime.now(UTC)):
            console.print(f"[red]no active token {token_id}[/]")
            raise typer.Exit(2)
    console.print(f"token {token_id} revoked")


def register(parent: typer.Typer) -> None:
    """Add these commands to the shell's `tokens` group."""
    for cmd in app.registered_commands:
        parent.registered_commands.append(cmd)
