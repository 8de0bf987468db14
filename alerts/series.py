"""Series detectors: arrays in, detections out (pure; numpy).

What tests, back-fills, the evaluation and incident analysis call on stored history; the streaming
engine uses the step functions of alerts/detectors.py, which import no numpy so that
`cityops alerts` starts (and subscribes) quickly.

Array functions share one shape: ``(ts_us, values, params) -> list[Detection]``. Input is cleaned
by ``clean_series`` (non-finite values dropped, stable sort by time, duplicate timestamps keep
their first arrival), so gaps, NaN, duplicates and out-of-order arrival are handled the same way
everywhere. An episode starts when its condition first holds, is *detected* once it has held for
the detector's minimum duration, and ends at the first reading where the clear condition holds
(``end_us is None``: still active at the end of the series).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alerts.detectors import THRESHOLD_HIGH, THRESHOLD_LOW
from sensors.catalogue import QuantityLimits
from sensors.quantities import QUANTITIES

US = 1_000_000
DAY_S = 86_400
CHINA_UTC_OFFSET_S = 8 * 3600  # Asia/Shanghai has no daylight saving time


@dataclass(frozen=True, slots=True)
class Detection:
    kind: str
    severity: str
    start_us: int  # condition first held [us]
    detected_us: int  # condition had held for the minimum duration: when a stream raises [us]
    end_us: int | None  # clear condition held [us]; None: still active
    value: float  # the most extreme value of the episode [canonical unit]
    score: float  # the detector's statistic at that value (rate, robust z, ...)


def clean_series(ts_us: Sequence[int], values: Sequence[float]) -> tuple[Any, Any]:
    """(ts [int64 us], values [float64]): finite values, sorted by time, one per timestamp."""
    ts = np.asarray(ts_us, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    if ts.shape != v.shape or ts.ndim != 1:
        raise ValueError("ts_us and values must be 1-D and of the same length")
    keep = np.isfinite(v)
    ts, v = ts[keep], v[keep]
    order = np.argsort(ts, kind="stable")
    ts, v = ts[order], v[order]
    if ts.size:
        first = np.concatenate(([True], ts[1:] != ts[:-1]))
        ts, v = ts[first], v[first]
    return ts, v


def _episodes(
    ts: Any,
    on: Any,
    off: Any,
    *,
    kind: str,
    severity: str,
    values: Any,
    score: Any,
    min_duration_s: float = 0.0,
) -> list[Detection]:
    """Hysteresis over boolean arrays: raise after ``on`` held ``min_duration_s``, clear on ``off``."""
    out: list[Detection] = []
    min_us = int(min_duration_s * US)
    pending: int | None = None
    active_from: tuple[int, int] | None = None  # (start index, detected index)
    peak = 0
    for i in range(len(ts)):
        if active_from is None:
            if on[i]:
                if pending is None:
                    pending = i
                if ts[i] - ts[pending] >= min_us:
                    active_from, peak = (pending, i), i
                    for j in range(pending, i + 1):
                        if abs(score[j]) > abs(score[peak]):
                            peak = j
            else:
                pending = None
        else:
            if off[i]:
                s, d = active_from
                out.append(
                    Detection(
                        kind,
                        severity,
                        int(ts[s]),
                        int(ts[d]),
                        int(ts[i]),
                        float(values[peak]),
                        float(score[peak]),
                    )
                )
                active_from, pending = None, None
            elif abs(score[i]) > abs(score[peak]):
                peak = i
    if active_from is not None:
        s, d = active_from
        out.append(
            Detection(
                kind,
                severity,
                int(ts[s]),
                int(ts[d]),
                None,
                float(values[peak]),
                float(score[peak]),
            )
        )
    return out


def detect_threshold_episodes(
    ts_us: Sequence[int],
    values: Sequence[float],
    limits: QuantityLimits,
    *,
    min_duration_s: float = 0.0,
    severity: str = "warning",
) -> list[Detection]:
    """Threshold with hysteresis *and minimum duration* over a series (the same rule as
    ``step_threshold``; ``min_duration_s`` [s] suppresses excursions shorter than that, the
    ISA-18.2 "on-delay"). ``score`` is the distance beyond the limit [canonical unit]."""
    ts, v = clean_series(ts_us, values)
    out: list[Detection] = []
    if limits.alarm_high is not None:
        hi = limits.alarm_high
        out += _episodes(
            ts,
            v > hi,
            v <= hi - limits.deadband,
            kind=THRESHOLD_HIGH,
            severity=severity,
            values=v,
            score=v - hi,
            min_duration_s=min_duration_s,
        )
    if limits.alarm_low is not None:
        lo = limits.alarm_low
        out += _episodes(
            ts,
            v < lo,
            v >= lo + limits.deadband,
            kind=THRESHOLD_LOW,
            severity=severity,
            values=v,
            score=lo - v,
            min_duration_s=min_duration_s,
        )
    return sorted(out, key=lambda d: d.start_us)


def detect_rate_of_change(
    ts_us: Sequence[int],
    values: Sequence[float],
    *,
    max_change: float,
    window_s: float,
    severity: str = "warning",
) -> list[Detection]:
    """Change faster than ``max_change`` [canonical unit] within ``window_s`` [s] (IOOS QARTOD
    "rate of change" test, over a trailing window rather than consecutive points so that the
    answer does not depend on the reporting interval).

    For each reading, the change is ``v_i - v_j`` against the oldest reading ``j`` inside the
    trailing window; a reading with no other reading inside the window (after a gap) has no
    change: a gap is not a jump. The episode lasts while ``|change| > max_change``, i.e. at most
    about one window after a step. ``kind``: ``rate_of_change``; ``score``: the change per
    second [unit/s] at the largest change.
    """
    ts, v = clean_series(ts_us, values)
    n = ts.size
    change = np.zeros(n)
    rate = np.zeros(n)
    if n:
        j = np.searchsorted(ts, ts - int(window_s * US), side="left")
        change = v - v[j]
        dt = (ts - ts[j]) / US
        rate = np.where(dt > 0, change / np.where(dt > 0, dt, 1.0), 0.0)
    on = np.abs(change) > max_change
    ep = _episodes(ts, on, ~on, kind="rate_of_change", severity=severity, values=v, score=change)
    out = []
    for d in ep:
        i = int(np.searchsorted(ts, d.detected_us))
        k = i + int(np.argmax(np.abs(change[i : np.searchsorted(ts, d.end_us) if d.end_us else n])))
        out.append(
            Detection(
                d.kind, d.severity, d.start_us, d.detected_us, d.end_us, float(v[k]), float(rate[k])
            )
        )
    return out


@dataclass(frozen=True, slots=True)
class DailyProfile:
    """Robust time-of-day profile of one sensor and quantity (local time, Asia/Shanghai)."""

    bin_s: int
    median: Any  # per bin [canonical unit]; NaN where too few samples
    mad: Any  # scaled median absolute deviation (1.4826 * MAD) per bin [canonical unit]


def compute_daily_profile(
    ts_us: Sequence[int],
    values: Sequence[float],
    *,
    bin_s: int = 900,
    min_samples: int = 5,
    utc_offset_s: int = CHINA_UTC_OFFSET_S,
) -> DailyProfile:
    """Median and scaled MAD per time-of-day bin of the sensor's own history.

    Robust statistics (Leys et al. 2013, "Detecting outliers: do not use standard deviation
    around the mean, use absolute deviation around the median"): a few anomalous days in the
    history barely move the profile. Bins with fewer than ``min_samples`` readings are NaN.
    """
    if DAY_S % bin_s:
        raise ValueError("bin_s must divide a day")
    ts, v = clean_series(ts_us, values)
    bins = ((ts // US + utc_offset_s) % DAY_S) // bin_s
    nb = DAY_S // bin_s
    med = np.full(nb, np.nan)
    mad = np.full(nb, np.nan)
    for b in range(nb):
        x = v[bins == b]
        if x.size >= min_samples:
            m = np.median(x)
            med[b] = m
            mad[b] = 1.4826 * np.median(np.abs(x - m))
    return DailyProfile(bin_s, med, mad)


def detect_profile_deviation(
    ts_us: Sequence[int],
    values: Sequence[float],
    profile: DailyProfile,
    *,
    z_raise: float = 5.0,
    z_clear: float = 3.0,
    scale_floor: float = 1e-6,
    min_duration_s: float = 0.0,
    utc_offset_s: int = CHINA_UTC_OFFSET_S,
    severity: str = "warning",
) -> list[Detection]:
    """Deviation from the sensor's own daily profile as a robust z-score.

    ``z = (v - median[bin]) / max(mad[bin], scale_floor)``; raise when ``|z| > z_raise`` for
    ``min_duration_s`` [s], clear when ``|z| <= z_clear`` (hysteresis in z). Readings whose bin
    has no profile are neither raised nor cleared on. ``kind``: ``profile_high`` /
    ``profile_low``; ``score`` is z. ``scale_floor`` [canonical unit] keeps a perfectly flat
    history from turning noise into infinite z.
    """
    ts, v = clean_series(ts_us, values)
    bins = ((ts // US + utc_offset_s) % DAY_S) // profile.bin_s
    med = profile.median[bins] if ts.size else np.zeros(0)
    scale = np.maximum(profile.mad[bins], scale_floor) if ts.size else np.zeros(0)
    known = np.isfinite(med) & np.isfinite(scale)
    z = np.where(known, (v - np.where(known, med, 0)) / np.where(known, scale, 1), 0.0)
    out = _episodes(
        ts,
        known & (z > z_raise),
        known & (z <= z_clear),
        kind="profile_high",
        severity=severity,
        values=v,
        score=z,
        min_duration_s=min_duration_s,
    )
    out += _episodes(
        ts,
        known & (z < -z_raise),
        known & (z >= -z_clear),
        kind="profile_low",
        severity=severity,
        values=v,
        score=z,
        min_duration_s=min_duration_s,
    )
    return sorted(out, key=lambda d: d.start_us)


def detect_stuck(
    ts_us: Sequence[int],
    values: Sequence[float],
    *,
    window_s: float,
    tolerance: float,
    min_points: int = 5,
    severity: str = "warning",
) -> list[Detection]:
    """Stuck / flat-lined sensor (IOOS QARTOD "flat line" test).

    At each reading, look back over ``window_s`` [s]: if the window holds at least
    ``min_points`` readings and spans at least 90 % of the window, and ``max - min <=
    tolerance`` [canonical unit], the sensor is stuck. Clears at the first reading that differs
    from the stuck run by more than ``tolerance``. ``kind``: ``stuck``; ``score``: the window's
    range. A real process is never perfectly still; the tolerance should sit below the sensor's
    noise.
    """
    ts, v = clean_series(ts_us, values)
    n = ts.size
    stuck = np.zeros(n, dtype=bool)
    spread = np.zeros(n)
    j = np.searchsorted(ts, ts - int(window_s * US), side="left") if n else np.zeros(0, int)
    for i in range(n):
        lo = j[i]
        if i - lo + 1 >= min_points and ts[i] - ts[lo] >= 0.9 * window_s * US:
            w = v[lo : i + 1]
            spread[i] = float(w.max() - w.min())
            stuck[i] = spread[i] <= tolerance
    # while stuck, "moved" means leaving the band of the stuck run
    moved = np.zeros(n, dtype=bool)
    ref = None
    for i in range(n):
        if stuck[i]:
            ref = v[i]
        elif ref is not None and abs(v[i] - ref) > tolerance:
            moved[i], ref = True, None
    ep = _episodes(ts, stuck, moved, kind="stuck", severity=severity, values=v, score=spread)
    # the episode began where the flat run began, not where the window filled
    return [
        Detection(
            d.kind,
            d.severity,
            int(ts[j[np.searchsorted(ts, d.detected_us)]]),
            d.detected_us,
            d.end_us,
            d.value,
            d.score,
        )
        for d in ep
    ]


def detect_silence(
    ts_us: Sequence[int],
    *,
    expected_interval_s: float,
    now_us: int,
    factor: float = 3.0,
    severity: str = "warning",
) -> list[Detection]:
    """Silent sensor, per quantity: no reading for ``factor * expected_interval_s`` [s].

    Each gap longer than that between consecutive readings is an episode from the last reading
    (start) to the next (end), detected ``factor * expected_interval_s`` after the last reading;
    a gap still open at ``now_us`` is active. Duplicates and order do not matter. ``kind``:
    ``silent``; ``value`` and ``score``: the gap [s]. A quiet process (constant value) still
    reports, so it is not silent: that is ``detect_stuck``'s business.
    """
    ts = np.unique(np.asarray(ts_us, dtype=np.int64))
    limit = int(factor * expected_interval_s * US)
    out: list[Detection] = []
    for a, b in itertools.pairwise(ts):
        if b - a > limit:
            gap = (b - a) / US
            out.append(Detection("silent", severity, int(a), int(a + limit), int(b), gap, gap))
    if ts.size and now_us - ts[-1] > limit:
        gap = (now_us - ts[-1]) / US
        out.append(Detection("silent", severity, int(ts[-1]), int(ts[-1] + limit), None, gap, gap))
    return out


def is_silent(
    last_ts_us: int | None, now_us: int, expected_interval_s: float, factor: float = 3.0
) -> bool:
    """Streaming form of ``detect_silence`` for one sensor and quantity."""
    return last_ts_us is not None and now_us - last_ts_us > factor * expected_interval_s * US


# values devices send when they have no measurement (Modbus/4-20 mA conventions)
SENTINELS = (-9999.0, -999.0, 9999.0, 65535.0, 32767.0, -32768.0)


def detect_impossible(
    ts_us: Sequence[int],
    values: Sequence[float],
    quantity: str,
    *,
    sentinels: Sequence[float] = SENTINELS,
    severity: str = "warning",
) -> list[Detection]:
    """Physically impossible values and sentinels: a *sensor fault*, not a process alarm (IOOS
    QARTOD "gross range" test against the quantity's physical range in sensors/quantities.py).

    NaN/inf readings count as faults here (they are evidence of a broken device), unlike in the
    other detectors. One episode per run of faulty readings; clears at the next plausible
    reading. ``kind``: ``sensor_fault``; ``score``: 1.
    """
    q = QUANTITIES[quantity]
    ts = np.asarray(ts_us, dtype=np.int64)
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    ts, v = ts[order], v[order]
    if ts.size:
        first = np.concatenate(([True], ts[1:] != ts[:-1]))
        ts, v = ts[first], v[first]
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v < q.physical_min) | (v > q.physical_max) | np.isin(v, sentinels)
    shown = np.where(np.isfinite(v), v, np.nan)
    return _episodes(
        ts, bad, ~bad, kind="sensor_fault", severity=severity, values=shown, score=np.ones(ts.size)
    )


# Combustible gas alarm levels [%LEL]. GB/T 50493-2019 sets the first alarm at <= 25 %LEL and
# the second at <= 50 %LEL; city gas detectors commonly alarm first at 20 %LEL (GB 15322). A
# 10 %LEL pre-alarm lets staff check a site before it becomes dangerous.
GAS_LEL_LEVELS: tuple[tuple[float, str, str], ...] = (
    (10.0, "gas_lel_prealarm", "warning"),
    (20.0, "gas_lel_alarm1", "major"),
    (50.0, "gas_lel_alarm2", "critical"),
)


def detect_gas_levels(
    ts_us: Sequence[int],
    values: Sequence[float],
    *,
    levels: Sequence[tuple[float, str, str]] = GAS_LEL_LEVELS,
    deadband: float = 2.0,
) -> list[Detection]:
    """Combustible gas concentration [%LEL] against graded alarm levels.

    One episode per level (a 55 %LEL reading is inside all three), each with hysteresis
    ``deadband`` [%LEL]: level ``L`` raises above ``L`` and clears at or below ``L - deadband``.
    ``kind`` names the level (``gas_lel_alarm1`` ...), ``severity`` comes with it; ``score``
    is the concentration.
    """
    ts, v = clean_series(ts_us, values)
    out: list[Detection] = []
    for level, kind, severity in levels:
        out += _episodes(
            ts, v > level, v <= level - deadband, kind=kind, severity=severity, values=v, score=v
        )
    return sorted(out, key=lambda d: (d.start_us, d.kind))


def resample_last(ts_us: Any, values: Any, grid_us: Any, max_age_us: int) -> Any:
    """The last value at or before each grid time, NaN when older than ``max_age_us``."""
    idx = np.searchsorted(ts_us, grid_us, side="right") - 1
    out = np.full(len(grid_us), np.nan)
    ok = idx >= 0
    out[ok] = values[idx[ok]]
    stale = np.zeros(len(grid_us), dtype=bool)
    stale[ok] = grid_us[ok] - ts_us[idx[ok]] > max_age_us
    out[stale] = np.nan
    return out


def detect_burst(
    pressure: tuple[Sequence[int], Sequence[float]],
    inlet_flow: tuple[Sequence[int], Sequence[float]],
    *,
    step_s: float = 60.0,
    baseline_s: float = 1800.0,
    min_pressure_drop_kpa: float = 30.0,
    min_flow_rise_lps: float = 10.0,
    min_duration_s: float = 120.0,
    severity: str = "critical",
) -> list[Detection]:
    """A main burst in a metered area: pressure drop *together with* inlet flow rise.

    Both series are put on a common grid of ``step_s`` [s] (last value, none older than two
    steps). The baseline of each is the median over the preceding ``baseline_s`` [s] (robust
    to the burst itself and to single spikes). A burst holds while the pressure is at least
    ``min_pressure_drop_kpa`` [kPa] below its baseline *and* the inlet flow at least
    ``min_flow_rise_lps`` [L/s] above its own, for ``min_duration_s`` [s]; a pressure drop alone
    (a pump trip) or a flow rise alone (demand) raises nothing. The baseline is frozen while an
    episode is active, so a long burst does not become "normal". Clears when either condition
    is gone. ``kind``: ``water_burst``; ``value``: the flow rise [L/s]; ``score``: the pressure
    drop [kPa]. Reference: the pressure/flow signature of bursts in DMA monitoring (Mounce et
    al. 2010; Wu & Liu 2017 review of burst detection).
    """
    pt, pv = clean_series(*pressure)
    ft, fv = clean_series(*inlet_flow)
    if not pt.size or not ft.size:
        return []
    step = int(step_s * US)
    start = max(pt[0], ft[0])
    end = min(pt[-1], ft[-1])
    if end <= start:
        return []
    grid = np.arange(start - start % step + step, end + 1, step, dtype=np.int64)
    p = resample_last(pt, pv, grid, 2 * step)
    q = resample_last(ft, fv, grid, 2 * step)
    nb = max(1, int(baseline_s // step_s))
    drop = np.zeros(grid.size)
    rise = np.zeros(grid.size)
    on = np.zeros(grid.size, dtype=bool)
    off = np.zeros(grid.size, dtype=bool)
    frozen: tuple[float, float] | None = None  # baselines held while the condition holds
    for i in range(nb, grid.size):
        if not (np.isfinite(p[i]) and np.isfinite(q[i])):
            continue
        if frozen is None:
            wp, wq = p[i - nb : i], q[i - nb : i]
            if np.isfinite(wp).sum() < max(1, nb // 2) or np.isfinite(wq).sum() < max(1, nb // 2):
                continue
            base = (float(np.nanmedian(wp)), float(np.nanmedian(wq)))
        else:
            base = frozen
        drop[i], rise[i] = base[0] - p[i], q[i] - base[1]
        hit = drop[i] >= min_pressure_drop_kpa and rise[i] >= min_flow_rise_lps
        on[i], off[i] = hit, not hit
        frozen = base if hit else None
    ep = _episodes(
        grid,
        on,
        off,
        kind="water_burst",
        severity=severity,
        values=rise,
        score=drop,
        min_duration_s=min_duration_s,
    )
    return ep


def detect_night_flow_rise(
    ts_us: Sequence[int],
    flow_lps: Sequence[float],
    *,
    night_start_h: int = 2,
    night_end_h: int = 4,
    history_nights: int = 7,
    min_rise_lps: float = 1.0,
    utc_offset_s: int = CHINA_UTC_OFFSET_S,
    severity: str = "warning",
) -> list[Detection]:
    """Minimum night flow (MNF) of a metered area rising above its recent nights: a new leak.

    MNF per local night is the minimum inlet flow [L/s] between ``night_start_h`` and
    ``night_end_h`` (Asia/Shanghai), when legitimate demand is lowest, so leakage dominates
    (IWA water balance practice). A night whose MNF exceeds the median of the previous
    ``history_nights`` (at least 3 of them) by ``min_rise_lps`` [L/s] is an episode from that
    night on, cleared by the first night back under. ``kind``: ``night_flow_rise``; ``value``:
    the MNF; ``score``: the rise [L/s].
    """
    ts, v = clean_series(ts_us, flow_lps)
    local_s = ts // US + utc_offset_s
    hour = (local_s % DAY_S) // 3600
    day = local_s // DAY_S
    sel = (hour >= night_start_h) & (hour < night_end_h)
    nights = np.unique(day[sel])
    mnf = np.array([v[sel & (day == d)].min() for d in nights])
    night_ts = ((nights * DAY_S + night_end_h * 3600 - utc_offset_s) * US).astype(np.int64)
    rise = np.zeros(nights.size)
    known = np.zeros(nights.size, dtype=bool)
    for i in range(nights.size):
        hist = mnf[max(0, i - history_nights) : i]
        if hist.size >= 3:
            rise[i] = mnf[i] - float(np.median(hist))
            known[i] = True
    on = known & (rise >= min_rise_lps)
    off = known & (rise < min_rise_lps)
    ep = _episodes(
        night_ts, on, off, kind="night_flow_rise", severity=severity, values=mnf, score=rise
    )
    return ep
