"""The drift detector (alerts/detectors/drift.py): a calibration drift found by the growth of
its day-on-day difference; a network event's pressure change (a step that stays, a burst that
is repaired) and a quiet network are not flagged. Synthetic series, then the simulators'."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from alerts.detectors import build_stream_config
from alerts.detectors.base import Observation, Setting
from alerts.detectors.drift import Drift, DriftState
from alerts.incidents import HEALTH_KINDS, incident_kind
from sensors.catalogue import DEFAULT_DETECTORS
from simulators.run import ScenarioRun
from simulators.spec import parse_scenario

ROOT = Path(__file__).resolve().parents[2]
US = 1_000_000
H = 3600.0
T0 = 1_764_086_400 * US  # 2025-11-26 00:00 in Chengdu (a bin boundary)
STEP_S = 300.0


def detector(**params: float) -> Drift:
    det = Drift.configure("pressure", Setting("warning", params))
    assert det is not None
    return det


def pressure(hours: float, rng: np.random.Generator) -> float:
    """A junction's pressure [kPa]: a daily demand pattern (low at the morning and evening
    peaks) and the transducer's 1 kPa noise."""
    day = 2 * math.pi * hours / 24.0
    return 320.0 - 25.0 * math.sin(day) - 10.0 * math.sin(2 * day) + rng.normal(0.0, 1.0)


def run(
    det: Drift,
    days: float,
    shape: Callable[[float, float], float] = lambda h, p: p,
    *,
    seed: int = 1,
) -> list[tuple[float, str, float]]:
    """Readings every 5 min over ``days``; ``shape(hours, true value)`` is what the sensor
    reads. Returns (hour, event, value) of every signal, the alert's state kept as the engine
    keeps it."""
    rng = np.random.default_rng(seed)
    state: DriftState | None = None
    active: frozenset[str] = frozenset()
    out = []
    for i in range(int(days * 86_400 / STEP_S)):
        h = i * STEP_S / H
        value = shape(h, pressure(h, rng))
        obs = Observation(
            "wp-1", "water", "pressure", T0 + int(i * STEP_S * US), value, None, active
        )
        state, signals = det.step(state, obs)
        for s in signals:
            out.append((h, s.event, s.value))
            active = frozenset({"drift"}) if s.event == "raised" else frozenset()
    return out


def test_drift_found_after_two_days_and_a_run() -> None:
    signals = run(detector(), 4, lambda h, p: p * (1 + 0.05 * h / 24))
    assert [e for _, e, _ in signals] == ["raised"]
    hour, _, rate = signals[0]
    # two days of history, then 12 hourly bins in a row (and the bin that closes the run)
    assert 60 <= hour <= 62
    assert rate == pytest.approx(0.05 / (1 + 0.05 * 1.5), rel=0.15)  # relative to yesterday's


def test_slow_drift_below_the_rate_is_not_flagged() -> None:
    assert run(detector(), 4, lambda h, p: p * (1 + 0.005 * h / 24)) == []


@pytest.mark.parametrize(
    "event",
    [
        # a valve left shut / a reconfiguration: a step that stays (r2 ~ r1 for a day, then 0)
        lambda h, p: p - 40.0 if h >= 30 else p,
        lambda h, p: p + 30.0 if h >= 50 else p,
        # a burst repaired after 3 h, on the third day
        lambda h, p: p - 80.0 if 52 <= h < 55 else p,
        # a leak that grows for a day and is repaired
        lambda h, p: p - 2.0 * (h - 30) if 30 <= h < 54 else p,
    ],
    ids=["step-down", "step-up", "burst", "leak-repaired"],
)
def test_network_events_are_not_drift(event: Callable[[float, float], float]) -> None:
    assert run(detector(), 4, event) == []


def test_quiet_sensor_is_not_flagged_over_a_week() -> None:
    assert run(detector(), 7, seed=5) == []


def test_recalibration_clears() -> None:
    # drifting from the start, recalibrated (back to the truth) at 72 h
    signals = run(detector(), 5, lambda h, p: p * (1 + 0.05 * h / 24) if h < 72 else p)
    assert [e for _, e, _ in signals] == ["raised", "cleared"]
    assert 72 <= signals[1][0] <= 74


