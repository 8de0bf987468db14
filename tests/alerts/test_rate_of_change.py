"""The rate-of-change detector (alerts/detectors/rate_of_change.py): its step rule, and through
the engine: a jump is found, a gap is not a jump, a rise-only rule for combustible gas."""

from __future__ import annotations

import pytest

from alerts.detectors import build_stream_config
from alerts.detectors.rate_of_change import step_rate_of_change
from sensors.payload import Reading
from tests.alerts.conftest import MIN, T0, batch_events, feed, shuffle_with_noise, stream_engine


def test_step_rule_and_its_hysteresis() -> None:
    recent = [(T0, 300.0), (T0 + MIN, 301.0)]
    assert step_rate_of_change(
        recent, T0 + 2 * MIN, 240.0, max_change=50, window_s=300, active=False
    ) == (True, -60.0)
    # hysteresis: an active alert holds until the change is under 80 % of the limit
    assert step_rate_of_change(
        recent, T0 + 2 * MIN, 255.0, max_change=50, window_s=300, active=True
    )[0]
    assert not step_rate_of_change(
        recent, T0 + 2 * MIN, 261.0, max_change=50, window_s=300, active=True
    )[0]
    assert step_rate_of_change([], T0, 1.0, max_change=50, window_s=300, active=False) == (
        False,
        0.0,
    )


def test_rate_of_change_in_the_engine() -> None:
    cfg = build_stream_config(
        "pressure", {"rate_of_change": ("major", {"max_change": 50, "window_s": 300})}
    )
    eng = stream_engine({"pressure": cfg})
    got = feed(eng, "pressure", [350, 351, 352, 280, 281, 282, 283, 284, 285, 286])
    # 280 kPa is inside the limits [200, 700]: only the rate of change fires
    assert got == [("raised", "rate_of_change", 3), ("cleared", "rate_of_change", 8)]
    change = eng.evaluate([Reading("s1", "pressure", T0 + 20 * MIN, 350.0, None)])
    assert change.changes == ()  # after a 10-minute gap there is nothing in the window: no jump


@pytest.mark.parametrize("shuffled", [False, True])
def test_the_jump_is_found_not_the_gap_whatever_the_delivery(shuffled: bool) -> None:
    # 1 kPa/min drift, a 100 kPa drop in one minute at minute 10, then a two-hour gap and a
    # reading 200 kPa higher: delivered in order, or shuffled with duplicates and NaN gaps
    ts = [T0 + m * MIN for m in (*range(20), 140, 141)]
    values = [300.0 + i for i in range(10)] + [200.0 + i for i in range(10)] + [400.0, 401.0]
    if shuffled:
        ts, values = shuffle_with_noise(ts, values)
    cfg = build_stream_config(
        "pressure", {"rate_of_change": ("major", {"max_change": 50, "window_s": 300})}
    )
    got = batch_events(stream_engine({"pressure": cfg}), "pressure", ts, values)
    # the change against the oldest reading within 5 minutes: -105 kPa at minute 10 ... until
    # the pre-drop readings leave the window (minute 15: 205 - 200 kPa)
    assert got == [
        ("raised", "rate_of_change", 10, -105.0),
        ("cleared", "rate_of_change", 15, 205.0),
    ]


def test_gas_rise_only() -> None:
    cfg = build_stream_config(
        "gas_concentration",
        {"rate_of_change": ("major", {"max_change": 0.4, "window_s": 600, "direction": "rise"})},
    )
    eng = stream_engine({"gas_concentration": cfg}, "gas_detector", "gas")
    got = feed(eng, "gas_concentration", [0.2, 0.2, 0.9, 4.0, 4.2, 4.2, 0.2, 0.2])
    # raised by the rise; the fall at the end clears it and raises nothing
    assert [g[:2] for g in got] == [("raised", "rate_of_change"), ("cleared", "rate_of_change")]
