"""Graded combustible-gas levels (alerts/detectors/gas_levels.py), replacing the single
20 %LEL threshold where enabled."""

from __future__ import annotations

import math

from alerts.detectors import build_stream_config
from alerts.detectors.gas_levels import step_gas_levels
from sensors.payload import Reading
from tests.alerts.conftest import MIN, T0, feed, stream_engine


def test_step_rule() -> None:
    assert step_gas_levels(frozenset(), 55.0) == [
        ("raised", "gas_lel_prealarm", "warning", 10.0),
        ("raised", "gas_lel_alarm1", "major", 20.0),
        ("raised", "gas_lel_alarm2", "critical", 50.0),
    ]
    assert step_gas_levels(frozenset({"gas_lel_prealarm", "gas_lel_alarm1"}), 18.5) == []
    assert step_gas_levels(frozenset({"gas_lel_prealarm", "gas_lel_alarm1"}), 18.0) == [
        ("cleared", "gas_lel_alarm1", "major", 20.0)
    ]


def _gas_engine():  # type: ignore[no-untyped-def]
    cfg = build_stream_config("gas_concentration", {"gas_levels": ("warning", {})})
    return stream_engine({"gas_concentration": cfg}, "gas_detector", "gas")


def test_gas_levels_replace_the_single_threshold() -> None:
    got = feed(_gas_engine(), "gas_concentration", [1, 12, 25, 55, 30, 17, 5, math.nan, 1])
    assert got == [
        ("raised", "gas_lel_prealarm", 1),
        ("raised", "gas_lel_alarm1", 2),
        ("raised", "gas_lel_alarm2", 3),
        ("cleared", "gas_lel_alarm2", 4),
        ("cleared", "gas_lel_alarm1", 5),
        ("cleared", "gas_lel_prealarm", 6),
    ]


def test_levels_grade_and_clear_with_the_deadband() -> None:
    eng = _gas_engine()
    values = [0, 5, 12, 25, 55, 49, 47, 19, 17.9, 9, 7.9]
    changes = []
    for i, v in enumerate(values):
        ev = eng.evaluate([Reading("s1", "gas_concentration", T0 + i * MIN, v, None)])
        eng.commit(ev)
        changes += [(c.event, c.kind, c.severity, i, c.value) for c in ev.changes]
    # each level clears 2 %LEL under itself: 49 keeps the second alarm, 47 ends it
    assert changes == [
        ("raised", "gas_lel_prealarm", "warning", 2, 12),
        ("raised", "gas_lel_alarm1", "major", 3, 25),
        ("raised", "gas_lel_alarm2", "critical", 4, 55),
        ("cleared", "gas_lel_alarm2", "critical", 6, 47),
        ("cleared", "gas_lel_alarm1", "major", 8, 17.9),
        ("cleared", "gas_lel_prealarm", "warning", 10, 7.9),
    ]
