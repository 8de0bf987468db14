"""The private database's socket, as another local account sees it (the broker's identities:
test_bus_identity.py)."""

import pytest

from cityops.shell.stack import LocalStack


@pytest.mark.parametrize("os_user", ["nobody", "root"])
def test_the_database_socket_admits_no_local_account_without_a_password(
    stack: LocalStack, os_user: str
) -> None:
    """`psql -h <socket dir> -U postgres` as another local account, or even as root with no
    password, is refused: the socket's folder is the servers' own (0700) and the socket
    authenticates with scram like TCP (no `trust`)."""
    import subprocess

    cmd = ["psql", "-h", str(stack.pg_run), "-p", str(stack.state.pg_port), "-U", "postgres"]
    cmd += ["-w", "-d", "postgres", "-c", "SELECT 1"]
    if os_user != "root":
        cmd = ["/usr/sbin/runuser", "-u", os_user, "--", *cmd]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )
    assert r.returncode != 0
    assert any(
        why in r.stderr
        for why in ("Permission denied", "no password supplied", "password authentication failed")
    ), r.stderr
    assert oct(stack.pg_run.stat().st_mode & 0o777) == "0o700"
