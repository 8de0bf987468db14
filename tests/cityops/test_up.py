"""`cityops up` on a machine where CITYOPS_DATABASE_URL and CITYOPS_MQTT_URL are not set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import psycopg

from cityops.shell.stack import default_stack_dir
from tests.conftest import ROOT


def _owner(pid: int) -> str | int:
    """The user a process runs as: its name when it is the servers' user, else its uid."""
    import pwd

    uid = os.stat(f"/proc/{pid}").st_uid
    name = pwd.getpwuid(uid).pw_name
    return name if name == "cityops" else uid


def test_up_starts_everything_shows_live_data_and_stops_cleanly() -> None:
    stack_dir = default_stack_dir(ROOT, "up-test")
    shutil.rmtree(stack_dir, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYOPS_")}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cityops", "up", "--stack-dir", str(stack_dir)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # the dashboard URL, printed once everything runs
        assert url.startswith("http://127.0.0.1:"), (
            proc.stderr.read() if proc.poll() is not None else url
        )
        ready_s = time.monotonic() - started
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
            assert "成都城市运行管理中心" in resp.read().decode()

        secrets = json.loads((stack_dir / "secrets.json").read_text())
        db = (
            f"postgresql://postgres:{secrets['pg_password']}@127.0.0.1:{secrets['pg_port']}/cityops"
        )

        def counts() -> tuple[int, int, int, int]:
            with psycopg.connect(db) as conn:
                return tuple(
                    conn.execute(  # type: ignore[return-value]
                        "SELECT (SELECT count(*) FROM districts), (SELECT count(*) FROM sensors),"
                        " (SELECT count(*) FROM readings), (SELECT count(*) FROM dashboard_users)"
                    ).fetchone()
                )

        deadline = time.monotonic() + 60
        while counts()[2] == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        districts, sensors, readings, users = counts()
        assert (districts, users) == (20, 1)
        assert sensors >= 120
        assert readings > 0, "live data reached the database"
        assert ready_s < 120
        # started as root, the services run as the unprivileged servers' user
        services = subprocess.run(
            ["pgrep", "-P", str(proc.pid), "-f", "python.* cityops "],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert len(services) >= 4
        owners = {_owner(int(pid)) for pid in services}
        assert owners == ({"cityops"} if os.geteuid() == 0 else {os.getuid()}), owners
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(60)
    assert rc == 0
    # nothing left behind: the private servers and the services are gone
    left = subprocess.run(["pgrep", "-f", str(stack_dir)], capture_output=True, text=True).stdout
    assert left.strip() == ""
