"""PostgreSQL connections with timeouts, so a network cut raises instead of hanging for ever."""

from __future__ import annotations

import psycopg

# seconds; statement_timeout in ms. Keepalives detect a dead peer in about 10 + 3*5 s.
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 30_000
KEEPALIVE_KWARGS: dict[str, object] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


class NoDatabaseConfigured(ValueError):
    """No database address: neither CITYOPS_DATABASE_URL nor a stack of `cityops up`."""


def connect(
    url: str,
    *,
    autocommit: bool = False,
    statement_timeout_ms: int = STATEMENT_TIMEOUT_MS,
    application_name: str = "cityops",
) -> psycopg.Connection:
    if not url:
        raise NoDatabaseConfigured(
            "CITYOPS_DATABASE_URL is not set and no stack of `cityops up` was found in this"
            " checkout's var/stack: start one with `cityops up`, or export"
            " CITYOPS_DATABASE_URL=postgresql://... for a database of your own"
        )
    # libpq connection parameters, passed through psycopg's **kwargs
    params = {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": application_name,
        "options": f"-c statement_timeout={statement_timeout_ms} -c timezone=UTC",
        **KEEPALIVE_KWARGS,
    }
    return psycopg.connect(url, autocommit=autocommit, **params)  # type: ignore[arg-type]


def has_timescaledb(conn: psycopg.Connection) -> bool:
    """True where the TimescaleDB extension is installed or can be created."""
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    return row is not None
