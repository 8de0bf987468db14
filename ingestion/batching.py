"""Batches by size or age (pure: the caller passes the clock).

A batch closes when it holds ``max_readings`` readings or ``max_messages`` messages, or
``max_age_s`` after its first message arrived, whichever comes first. Messages stay in the batch
until it is committed, so that each one is acknowledged only afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ingestion.classify import Decoded, Rejection

M = TypeVar("M")


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_readings: int = 5000
    max_messages: int = 5000
    max_age_s: float = 0.010


@dataclass(slots=True)
class Item(Generic[M]):
    """One message and what became of it: decoded readings, or a rejection."""

    message: M
    topic: str
    payload: bytes
    received_us: int
    outcome: Decoded | Rejection


@dataclass(slots=True)
class Batch(Generic[M]):
    policy: BatchPolicy
    items: list[Item[M]] = field(default_factory=list)
    readings: int = 0
    opened_at: float | None = None  # monotonic seconds of the first message

    def add(self, item: Item[M], now: float) -> None:
        if self.opened_at is None:
            self.opened_at = now
        self.items.append(item)
        if isinstance(item.outcome, Decoded):
            self.readings += len(item.outcome.readings)

    def __len__(self) -> int:
        return len(self.items)

    def is_full(self) -> bool:
        return (
            self.readings >= self.policy.max_readings or len(self.items) >= self.policy.max_messages
        )

    def is_due(self, now: float) -> bool:
        """Full, or old enough to be written."""
        if not self.items:
            return False
        return self.is_full() or self.time_left(now) <= 0

    def time_left(self, now: float) -> float:
        """Seconds until the batch is due by age; ``max_age_s`` for an empty batch."""
        if self.opened_at is None:
            return self.policy.max_age_s
        return self.opened_at + self.policy.max_age_s - now


def split_batch(items: list[Item[M]]) -> tuple[list[Item[M]], list[Item[M]]]:
    """Halves of a batch, to find the one message the database refuses."""
    mid = len(items) // 2
    return items[:mid], items[mid:]
