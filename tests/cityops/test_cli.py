import subprocess
import sys

import pytest

COMMANDS = [
    [],
    ["up"],
    ["migrate"],
    ["ingest"],
    ["alerts"],
    ["dashboard"],
    ["simulate"],
    ["sensors", "import"],
    ["gis", "load-districts"],
    ["status"],
    ["evaluate"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "cityops")
def test_every_command_explains_itself(command: list[str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cityops", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "Usage" in r.stdout
    # a sentence of help, not just the usage line
    assert len(r.stdout.split()) > 15


def test_a_bad_alert_partition_is_refused() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cityops", "alerts", "--partition", "3/2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "partition" in r.stderr
