"""Timestamps between the engine (epoch microseconds) and PostgreSQL (timestamptz)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ts_from_us(ts_us: int) -> datetime:
    return datetime.fromtimestamp(ts_us / 1e6, UTC)


def us_from_ts(ts: datetime) -> int:
    """Exact to the microsecond (no float on the way)."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def finite(x: float | None) -> float | None:
    """NULL for a missing or non-finite number (a limit removed while its alert was active)."""
    return x if x is not None and math.isfinite(x) else None
