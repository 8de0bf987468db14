"""What every benchmark prints before its figures: the machine and what it was doing."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def describe_machine() -> dict[str, str]:
    """CPU, memory, OS, Python, the packages and servers on the hot path, and the load."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    mosquitto = subprocess.run(
        ["mosquitto", "-h"], capture_output=True, text=True, check=False
    ).stdout.splitlines()

    def pkg(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return {
        "cpu": f"{cpu_model()} x {os.cpu_count()}",
        "memory": f"{mem_gb:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "paho-mqtt": pkg("paho-mqtt"),
        "aiomqtt": pkg("aiomqtt"),
        "psycopg": pkg("psycopg"),
        "mosquitto": mosquitto[0] if mosquitto else "?",
        "load average (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def machine_line() -> str:
    """The same on one line."""
    d = describe_machine()
    return f"{d['cpu']}, Python {d['python']}, load average {d['load average (1, 5, 15 min)']}"