def test_restart_keeps_the_alert_and_warm_rebuilds_the_run() -> None:
    det = detector()
    rng = np.random.default_rng(2)
    history = [
        (
            T0 + int(i * STEP_S * US),
            pressure(i * STEP_S / H, rng) * (1 + 0.05 * i * STEP_S / 86_400),
        )
        for i in range(int(62 * H / STEP_S))
    ]
    assert det.history_s >= 2 * 86_400
    state = det.warm(history)
    assert state is not None and len(state.run) == det.run_bins
    ts, value = history[-1]
    nxt = Observation("wp-1", "water", "pressure", ts + 3600 * US, value, None, frozenset())
    _, signals = det.step(state, nxt)  # the alert was lost: the warmed run raises it again
    assert [s.event for s in signals] == ["raised"]
    # active after a restart with no state: kept (no clear) until the run says otherwise
    restored = Observation("wp-1", "water", "pressure", ts, value, None, frozenset({"drift"}))
    assert det.step(None, restored)[1] == []


def test_configuration_and_defaults() -> None:
    with pytest.raises(ValueError, match="drift"):
        detector(min_rate=0)
    with pytest.raises(ValueError, match="drift"):
        detector(bin_s=2 * 86_400)
    assert Drift.configure("pressure", None) is None  # only where a settings row asks
    cfg = build_stream_config("pressure", {"drift": ("warning", {"run_bins": 6})})
    det = cfg.get("drift")
    assert isinstance(det, Drift) and det.run_bins == 6
    defaults = {(d.type_id, d.detector) for d in DEFAULT_DETECTORS}
    assert {("water_pressure", "drift"), ("gas_pressure", "drift")} <= defaults
    # a sensor-health kind: its incident is a sensor problem, its process alarms put down to it
    assert "drift" in HEALTH_KINDS
    assert incident_kind("water", frozenset({"pressure:drift"})) == "sensor_health"
    kinds = frozenset({"pressure:drift", "pressure:threshold_high"})
    assert incident_kind("water", kinds, suspect_only=True) == "sensor_health"


def drift_signals(path: Path, **overrides: object) -> tuple[dict[str, list[float]], set[str]]:
    """The simulators' readings of a scenario (offline: no broker) through the drift detector
    per pressure key: sensor -> hours of its raises, and the sensors the scenario drifts."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc.update(overrides)
    scn = parse_scenario(yaml.safe_dump(doc), str(path))
    sim = ScenarioRun(scn, start_ms=scn.start_ms or 0)
    det = detector()
    states: dict[str, DriftState | None] = {}
    active: dict[str, frozenset[str]] = {}
    raised: dict[str, list[float]] = {}
    try:
        for step in range(sim.steps):
            for m in sim.messages(step):
                if "pressure" not in m.values:
                    continue
                sid = m.sensor_id
                obs = Observation(
                    sid,
                    "water",
                    "pressure",
                    m.ts_ms * 1000,
                    m.values["pressure"],
                    None,
                    active.get(sid, frozenset()),
                )
                states[sid], signals = det.step(states.get(sid), obs)
                for s in signals:
                    active[sid] = frozenset({"drift"}) if s.event == "raised" else frozenset()
                    if s.event == "raised":
                        raised.setdefault(sid, []).append((m.ts_ms - sim.start_ms) / 3.6e6)
        drifting = {sid for e in sim.events.values() if e.type == "drift" for sid in e.affected}
    finally:
        sim.close()
    return raised, drifting


def test_quiet_network_three_days_raises_nothing() -> None:
    raised, _ = drift_signals(ROOT / "scenarios" / "quiet_day.yaml", duration="3d")
    assert raised == {}


def test_fault_storm_drift_found_and_nothing_else() -> None:
    raised, drifting = drift_signals(ROOT / "scenarios" / "sensor_fault_storm.yaml")
    assert drifting and set(raised) == drifting
    assert all(48 < hours[0] < 66 for hours in raised.values())


def test_planned_valve_operation_drift_found_and_closure_not() -> None:
    raised, drifting = drift_signals(ROOT / "scenarios" / "planned_valve_operation.yaml")
    assert drifting == {"pv-wp-191"}
    assert set(raised) == drifting
