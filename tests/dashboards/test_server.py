"""The dashboard process serves on waitress (a production WSGI server), not Flask's development
server: its Server header, parallel requests, a request body limit, and a clean SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.dashboards.conftest import dashboard_settings, start_dashboard

pytestmark = pytest.mark.browser


def test_served_by_waitress(dash_server):
    with urllib.request.urlopen(dash_server.url + "/", timeout=10) as resp:
        assert resp.headers["Server"] == "cityops"  # not Werkzeug/x.y Python/z
        assert "Content-Security-Policy" in resp.headers
    log = dash_server.log_path.read_text(errors="replace")
    assert "waitress, 8 threads" in log and "Werkzeug" not in log

    # 24 clients at once (three walls' worth of callbacks): every one answered
    def layout(_i: int) -> int:
        with urllib.request.urlopen(dash_server.url + "/_dash-layout", timeout=30) as resp:
            json.loads(resp.read())
            return resp.status

    with ThreadPoolExecutor(24) as pool:
        assert list(pool.map(layout, range(24))) == [200] * 24

    # a body announced beyond the limit is refused before anyone reads it
    host, port = dash_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /_dash-update-component HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{" % (11 * 1024 * 1024)
        )
        status = sock.recv(200).split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 413"), status


def test_sigterm_stops_the_server(stack, dash_db, tmp_path):
    server = start_dashboard(dashboard_settings(stack, dash_db), tmp_path)
    try:
        server.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert server.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(timeout=10)
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/", timeout=2)
