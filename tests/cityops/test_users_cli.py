import subprocess

import psycopg

from cityops.kernel.settings import Settings
from tests.conftest import ROOT, cityops_cmd, settings_env


def _users(settings: Settings, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cityops_cmd("users", *args),
        env=settings_env(settings),
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_accounts_are_created_listed_and_disabled_from_the_cli(settings: Settings) -> None:
    r = _users(
        settings,
        "add",
        "zhang.wei",
        "--role",
        "emergency",
        "--password-stdin",
        stdin="correct horse battery\n",
    )
    assert r.returncode == 0, r.stderr
    listed = _users(settings, "list")
    assert "zhang.wei" in listed.stdout and "emergency" in listed.stdout
    assert "argon2" not in listed.stdout
    with psycopg.connect(settings.database_url) as conn:
        stored = conn.execute(
            "SELECT password_hash FROM dashboard_users WHERE username = 'zhang.wei'"
        ).fetchone()[0]
    assert stored.startswith("$argon2id$") and "correct horse" not in stored

    assert _users(settings, "disable", "zhang.wei").returncode == 0
    with psycopg.connect(settings.database_url) as conn:
        assert (
            conn.execute(
                "SELECT disabled FROM dashboard_users WHERE username = 'zhang.wei'"
            ).fetchone()[0]
            is True
        )
    assert _users(settings, "disable", "nobody").returncode == 2


def test_weak_passwords_bad_names_and_roles_are_refused(settings: Settings) -> None:
    assert (
        _users(
            settings, "add", "li", "--role", "admin", "--password-stdin", stdin="short\n"
        ).returncode
        == 2
    )
    r = _users(
        settings, "add", "li", "--role", "mayor", "--password-stdin", stdin="long enough password\n"
    )
    assert r.returncode == 2 and "unknown role" in r.stderr
    r = _users(
        settings,
        "add",
        "Li Lei<script>",
        "--role",
        "admin",
        "--password-stdin",
        stdin="long enough password\n",
    )
    assert r.returncode == 2
