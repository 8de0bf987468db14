"""Fixtures of the alerts tests: sensors in the test database, an alert-topic subscriber, and
the engine as a subprocess (``python -m cityops alerts``)."""

from __future__ import annotations

import queue
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from cityops.kernel.settings import Settings, parse_mqtt_url
from sensors.topics import alert_filter
from tests.conftest import ROOT, cityops_cmd, settings_env


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


@dataclass
class Subscriber:
    """An MQTT client collecting every message on a filter (waits for SUBACK before use)."""

    url: str
    topic_filter: str
    messages: queue.Queue[tuple[str, bytes, float]] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        ep = parse_mqtt_url(self.url)
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.username_pw_set(ep.username, ep.password)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic_filter, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.put(
            (m.topic, m.payload, time.monotonic())
        )
        self.client.connect(ep.host, ep.port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError("no SUBACK")

    def get(self, timeout: float = 5.0) -> tuple[str, bytes, float]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def alert_subscriber(settings: Settings) -> Iterator[Subscriber]:
    """Subscribed to ``city/alerts/#`` as cityops-admin."""
    sub = Subscriber(settings.mqtt_url, alert_filter())
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
        deadline = time.monotonic() + timeout
        while not ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
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


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
