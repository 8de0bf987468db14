"""Time as the services use it: epoch microseconds for data, monotonic deadlines for waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta, timezone
from typing import TypeVar

T = TypeVar("T")

# China Standard Time (Asia/Shanghai has kept UTC+8 without daylight saving since 1991): the
# daily profiles of demand and of the sensors' rhythm are computed in Chengdu's local day
CHENGDU_UTC_OFFSET_S = 8 * 3600
CHENGDU_TZ = timezone(timedelta(seconds=CHENGDU_UTC_OFFSET_S), "CST")


def now_us() -> int:
    """The wall clock in epoch microseconds [us] (readings and receive times use it)."""
    return time.time_ns() // 1000


class Deadline:
    """A moment ``seconds`` from now on the monotonic clock: how long is left, and whether it
    has passed. One object instead of ``time.monotonic() + timeout`` arithmetic in every loop."""

    __slots__ = ("at",)

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left [s], never negative."""
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at


def wait_until(
    condition: Callable[[], T],
    timeout_s: float,
    *,
    interval_s: float = 0.05,
    tolerate: tuple[type[BaseException], ...] = (),
) -> T | None:
    """Call ``condition`` every ``interval_s`` until it returns something truthy and return
    that, or ``None`` after ``timeout_s``. Exceptions of the ``tolerate`` types count as "not
    yet" (a server still starting, a page still rendering)."""
    deadline = Deadline(timeout_s)
    while True:
        try:
            value = condition()
            if value:
                return value
        except tolerate:
            pass
        if deadline.passed():
            return None
        time.sleep(min(interval_s, deadline.left()) or interval_s)
