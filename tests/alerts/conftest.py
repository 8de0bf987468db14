"""Fixtures of the alerts tests: sensors in the test database, an alert-topic subscriber, and
the engine as a subprocess (``python -m cityops alerts``)."""

from __future__ import annotations

import math
import signal
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import psycopg
import pytest

from alerts.detectors import StreamConfig
from alerts.engine import Engine, SensorInfo
from cityops.kernel.clock import wait_until
from cityops.kernel.crypto import Keyring, generate_keys, load_keyring
from cityops.kernel.settings import Settings
from sensors.catalogue import SENSOR_TYPES
from sensors.payload import Reading
from sensors.topics import alert_filter
from tests.conftest import ROOT, cityops_cmd, settings_env
from tests.listening import Recorder

S = 1_000_000  # us per second
MIN = 60 * S
T0 = 1_764_115_200 * S  # 2025-11-26 00:00 UTC = 08:00 in Chengdu


def stream_engine(
    streams: dict[str, StreamConfig], stype: str = "water_pressure", utility: str = "water"
) -> Engine:
    """An engine watching one sensor ``s1`` of type ``stype`` (its catalogue limits, 60 s
    interval) with the given detectors per quantity."""
    limits = {q.quantity: q for q in SENSOR_TYPES[stype].limits}
    return Engine({"s1": SensorInfo("s1", utility, stype, limits, 60.0, streams)})


def feed(
    eng: Engine, quantity: str, values: list[float], start_min: int = 0
) -> list[tuple[str, str, int]]:
    """One reading a minute from T0 + ``start_min``, each its own batch, committed; returns
    (event, kind, minute) of every change."""
    out = []
    for i, v in enumerate(values):
        ev = eng.evaluate([Reading("s1", quantity, T0 + (start_min + i) * MIN, v, None)])
        eng.commit(ev)
        out += [(c.event, c.kind, start_min + i) for c in ev.changes]
    return out


def shuffle_with_noise(
    ts: list[int], values: list[float], seed: int = 3
) -> tuple[list[int], list[float]]:
    """The same series delivered out of order, with duplicates and NaN gaps mixed in."""
    rng = np.random.default_rng(seed)
    ts2 = list(ts) + ts[::7]  # duplicates: same timestamp, same value
    v2 = list(values) + values[::7]
    ts2 += [ts[i] for i in range(3, len(ts), 11)]  # NaN readings at existing timestamps
    v2 += [math.nan] * len(range(3, len(ts), 11))
    order = rng.permutation(len(ts2))
    return [ts2[i] for i in order], [v2[i] for i in order]


def batch_events(
    eng: Engine, quantity: str, ts: list[int], values: list[float]
) -> list[tuple[str, str, int, float]]:
    """All readings as one batch: (event, kind, minute after T0, value) of every change."""
    ev = eng.evaluate(
        [Reading("s1", quantity, t, v, None) for t, v in zip(ts, values, strict=True)]
    )
    return [(c.event, c.kind, (c.ts_us - T0) // MIN, c.value) for c in ev.changes]


def add_sensors(db_url: str, sensors: list[tuple[str, str, str]]) -> None:
    """Insert ``(sensor_id, utility, sensor_type)`` rows at Chengdu's centre."""
    with psycopg.connect(db_url) as conn:
        for sid, utility, stype in sensors:
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom)"
                " VALUES (%s, %s, %s, %s, ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))",
                (sid, utility, stype, sid),
            )


def thresholds_only(db_url: str) -> None:
    """Switch off the default streaming detectors (sensors.catalogue.DEFAULT_DETECTORS), for
    tests of the engine's mechanics that count threshold alerts."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE alert_detector_settings SET enabled = false")


@pytest.fixture
def alert_subscriber(settings: Settings) -> Iterator[Recorder]:
    """Subscribed to ``city/alerts/#`` as cityops-admin."""
    sub = Recorder(settings.mqtt_url, alert_filter())
    yield sub
    sub.close()


class EngineProcess:
    """``python -m cityops alerts`` with the test's settings; stderr kept for assertions."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []

    def start(self, timeout: float = 20.0, *args: str) -> None:
        self.lines = []
        self.proc = subprocess.Popen(
            cityops_cmd("alerts", *args),
            env=settings_env(self.settings),
            cwd=ROOT,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        ready = threading.Event()

        def pump(proc: subprocess.Popen[str]) -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                self.lines.append(line)
                if "alerts engine ready" in line:
                    ready.set()

        threading.Thread(target=pump, args=(self.proc,), daemon=True).start()
        proc = self.proc
        wait_until(lambda: ready.is_set() or proc.poll() is not None, timeout, interval_s=0.1)
        if not ready.is_set():  # it exited, or is still not ready (a test may expect that)
            raise RuntimeError("alert engine did not start:\n" + "".join(self.lines))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        self.proc = None
        return rc

    def log(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def engine(settings: Settings) -> Iterator[EngineProcess]:
    eng = EngineProcess(settings)
    yield eng
    if eng.proc is not None and eng.proc.poll() is None:
        eng.proc.kill()
        eng.proc.wait(10)


class HttpSink:
    """A local HTTP server that records requests and fails the first ``fail_first`` of each path."""

    def __init__(self, fail_first: dict[str, int] | None = None) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.fail_first = dict(fail_first or {})
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.requests.append((self.path, dict(self.headers), body))
                left = sink.fail_first.get(self.path, 0)
                if left:
                    sink.fail_first[self.path] = left - 1
                    self.send_response(503)
                else:
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    """A fresh key directory (SM2 signing key, SM4 data key, 0600) and its key ring."""
    generate_keys(tmp_path / "keys")
    return load_keyring(tmp_path / "keys", environ={})
