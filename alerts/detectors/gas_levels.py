"""Graded combustible-gas levels [%LEL]; where enabled they replace the single 20 %LEL limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from alerts.detectors.base import Detector, Event, Observation, Setting, Signal
from alerts.messages import format_value

# GB/T 50493-2019 sets the first alarm at <= 25 %LEL and the second at <= 50 %LEL; city gas
# detectors commonly alarm first at 20 %LEL (GB 15322). A 10 %LEL pre-alarm lets staff check a
# site before it becomes dangerous. (level [%LEL], kind, severity)
GAS_LEVELS: tuple[tuple[float, str, str], ...] = (
    (10.0, "gas_lel_prealarm", "warning"),
    (20.0, "gas_lel_alarm1", "major"),
    (50.0, "gas_lel_alarm2", "critical"),
)
LEVEL_NAMES = {
    "gas_lel_prealarm": ("预警", "pre-alarm"),
    "gas_lel_alarm1": ("一级报警", "first alarm"),
    "gas_lel_alarm2": ("二级报警", "second alarm"),
}
DEADBAND = 2.0  # [%LEL]


def step_gas_levels(
    active: frozenset[str],
    value: float,
    *,
    levels: Sequence[tuple[float, str, str]] = GAS_LEVELS,
    deadband: float = DEADBAND,
) -> list[tuple[str, str, str, float]]:
    """Events ``(event, kind, severity, level)`` for one reading [%LEL]: each level raises above
    its value and clears at or below ``level - deadband`` (raises listed from the lowest level,
    clears from the highest)."""
    raised, cleared = [], []
    for level, kind, severity in levels:
        if kind not in active and value > level:
            raised.append(("raised", kind, severity, level))
        elif kind in active and value <= level - deadband:
            cleared.append(("cleared", kind, severity, level))
    return raised + cleared[::-1]  # upward in order of level, downward from the top


@dataclass(frozen=True, slots=True)
class GasLevels(Detector[None]):
    """Stateless: the active kinds are all it needs. Each level has its own severity."""

    name: ClassVar[str] = "gas_levels"
    replaces: ClassVar[frozenset[str]] = frozenset({"threshold"})  # no double alarm at 20 %

    @classmethod
    def configure(cls, quantity: str, setting: Setting | None) -> GasLevels | None:
        return cls() if setting is not None else None

    def step(self, state: None, obs: Observation) -> tuple[None, list[Signal]]:
        signals = []
        for gas_event, kind, severity, level in step_gas_levels(obs.active, obs.value):
            event: Event = "raised" if gas_event == "raised" else "cleared"
            msgs = _messages(event, kind, obs, level)
            signals.append(Signal(event, kind, severity, obs.value, level, msgs))
        return None, signals


def _messages(event: Event, kind: str, obs: Observation, level: float) -> tuple[str, str]:
    zh_level, en_level = LEVEL_NAMES[kind]
    sid, v, lim = (
        obs.sensor_id,
        format_value(obs.value, obs.quantity),
        format_value(level, obs.quantity),
    )
    if event == "raised":
        return (
            f"{sid} 可燃气体浓度 {v}，达到{zh_level}（{lim}）",
            f"{sid}: combustible gas {v} reached the {en_level} level ({lim})",
        )
    return (
        f"{sid} 可燃气体浓度降至 {v}，{zh_level}解除",
        f"{sid}: combustible gas down to {v}, {en_level} over",
    )
