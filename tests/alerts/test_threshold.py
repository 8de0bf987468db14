"""Threshold detector with hysteresis: known answers and edge cases (pure, no services)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.detectors import build_stream_config
from alerts.detectors.spike import SpikeState
from alerts.detectors.threshold import (
    Threshold,
    ThresholdState,
    detect_threshold,
    step_threshold,
)
from alerts.engine import Engine, SensorInfo
from alerts.messages import threshold_messages
from sensors.catalogue import SENSOR_TYPES, QuantityLimits
from sensors.payload import Reading
from tests.alerts.conftest import MIN, T0, batch_events, feed, shuffle_with_noise, stream_engine

WATER = QuantityLimits("pressure", 200.0, 700.0, 10.0)
S = 1_000_000  # us per second


def run(values, limits=WATER, ts=None, state=None):
    ts = ts if ts is not None else [i * 60 * S for i in range(len(values))]
    return detect_threshold(ts, values, limits, state or ThresholdState())


def summary(events):
    return [(e.event, e.kind, e.ts_us // (60 * S), e.value, e.limit) for e in events]


def test_low_raise_and_clear_with_deadband() -> None:
    state, events = run([300, 250, 199.9, 150, 205, 209.99, 210, 300])
    assert summary(events) == [
        ("raised", "threshold_low", 2, 199.9, 200.0),
        ("cleared", "threshold_low", 6, 210, 200.0),
    ]
    assert state.active is None and state.last_ts_us == 7 * 60 * S


def test_value_on_the_limit_is_inside() -> None:
    _, events = run([200.0, 700.0, 200.0])
    assert events == []


def test_high_raise_clear_and_no_flapping_inside_deadband() -> None:
    # chattering around the high limit: one alert, not five
    _, events = run([690, 701, 699, 701, 695, 702, 690.0, 701])
    assert summary(events) == [
        ("raised", "threshold_high", 1, 701, 700.0),
        ("cleared", "threshold_high", 6, 690.0, 700.0),
        ("raised", "threshold_high", 7, 701, 700.0),
    ]


def test_jump_from_high_to_low_clears_and_raises() -> None:
    _, events = run([750, 100])
    assert summary(events) == [
        ("raised", "threshold_high", 0, 750, 700.0),
        ("cleared", "threshold_high", 1, 100, 700.0),
        ("raised", "threshold_low", 1, 100, 200.0),
    ]


def test_nan_and_infinity_are_ignored() -> None:
    state, events = run([150, math.nan, math.inf, -math.inf, 150])
    assert summary(events) == [("raised", "threshold_low", 0, 150, 200.0)]
    # the NaN did not advance the detector's clock either
    assert state.last_ts_us == 4 * 60 * S


def test_duplicates_and_out_of_order_readings_are_ignored() -> None:
    ts = [0, 60 * S, 60 * S, 30 * S, 120 * S]
    state, events = run([300, 150, 300, 300, 150], ts=ts)
    # the duplicate at 60 s and the late reading at 30 s would have cleared the alert
    assert summary(events) == [("raised", "threshold_low", 1, 150, 200.0)]
    assert state.last_ts_us == 120 * S


def test_replay_from_restored_state_raises_nothing_twice() -> None:
    values = [300, 150, 140, 215]
    state1, first = run(values[:2])
    # a restart: state restored, then the whole stream redelivered
    _, again = run(values, state=state1)
    assert summary(first) == [("raised", "threshold_low", 1, 150, 200.0)]
    assert summary(again) == [("cleared", "threshold_low", 3, 215, 200.0)]


def test_one_sided_limits_and_gaps() -> None:
    flow = QuantityLimits("flow", None, 400.0, 5.0)
    # a gap of a day between readings does not matter to a threshold
    ts = [0, 86_400 * S, 86_401 * S]
    _, events = detect_threshold(ts, [-1000.0, 401.0, 395.0], flow)
    assert [(e.event, e.kind) for e in events] == [
        ("raised", "threshold_high"),
        ("cleared", "threshold_high"),
    ]


def test_limit_removed_while_active_clears() -> None:
    state, _ = run([750])
    no_high = QuantityLimits("pressure", 200.0, None, 10.0)
    state, events = step_threshold(state, no_high, 3600 * S, 750.0)
    assert [(e.event, e.kind) for e in events] == [("cleared", "threshold_high")]
    assert state.active is None


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        detect_threshold([0, 1], [1.0], WATER)


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=60))
def test_events_alternate_and_state_matches(values: list[float]) -> None:
    state, events = run(values)
    active: dict[str, bool] = {}
    for e in events:
        # a kind is never raised twice without a clear in between, nor cleared when not raised
        assert active.get(e.kind, False) == (e.event == "cleared")
        active[e.kind] = e.event == "raised"
    assert sum(active.values()) <= 1
    assert (state.active is not None) == any(active.values())


def test_threshold_on_delay_lets_one_stray_reading_pass() -> None:
    cfg = build_stream_config("pressure", {"threshold": ("warning", {"on_delay": 2})})
    # the row only tunes the on-delay: the threshold's severities are its own
    assert cfg.get("threshold") == Threshold(on_delay=2)
    eng = stream_engine({"pressure": cfg})
    got = feed(eng, "pressure", [300.0, 150.0, 300.0, 150.0, 140.0, 300.0])
    assert got == [("raised", "threshold_low", 4), ("cleared", "threshold_low", 5)]
    # default: page at once
    assert build_stream_config("pressure", {}).get("threshold") == Threshold(on_delay=1)


@pytest.mark.parametrize("shuffled", [False, True])
def test_on_delay_suppresses_short_excursions_whatever_the_delivery(shuffled: bool) -> None:
    values = [300.0, 190.0, 300.0, 190.0, 190.0, 190.0, 190.0, 215.0, 300.0]
    ts = [T0 + m * MIN for m in range(9)]
    if shuffled:  # out of order, with duplicates and NaN gaps, all in one batch
        ts, values = shuffle_with_noise(ts, values)
    cfg = build_stream_config("pressure", {"threshold": ("warning", {"on_delay": 3})})
    got = batch_events(stream_engine({"pressure": cfg}), "pressure", ts, values)
    # the one-minute dip at minute 1 is ignored; the dip from minute 3 raises once it has
    # lasted three readings, and clears back inside by the deadband (200 + 10 kPa)
    assert got == [("raised", "threshold_low", 5, 190.0), ("cleared", "threshold_low", 7, 215.0)]


def test_engine_evaluate_does_not_change_state_until_commit() -> None:
    limits = {q.quantity: q for q in SENSOR_TYPES["water_flow"].limits}
    spike = build_stream_config("pressure", {"spike": ("warning", {})})
    eng = Engine(
        {"wf-1": SensorInfo("wf-1", "water", "water_flow", limits, streams={"pressure": spike})}
    )
    readings = [
        Reading("wf-1", "pressure", 2 * S, 150.0, 2),
        Reading("wf-1", "flow", 1 * S, 450.0, 1),
        Reading("wf-1", "pressure", 1 * S, 300.0, 1),  # earlier in time, later in the batch
        Reading("nobody", "pressure", 1 * S, 1.0, None),
        Reading("wf-1", "level", 1 * S, 99.0, None),  # no limits for this quantity: skipped
    ]
    ev = eng.evaluate(readings)
    assert [(c.event, c.quantity, c.kind, c.severity) for c in ev.changes] == [
        ("raised", "flow", "threshold_high", "warning"),
        ("raised", "pressure", "threshold_low", "major"),
    ]
    assert ev.unknown_sensors == {"nobody"}
    assert eng.states == {}
    eng.commit(ev)
    st = eng.states[("wf-1", "pressure")]
    assert (st.last_ts_us, st.active) == (2 * S, frozenset({"threshold_low"}))
    # spike test's memory in time order; rhythm: the batch arrived at its median reading time
    # (the stream's clock)
    assert st.detectors["spike"] == SpikeState((300.0, 150.0)) and st.arrived_us == 1 * S
    assert eng.evaluate(readings).changes == ()


def test_messages_in_chinese_and_english() -> None:
    zh, en = threshold_messages("raised", "threshold_low", "wp-1", "pressure", 150.0, 200.0)
    assert zh == "wp-1 压力 150 kPa，低于下限 200 kPa"
    assert en == "wp-1: pressure 150 kPa is below the low limit 200 kPa"
    zh, en = threshold_messages("cleared", "threshold_high", "gd-1", "gas_concentration", 3.5, 20)
    assert zh == "gd-1 可燃气体浓度已恢复至 3.5 %LEL（上限 20 %LEL）"
    assert en == "gd-1: combustible gas concentration back to 3.5 %LEL (high limit 20 %LEL)"
