"""The streaming detectors, as plug-ins (docs/alerts.md "Detectors"; base in ``base.py``).

Adding a detector: a module here with a ``Detector`` subclass (its parameters as dataclass
fields with their defaults per quantity, its per-key state as a frozen ``msgspec.Struct``,
``configure`` and ``step``), its test, and its line in ``REGISTRY``. The engine is not touched. ``REGISTRY``'s
order is the order in which the detectors see each reading, and so the order of the events one
reading causes (a silent alert clears before a level is raised on the same reading).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alerts.detectors.base import Detector, Setting
from alerts.detectors.drift import Drift
from alerts.detectors.gas_levels import GasLevels
from alerts.detectors.rate_of_change import RateOfChange
from alerts.detectors.silent import Silent
from alerts.detectors.spike import Spike
from alerts.detectors.stuck import Stuck
from alerts.detectors.threshold import Threshold

REGISTRY: tuple[type[Detector[Any]], ...] = (
    Threshold,
    Silent,
    Spike,
    RateOfChange,
    Stuck,
    GasLevels,
    Drift,
)


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """The detectors configured for one sensor type and quantity, in registry order."""

    detectors: tuple[Detector[Any], ...] = ()

    def get(self, name: str) -> Detector[Any] | None:
        return next((d for d in self.detectors if d.name == name), None)

    @property
    def history_s(self) -> float:
        """Seconds of readings its windowed detectors want back after a restart [s]."""
        return max((d.history_s for d in self.detectors), default=0.0)


def build_stream_config(
    quantity: str, rows: Mapping[str, tuple[str, Mapping[str, Any]]]
) -> StreamConfig:
    """The detectors for one sensor type's ``quantity`` from its ``alert_detector_settings``
    rows, detector -> (severity, params); params override each detector's defaults for the
    quantity (the detector modules say which). Rows naming no registered detector are ignored;
    a detector that ``replaces`` another switches it off."""
    configured = [
        det
        for cls in REGISTRY
        if (det := cls.configure(quantity, _setting(rows.get(cls.name)))) is not None
    ]
    replaced = {name for det in configured for name in det.replaces}
    return StreamConfig(tuple(det for det in configured if det.name not in replaced))


def _setting(row: tuple[str, Mapping[str, Any]] | None) -> Setting | None:
    return Setting(row[0], row[1]) if row is not None else None


# what a quantity without rows runs: the threshold (default on-delay), and silent's clear
UNCONFIGURED = build_stream_config("", {})
