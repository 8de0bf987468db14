"""The stuck (flat-line) detector (alerts/detectors/stuck.py): the window rule, the stream's
constant-size flat run that stands for it, and through the engine."""

from __future__ import annotations

import numpy as np
import pytest

from alerts.detectors import build_stream_config
from alerts.detectors.stuck import step_flat, step_stuck
from tests.alerts.conftest import MIN, T0, batch_events, feed, shuffle_with_noise, stream_engine

S = 1_000_000


def test_window_rule() -> None:
    flat = [(T0 + i * MIN, 5.0) for i in range(10)]
    assert step_stuck(
        flat, T0 + 10 * MIN, 5.0, window_s=600, tolerance=0.01, min_points=5, active=False
    )[0]
    assert not step_stuck(
        flat[:3], T0 + 10 * MIN, 5.0, window_s=600, tolerance=0.01, min_points=5, active=False
    )[0]
    assert not step_stuck(
        flat, T0 + 10 * MIN, 5.5, window_s=600, tolerance=0.01, min_points=5, active=True
    )[0]


def test_stuck_and_its_recovery_in_the_engine() -> None:
    eng = stream_engine(
        {"pressure": build_stream_config("pressure", {"stuck": ("warning", {"window_s": 600})})}
    )
    values = [350 + (i % 3) for i in range(5)] + [348.0] * 12 + [350.0]
    got = feed(eng, "pressure", values)
    # flat from minute 5: stuck once the run spans 90 % of the 10-minute window (minute 14)
    assert got == [("raised", "stuck", 14), ("cleared", "stuck", 17)]


@pytest.mark.parametrize("shuffled", [False, True])
def test_a_frozen_output_among_noise_whatever_the_delivery(shuffled: bool) -> None:
    rng = np.random.default_rng(2)
    values = list(300 + rng.normal(0, 1.0, 30))
    values[10:22] = [305.0] * 12  # frozen output for 12 minutes
    ts = [T0 + m * MIN for m in range(30)]
    if shuffled:
        ts, values = shuffle_with_noise(ts, values)
    cfg = build_stream_config(
        "pressure", {"stuck": ("warning", {"window_s": 600, "tolerance": 0.01})}
    )
    got = batch_events(stream_engine({"pressure": cfg}), "pressure", ts, values)
    # the run began at minute 10; 90 % of the 10-minute window later it is stuck; the first
    # reading off the stuck value clears it
    assert [g[:3] for g in got] == [("raised", "stuck", 19), ("cleared", "stuck", 22)]


def test_a_gap_inside_the_window_is_too_few_points() -> None:
    # two equal readings 9 minutes apart span 90 % of a 10-minute window, but are 2 of 5
    cfg = build_stream_config("pressure", {"stuck": ("warning", {"window_s": 600})})
    eng = stream_engine({"pressure": cfg})
    assert batch_events(eng, "pressure", [T0, T0 + 9 * MIN], [300.0, 300.0]) == []


def test_the_streams_flat_run_agrees_with_the_window_rule() -> None:
    # a noisy random walk with two flat stretches (one long enough, one too short)
    rng = np.random.default_rng(5)
    values = list(300 + np.cumsum(rng.normal(0, 2, 200)))
    values[40:120] = [values[40]] * 80  # 80 min flat: stuck after 54 min (90 % of 60)
    values[150:170] = [values[150]] * 20  # 20 min flat: not stuck
    window, tol, pts = 3600.0, 0.01, 5
    recent: list[tuple[int, float]] = []
    flat = None
    active_w = active_f = False
    raised_w, raised_f = [], []
    for i, v in enumerate(values):
        t = T0 + i * MIN
        now_w, _ = step_stuck(
            recent, t, v, window_s=window, tolerance=tol, min_points=pts, active=active_w
        )
        now_f, flat, _ = step_flat(
            flat, t, v, window_s=window, tolerance=tol, min_points=pts, active=active_f
        )
        if now_w and not active_w:
            raised_w.append(i)
        if now_f and not active_f:
            raised_f.append(i)
        active_w, active_f = now_w, now_f
        recent = [(ts, x) for ts, x in recent if ts >= t - window * S] + [(t, v)]
    # both once, in the long stretch: the run after 90 % of the window (54 min), the window
    # rule when the whole hour before is flat (60 min); never in the short stretch
    assert raised_f == [94] and raised_w == [100]


def test_a_main_emptied_to_its_gauge_floor_is_a_low_alarm_not_a_stuck_sensor() -> None:
    """A logger on a main that empties reads 0 kPa, flat, for hours: the low alarm says so, and
    the flat line under it is not reported again as a sensor fault; a flat line inside the
    band still is one."""
    eng = stream_engine(
        {
            "pressure": build_stream_config(
                "pressure",
                {
                    "threshold": ("major", {}),
                    "stuck": ("warning", {"window_s": 600}),
                },
            )
        }
    )
    values = [350.0 + (i % 3) for i in range(5)] + [0.0] * 30 + [351.0, 352.0]
    got = feed(eng, "pressure", values)
    assert ("raised", "threshold_low", 5) in got
    assert not [g for g in got if g[1] == "stuck"]
    assert ("cleared", "threshold_low", 35) in got or ("cleared", "threshold_low", 36) in got
    flat_in_band = feed(eng, "pressure", [348.0] * 12 + [350.0], start_min=40)
    assert [g[:2] for g in flat_in_band] == [("raised", "stuck"), ("cleared", "stuck")]
