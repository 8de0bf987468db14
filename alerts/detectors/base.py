"""What a streaming detector is: a plug-in class owning its parameters and its per-key state.

A detector is configured once per sensor type and quantity (``configure``, from that type's row
of ``alert_detector_settings``, or from no row at all) and then stepped over every reading of
every key (sensor, quantity) with the state it keeps for that key. It answers with ``Signal``s,
each raising or clearing one alert kind. The engine (alerts/engine.py) knows no detector by
name: it runs the configured ones in registry order (alerts/detectors/__init__.py).

Values are in the quantity's canonical unit (sensors/quantities.py), times in epoch
microseconds [us]. The engine has already dropped what no detector should see: non-finite
values, and readings not newer than the key's last one.

What is made per reading (observations, per-key states) is a frozen ``msgspec.Struct``, ten
times quicker to build than a frozen dataclass: the engine makes several per reading.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

import msgspec

from sensors.catalogue import QuantityLimits

US = 1_000_000
Event = Literal["raised", "cleared"]
StateT = TypeVar("StateT")


@dataclass(frozen=True, slots=True)
class Setting:
    """A row of ``alert_detector_settings`` for one sensor type and quantity."""

    severity: str
    params: Mapping[str, Any]


class Observation(msgspec.Struct, frozen=True):
    """One reading of a key, as a detector sees it."""

    sensor_id: str
    utility: str
    quantity: str
    ts_us: int  # [us]
    value: float  # [canonical unit]
    limits: QuantityLimits | None  # the sensor's alarm limits for this quantity, if any
    active: frozenset[str]  # alert kinds active on the key as the detectors before left them


class KeyClock(msgspec.Struct, frozen=True):
    """A key between readings, as the stream's clock sees it (for detectors of absence)."""

    sensor_id: str
    quantity: str
    active: frozenset[str]
    last_ts_us: int | None  # newest reading evaluated [us]
    interval_us: float | None  # the key's usual interval between arrivals [us]
    expected_interval_s: float  # its sensor type's reporting interval [s]
    now_us: int  # the stream's clock [us]


class Signal(msgspec.Struct, frozen=True):
    """Raise or clear one alert kind, with what the alert's row and event carry."""

    event: Event
    kind: str
    severity: str
    value: float  # [canonical unit] (silent: the gap [s])
    limit: float | None  # [canonical unit] (silent: the allowed gap [s])
    messages: tuple[str, str]  # (zh, en)


class Detector(Generic[StateT]):
    """Base of the plug-ins. A subclass is a frozen dataclass whose fields are its parameters;
    ``StateT`` is what it remembers per key, ``None`` before the key's first reading and after
    a restart (when only the active alert kinds come back, in ``Observation.active``)."""

    __slots__ = ()

    name: ClassVar[str]  # its ``alert_detector_settings.detector`` value
    replaces: ClassVar[frozenset[str]] = frozenset()  # detectors it stands in for when enabled

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> Detector[Any] | None:
        """The detector for one sensor type's ``quantity``: ``setting`` is its row (None: no
        row), whose params override the quantity's defaults. None: it does not run there."""
        raise NotImplementedError

    @property
    def history_s(self) -> float:
        """How many seconds of stored readings it wants back after a restart (``warm``)."""
        return 0.0

    def step(self, state: StateT | None, obs: Observation) -> tuple[StateT | None, list[Signal]]:
        """The key's new state and what this reading raises or clears."""
        raise NotImplementedError

    def on_clock(self, clock: KeyClock) -> Signal | None:
        """A raise the clock notices between readings (silence); most detectors have none."""
        return None

    def warm(self, history: Sequence[tuple[int, float]]) -> StateT | None:
        """The state rebuilt from stored readings ``(ts_us, value)``, oldest first, up to and
        including the key's last evaluated one (only asked when ``history_s`` > 0)."""
        return None
