"""The production WSGI server every HTTP surface of cityops runs on (decision 0043): waitress,
pure Python, nothing to build on an offline government network."""

from __future__ import annotations

import signal
import threading
from typing import Any

THREADS = 8  # requests wait on PostgreSQL most of the time: more threads than cores
CONNECTION_LIMIT = 200  # walls and consoles keep their connections open
MAX_REQUEST_BYTES = 10 * 1024 * 1024  # a callback or a form is a few KiB; a lasso more
IDENT = "cityops"  # the Server header: no server name and version to fingerprint


def make_server(app: Any, host: str, port: int, *, threads: int = THREADS) -> Any:
    """``app`` on waitress, bound to ``host:port`` (0 picks a free port: see
    ``server.effective_port``) and ready to ``run()``; ``close()`` stops it."""
    from waitress.server import create_server

    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        connection_limit=CONNECTION_LIMIT,
        max_request_body_size=MAX_REQUEST_BYTES,
        channel_timeout=60,
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        ident=IDENT,
        clear_untrusted_proxy_headers=True,
    )


def serve_until_stopped(server: Any) -> None:
    """Run ``server`` until Ctrl-C or SIGTERM, then close its sockets."""

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt  # leaves server.run(); the sockets are closed below

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
