"""The one way the tests wait for a condition (built on the kernel's ``wait_until``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from cityops.kernel.clock import wait_until

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T],
    timeout_s: float = 15.0,
    *,
    interval_s: float = 0.05,
    what: str = "",
    tolerate: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``condition`` until it returns something truthy and return that; fail the test
    after ``timeout_s`` saying ``what`` it waited for and the last value seen."""
    last: list[object] = []

    def probe() -> T:
        value = condition()
        last[:] = [value]
        return value

    value = wait_until(probe, timeout_s, interval_s=interval_s, tolerate=tolerate)
    if value is None or not value:
        seen = repr(last[0]) if last else "no value (it raised)"
        raise AssertionError(
            f"timed out after {timeout_s} s waiting for {what or condition}: {seen}"
        )
    return value
