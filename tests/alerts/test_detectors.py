"""Series detectors on synthetic arrays with known answers, gaps, NaN, duplicates, disorder."""

from __future__ import annotations

import math

import numpy as np
import pytest

from alerts.series import (
    DAY_S,
    US,
    clean_series,
    compute_daily_profile,
    detect_burst,
    detect_gas_levels,
    detect_impossible,
    detect_night_flow_rise,
    detect_profile_deviation,
    detect_rate_of_change,
    detect_silence,
    detect_stuck,
    detect_threshold_episodes,
    is_silent,
)
from sensors.catalogue import QuantityLimits

MIN = 60 * US
T0 = 1_764_115_200 * US  # 2025-11-26 00:00 UTC = 08:00 in Chengdu


def minutes(*ms: float) -> list[int]:
    return [T0 + int(m * MIN) for m in ms]


def shuffle_with_noise(ts: list[int], values: list[float], seed: int = 3):
    """The same series delivered out of order, with duplicates and NaN gaps mixed in."""
    rng = np.random.default_rng(seed)
    ts2 = list(ts) + ts[::7]  # duplicates: same timestamp, same value
    v2 = list(values) + values[::7]
    ts2 += [ts[i] for i in range(3, len(ts), 11)]  # NaN readings at existing timestamps
    v2 += [math.nan] * len(range(3, len(ts), 11))
    order = rng.permutation(len(ts2))
    return [ts2[i] for i in order], [v2[i] for i in order]


def test_clean_series_sorts_dedups_and_drops_nan() -> None:
    ts, v = clean_series([3, 1, 2, 1, 4], [30.0, 10.0, math.nan, 11.0, math.inf])
    assert ts.tolist() == [1, 3] and v.tolist() == [10.0, 30.0]
    with pytest.raises(ValueError):
        clean_series([1, 2], [1.0])


def test_threshold_minimum_duration_suppresses_short_excursions() -> None:
    lim = QuantityLimits("pressure", 200.0, None, 10.0)
    values = [300, 190, 300, 190, 190, 190, 190, 215, 300]
    ds = detect_threshold_episodes(minutes(*range(9)), values, lim, min_duration_s=120)
    # the one-minute dip at minute 1 is ignored; the dip from minute 3 lasts 3 minutes
    assert [(d.kind, d.start_us, d.detected_us, d.end_us) for d in ds] == [
        ("threshold_low", T0 + 3 * MIN, T0 + 5 * MIN, T0 + 7 * MIN)
    ]
    assert ds[0].score == 10.0
    # same answer when the stream is shuffled, duplicated and holed
    ts2, v2 = shuffle_with_noise(minutes(*range(9)), values)
    assert detect_threshold_episodes(ts2, v2, lim, min_duration_s=120) == ds


def test_rate_of_change_finds_the_jump_not_the_gap() -> None:
    # 1 kPa/min drift, a 100 kPa drop in one minute at minute 10, then a two-hour gap
    ts = minutes(*range(20), 140, 141)
    values = [300 + i for i in range(10)] + [200 + i for i in range(10)] + [400.0, 401.0]
    ds = detect_rate_of_change(ts, values, max_change=50, window_s=300)
    assert len(ds) == 1
    d = ds[0]
    # change against the oldest reading within 5 minutes: -105 kPa at minute 10 ... until the
    # pre-drop readings leave the window (minute 15: 205 - 200 kPa)
    assert (d.start_us, d.end_us) == (T0 + 10 * MIN, T0 + 15 * MIN)
    assert d.value == 200 and d.score == pytest.approx(-105 / 300)
    ts2, v2 = shuffle_with_noise(ts, values)
    assert detect_rate_of_change(ts2, v2, max_change=50, window_s=300) == ds


