"""Commands find the running stack's settings by themselves, and a missing or unreachable
database is a message, never a traceback (issue 16 item 6)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cityops.shell import cli, stack


def _no_database_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("CITYOPS_DATABASE_URL", "CITYOPS_MQTT_URL", "CITYOPS_KEYS_DIR"):
        monkeypatch.delenv(key, raising=False)


def test_a_command_takes_the_stack_settings_of_this_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_database_env(monkeypatch)
    monkeypatch.setattr(stack, "default_stack_dir", lambda root, name="stack": tmp_path)
    found = {"CITYOPS_DATABASE_URL": "postgresql://postgres:x@127.0.0.1:1/cityops"}
    monkeypatch.setattr(stack, "existing_stack_environment", lambda root: found)
    assert stack.adopt_stack_environment() is True
    assert stack.os.environ["CITYOPS_DATABASE_URL"] == found["CITYOPS_DATABASE_URL"]
    # a database of one's own, set in the environment, wins
    monkeypatch.setenv("CITYOPS_DATABASE_URL", "postgresql://elsewhere/db")
    assert stack.adopt_stack_environment() is False
    assert stack.os.environ["CITYOPS_DATABASE_URL"] == "postgresql://elsewhere/db"


def test_no_database_anywhere_is_a_message_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _no_database_env(monkeypatch)
    monkeypatch.setattr(stack, "default_stack_dir", lambda root, name="stack": tmp_path / "none")
    monkeypatch.setattr(sys, "argv", ["cityops", "users", "list"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "CITYOPS_DATABASE_URL is not set" in err and "cityops up" in err
    assert "Traceback" not in err


def test_an_unreachable_database_is_a_message_without_its_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a port nothing listens on (the discard port, refused on loopback)
    monkeypatch.setenv(
        "CITYOPS_DATABASE_URL", "postgresql://postgres:s3cret-pw@127.0.0.1:9/cityops"
    )
    monkeypatch.setattr(sys, "argv", ["cityops", "users", "list"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "cannot reach the database" in err and "s3cret-pw" not in err
    assert "Traceback" not in err


def test_commands_reach_a_stack_started_elsewhere_through_cityops_stack_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _no_database_env(monkeypatch)
    seen: list[Path] = []

    def found(root: Path) -> dict[str, str]:
        seen.append(root)
        return {"CITYOPS_DATABASE_URL": "postgresql://postgres:x@127.0.0.1:2/cityops"}

    monkeypatch.setattr(stack, "existing_stack_environment", found)
    monkeypatch.setenv("CITYOPS_STACK_DIR", str(tmp_path / "second"))
    assert stack.adopt_stack_environment() is True
    assert seen == [tmp_path / "second"]