def _days_of(pattern, days: int, noise: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    ts = np.arange(days * 96) * 15 * MIN + T0
    hour = ((ts // US + 8 * 3600) % DAY_S) / 3600
    v = pattern(hour) + rng.normal(0, noise, ts.size)
    return ts, v


def test_profile_deviation_uses_robust_statistics() -> None:
    def pattern(h):
        return 300 + 40 * np.sin(2 * np.pi * h / 24)

    ts, v = _days_of(pattern, 14, 2.0)
    v[100:110] = 0.0  # a bad day in the history does not spoil the profile
    prof = compute_daily_profile(ts, v, bin_s=3600, min_samples=5)
    assert np.nanmax(np.abs(prof.median - pattern(np.arange(24) + 0.375))) < 3.0
    assert np.all(prof.mad < 6.0)
    # next day: normal, except 6 readings (90 min) 30 kPa low at a time the profile is high
    ts2, v2 = _days_of(pattern, 1, 2.0, seed=9)
    ts2 = ts2 + 14 * DAY_S * US
    v2[40:46] -= 30.0
    ds = detect_profile_deviation(ts2, v2, prof, z_raise=5, z_clear=3, min_duration_s=1800)
    assert [(d.kind, d.start_us, d.end_us) for d in ds] == [
        ("profile_low", int(ts2[40]), int(ts2[46]))
    ]
    assert ds[0].score < -5
    # a value that is normal at 14:00 but not at 02:00 is judged by its own time of day
    assert detect_profile_deviation(ts2[:40], v2[:40], prof) == []


def test_profile_with_no_history_raises_nothing() -> None:
    prof = compute_daily_profile([], [], bin_s=3600)
    assert detect_profile_deviation(minutes(0, 1), [1.0, 1e6], prof) == []
    with pytest.raises(ValueError):
        compute_daily_profile([], [], bin_s=7)


def test_stuck_sensor_and_its_recovery() -> None:
    rng = np.random.default_rng(2)
    values = list(300 + rng.normal(0, 1.0, 30))
    values[10:22] = [305.0] * 12  # frozen output for 12 minutes
    ts = minutes(*range(30))
    ds = detect_stuck(ts, values, window_s=600, tolerance=0.01, min_points=5)
    assert len(ds) == 1
    d = ds[0]
    assert d.start_us == T0 + 10 * MIN  # where the flat run began
    assert d.detected_us == T0 + 20 * MIN  # when 10 minutes of it were seen
    assert d.end_us == T0 + 22 * MIN
    ts2, v2 = shuffle_with_noise(ts, values)
    assert detect_stuck(ts2, v2, window_s=600, tolerance=0.01, min_points=5) == ds
    # a gap inside the window: too few points, not judged stuck
    sparse = detect_stuck(minutes(0, 9), [1.0, 1.0], window_s=600, tolerance=0.01)
    assert sparse == []


def test_silence_per_quantity() -> None:
    ts = minutes(0, 1, 2, 10, 11, 11, 3)  # a duplicate and a late reading
    ds = detect_silence(ts, expected_interval_s=60, now_us=T0 + 20 * MIN)
    assert [(d.start_us, d.detected_us, d.end_us, d.value) for d in ds] == [
        (T0 + 3 * MIN, T0 + 6 * MIN, T0 + 10 * MIN, 420.0),
        (T0 + 11 * MIN, T0 + 14 * MIN, None, 540.0),
    ]
    assert detect_silence([], expected_interval_s=60, now_us=T0) == []
    assert is_silent(T0, T0 + 181 * US, 60) and not is_silent(T0, T0 + 180 * US, 60)
    assert not is_silent(None, T0, 60)


def test_impossible_values_are_sensor_faults() -> None:
    ts = minutes(0, 1, 2, 3, 4, 5, 6)
    values = [300.0, -9999.0, 20_000.0, math.nan, 301.0, 65535.0, 302.0]
    ds = detect_impossible(ts, values, "pressure")
    assert [(d.kind, d.start_us, d.end_us) for d in ds] == [
        ("sensor_fault", T0 + 1 * MIN, T0 + 4 * MIN),
        ("sensor_fault", T0 + 5 * MIN, T0 + 6 * MIN),
    ]
    # a negative %LEL is impossible, 0 is fine
    assert len(detect_impossible(minutes(0, 1), [-1.0, 0.0], "gas_concentration")) == 1


def test_gas_levels_grade_and_clear_with_deadband() -> None:
    values = [0, 5, 12, 25, 55, 49, 47, 19, 17.9, 9, 7.9]
    ds = detect_gas_levels(minutes(*range(len(values))), values, deadband=2.0)
    got = [(d.kind, d.severity, d.start_us, d.end_us) for d in ds]
    assert got == [
        ("gas_lel_prealarm", "warning", T0 + 2 * MIN, T0 + 10 * MIN),
        ("gas_lel_alarm1", "major", T0 + 3 * MIN, T0 + 8 * MIN),
        ("gas_lel_alarm2", "critical", T0 + 4 * MIN, T0 + 6 * MIN),
    ]
    assert max(d.value for d in ds) == 55


def _burst_case(drop_at: int | None, flow_rise_at: int | None, n: int = 120):
    rng = np.random.default_rng(5)
    ts = minutes(*range(n))
    p = 350 + rng.normal(0, 1.5, n)
    q = 120 + rng.normal(0, 1.0, n)
    if drop_at is not None:
        p[drop_at:] -= 60
    if flow_rise_at is not None:
        q[flow_rise_at:] += 25
    return (ts, list(p)), (ts, list(q))


def test_burst_needs_pressure_drop_and_flow_rise_together() -> None:
    p, q = _burst_case(60, 61)
    ds = detect_burst(p, q, min_duration_s=120)
    assert len(ds) == 1
    d = ds[0]
    assert (d.kind, d.severity) == ("water_burst", "critical")
    assert d.start_us == T0 + 61 * MIN and d.detected_us == T0 + 63 * MIN
    assert d.end_us is None  # the frozen baseline keeps a long burst from becoming normal
    assert d.score == pytest.approx(60, abs=6) and d.value == pytest.approx(25, abs=4)
    # a pump trip (pressure only) and a demand peak (flow only) raise nothing
    assert detect_burst(*_burst_case(60, None)) == []
    assert detect_burst(*_burst_case(None, 60)) == []


def test_burst_with_shuffled_gappy_input() -> None:
    (pt, pv), (qt, qv) = _burst_case(60, 60)
    pt2, pv2 = shuffle_with_noise(pt, pv)
    keep = [i for i, t in enumerate(qt) if not (T0 + 20 * MIN <= t < T0 + 30 * MIN)]
    qt2, qv2 = [qt[i] for i in keep], [qv[i] for i in keep]  # a 10-minute hole in the flow
    ds = detect_burst((pt2, pv2), (qt2, qv2), min_duration_s=120)
    assert [d.start_us for d in ds] == [T0 + 60 * MIN]
    assert detect_burst(([], []), (qt, qv)) == []


def test_minimum_night_flow_rise() -> None:
    rng = np.random.default_rng(4)
    ts = np.arange(12 * 96) * 15 * MIN + T0
    hour = ((ts // US + 8 * 3600) % DAY_S) / 3600
    flow = 20 + 15 * (hour > 6) + rng.normal(0, 0.2, ts.size)
    flow[8 * 96 :] += 3.0  # a 3 L/s leak starts on the 9th day
    ds = detect_night_flow_rise(ts, flow, min_rise_lps=1.0)
    assert len(ds) == 1
    d = ds[0]
    assert d.kind == "night_flow_rise" and d.score == pytest.approx(3.0, abs=0.6)
    # the first night after the leak began (local 04:00 of day 9)
    assert d.start_us == T0 + (8 * DAY_S + 20 * 3600) * US
