"""Water balance per metered area (pure): bursts and rising night flow from the supply meters.

A metered area (a DMA, or a whole network) is fed through meters on its inlets: treatment works,
pumping stations, service reservoirs. Its *supply* is the signed sum of their flows; by mass
balance that is what the area consumes plus what it loses. Demand repeats day after day, leaks
and bursts do not: the supply is compared with the area's own daily profile (IWA water balance
and minimum night flow analysis; Farley & Trow 2003, Mounce et al. 2010 for the profile).

- Profile: per ``bin_s`` time-of-day bin (Chengdu time), the mean supply of each of the last
  ``history_days`` days; the expectation is the median of those days (robust to one bad day).
- Burst (``water_burst``): supply above the expectation by at least ``burst_rise_lps`` [L/s] for
  ``burst_points`` consecutive supply points; cleared when the excess falls under half of that.
  Needs ``min_days`` of profile.
- Supply lost at a source (``inlet_flow_low``): a source meter's flow (not a service
  reservoir's) under its own usual by at least ``inlet_drop_lps`` and ``inlet_drop_share`` of
  it, for ``burst_points`` points: a pump trip, a closed works valve.
- Night flow (``night_flow_rise``): the mean supply over the night window (02:00-04:00) above the
  median of the previous nights' by at least ``night_rise_lps`` [L/s]; judged once the window is
  over, cleared by a night back under half of that.

A supply point exists at time t when every meter has a reading at t (within ``bin_s``); each
meter's latest value is used. State lives in memory: after a restart the profile is learnt again
(``min_days``), a known limit (docs/alerts.md).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cityops.kernel.clock import CHENGDU_UTC_OFFSET_S

US = 1_000_000
DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class AreaSpec:
    area_id: str
    name: str
    meters: tuple[tuple[str, int], ...]  # (flow sensor, +1 if its positive flow enters the area)
    bin_s: int = 300
    history_days: int = 7
    min_days: int = 1
    burst_rise_lps: float = 30.0
    burst_points: int = 2
    night_start_h: float = 2.0
    night_end_h: float = 4.0
    night_rise_lps: float = 2.5
    storage: frozenset[str] = frozenset()  # meters on service reservoirs, not on sources
    inlet_min_lps: float = 20.0  # a source usually delivering at least this much ...
    inlet_drop_lps: float = 30.0  # ... that falls by this much ...
    inlet_drop_share: float = 0.5  # ... and by this share of its usual flow: supply lost
    inlet_min_days: int = 1  # days of its own history before a source is judged

    @property
    def alert_sensor(self) -> str:
        """The sensor an area alert is recorded on: its first meter."""
        return self.meters[0][0]


@dataclass(slots=True)
class AreaState:
    latest: dict[str, tuple[int, float]] = field(default_factory=dict)  # meter -> (ts_us, L/s)
    last_point_us: int | None = None
    # profile: day number -> bin -> (sum, count) of supply points
    days: dict[int, dict[int, tuple[float, int]]] = field(default_factory=dict)
    nights: dict[int, tuple[float, int]] = field(default_factory=dict)  # day -> (sum, count)
    over: int = 0  # consecutive points above the burst rise
    under: int = 0  # consecutive points under half of it, while a burst is active
    burst: bool = False
    night_high: bool = False
    judged_night: int | None = None
    # the same per meter (signed flow into the area), to say which inlet feeds the excess
    meter_days: dict[str, dict[int, dict[int, tuple[float, int]]]] = field(default_factory=dict)
    meter_nights: dict[str, dict[int, tuple[float, int]]] = field(default_factory=dict)
    burst_sensor: str | None = None
    night_sensor: str | None = None
    low: dict[str, int] = field(default_factory=dict)  # source meter -> consecutive low points
    low_active: set[str] = field(default_factory=set)  # sources whose supply-loss alert is on

    def copy(self) -> AreaState:
        return AreaState(
            dict(self.latest),
            self.last_point_us,
            {d: dict(b) for d, b in self.days.items()},
            dict(self.nights),
            self.over,
            self.under,
            self.burst,
            self.night_high,
            self.judged_night,
            {m: {d: dict(b) for d, b in days.items()} for m, days in self.meter_days.items()},
            {m: dict(n) for m, n in self.meter_nights.items()},
            self.burst_sensor,
            self.night_sensor,
            dict(self.low),
            set(self.low_active),
        )


@dataclass(frozen=True, slots=True)
class AreaEvent:
    event: Literal["raised", "cleared"]
    kind: str  # water_burst | night_flow_rise
    ts_us: int
    value: float  # the excess over the expectation [L/s]
    limit: float  # the rise that raises [L/s]
    supply: float  # the supply [L/s]
    expected: float  # what the profile expected [L/s]
    sensor_id: str = ""  # the inlet meter that carries most of the excess


AREA_PARAMS = frozenset(
    {
        "bin_s",
        "history_days",
        "min_days",
        "burst_rise_lps",
        "burst_points",
        "night_start_h",
        "night_end_h",
        "night_rise_lps",
        "inlet_min_lps",
        "inlet_drop_lps",
        "inlet_drop_share",
        "inlet_min_days",
    }
)


def local_day_and_bin(ts_us: int, bin_s: int) -> tuple[int, int]:
    local_s = ts_us // US + CHENGDU_UTC_OFFSET_S
    return local_s // DAY_S, (local_s % DAY_S) // bin_s


def expected_supply(spec: AreaSpec, state: AreaState, day: int, b: int) -> float | None:
    """The median over the previous days of the mean supply in bin ``b``; None without enough
    history."""
    return _median_of_days(spec, state.days, day, b)


def _median_of_days(
    spec: AreaSpec, days: dict[int, dict[int, tuple[float, int]]], day: int, b: int
) -> float | None:
    means = []
    for d, bins in days.items():
        if day - spec.history_days <= d < day and b in bins:
            s, n = bins[b]
            means.append(s / n)
    if len(means) < spec.min_days:
        return None
    return statistics.median(means)


def step_area(
    spec: AreaSpec, state: AreaState, readings: Iterable[tuple[str, int, float]]
) -> tuple[AreaState, list[AreaEvent]]:
    """Feed meter readings ``(sensor_id, ts_us, flow [L/s])`` (any order); returns the new state
    (``state`` is not changed) and the events."""
    st = state.copy()
    signs = dict(spec.meters)
    events: list[AreaEvent] = []
    for sid, ts_us, value in sorted(readings, key=lambda r: r[1]):
        if sid not in signs:
            continue
        prev = st.latest.get(sid)
        if prev is not None and ts_us <= prev[0]:
            continue
        st.latest[sid] = (ts_us, value)
        point = _supply_point(spec, st)
        if point is not None:
            events.extend(_on_point(spec, st, *point))
    return st, events


def _supply_point(spec: AreaSpec, st: AreaState) -> tuple[int, float] | None:
    if len(st.latest) < len(spec.meters):
        return None
    times = [st.latest[sid][0] for sid, _ in spec.meters]
    t, newest = min(times), max(times)
    if newest - t > spec.bin_s * US or (st.last_point_us is not None and t <= st.last_point_us):
        return None
    st.last_point_us = t
    return t, sum(sign * st.latest[sid][1] for sid, sign in spec.meters)


def _largest_excess(spec: AreaSpec, st: AreaState, day: int, b: int, *, night: bool = False) -> str:
    """The meter whose signed flow is furthest above its own usual value."""
    best, best_excess = spec.meters[0][0], -float("inf")
    for sid, sign in spec.meters:
        if night:
            sn = st.meter_nights.get(sid, {})
            if day not in sn:
                continue
            s, n = sn[day]
            before = [s2 / n2 for d, (s2, n2) in sn.items() if d < day and n2]
            if not before:
                continue
            excess = s / n - statistics.median(before)
        else:
            usual = _median_of_days(spec, st.meter_days.get(sid, {}), day, b)
            if usual is None:
                continue
            excess = sign * st.latest[sid][1] - usual
        if excess > best_excess:
            best, best_excess = sid, excess
    return best


def _on_point(spec: AreaSpec, st: AreaState, t: int, supply: float) -> list[AreaEvent]:
    events: list[AreaEvent] = []
    day, b = local_day_and_bin(t, spec.bin_s)
    expected = expected_supply(spec, st, day, b)
    if expected is not None:
        excess = supply - expected
        if not st.burst:
            st.over = st.over + 1 if excess >= spec.burst_rise_lps else 0
            if st.over >= spec.burst_points:
                st.burst, st.over, st.under = True, 0, 0
                st.burst_sensor = _largest_excess(spec, st, day, b)
                events.append(
                    AreaEvent(
                        "raised",
                        "water_burst",
                        t,
                        excess,
                        spec.burst_rise_lps,
                        supply,
                        expected,
                        st.burst_sensor,
                    )
                )
        else:
            st.under = st.under + 1 if excess < spec.burst_rise_lps / 2 else 0
            if st.under >= spec.burst_points:
                st.burst, st.over, st.under = False, 0, 0
                events.append(
                    AreaEvent(
                        "cleared",
                        "water_burst",
                        t,
                        excess,
                        spec.burst_rise_lps,
                        supply,
                        expected,
                        st.burst_sensor or spec.alert_sensor,
                    )
                )
    events.extend(_sources(spec, st, t, day, b))
    # learn the profile, but not from a burst or a lost supply (it would become "normal")
    if not st.burst and not st.low_active:
        _add(st.days, day, b, supply)
        for sid, sign in spec.meters:
            _add(st.meter_days.setdefault(sid, {}), day, b, sign * st.latest[sid][1])
    for days in (st.days, *st.meter_days.values()):
        for d in [d for d in days if d < day - spec.history_days]:
            del days[d]
    events.extend(_night(spec, st, t, day, supply))
    return events


def _sources(spec: AreaSpec, st: AreaState, t: int, day: int, b: int) -> list[AreaEvent]:
    """Supply lost at a source (a pump trip, a works valve closed): its flow far under its own
    usual for this time of day, for ``burst_points`` points. The area's total may not move
    (service reservoirs make up for it), so the balance alone would not see it."""
    events: list[AreaEvent] = []
    for sid, sign in spec.meters:
        if sid in spec.storage:
            continue
        days = st.meter_days.get(sid, {})
        if sum(1 for d, bins in days.items() if d < day and b in bins) < spec.inlet_min_days:
            continue
        usual = _median_of_days(spec, days, day, b)
        if usual is None:
            continue
        now = sign * st.latest[sid][1]
        drop = usual - now
        need = max(spec.inlet_drop_lps, spec.inlet_drop_share * usual)
        if sid not in st.low_active:
            low = usual >= spec.inlet_min_lps and drop >= need
            st.low[sid] = st.low.get(sid, 0) + 1 if low else 0
            if st.low[sid] >= spec.burst_points:
                st.low_active.add(sid)
                st.low[sid] = 0
                events.append(AreaEvent("raised", "inlet_flow_low", t, drop, need, now, usual, sid))
        else:
            st.low[sid] = st.low.get(sid, 0) + 1 if drop < need / 2 else 0
            if st.low[sid] >= spec.burst_points:
                st.low_active.discard(sid)
                st.low[sid] = 0
                events.append(
                    AreaEvent("cleared", "inlet_flow_low", t, drop, need, now, usual, sid)
                )
    return events


def _night(spec: AreaSpec, st: AreaState, t: int, day: int, supply: float) -> list[AreaEvent]:
    local_h = ((t // US + CHENGDU_UTC_OFFSET_S) % DAY_S) / 3600.0
    if spec.night_start_h <= local_h < spec.night_end_h:
        s, n = st.nights.get(day, (0.0, 0))
        st.nights[day] = (s + supply, n + 1)
        for sid, sign in spec.meters:
            per = st.meter_nights.setdefault(sid, {})
            s, n = per.get(day, (0.0, 0))
            per[day] = (s + sign * st.latest[sid][1], n + 1)
        return []
    if local_h < spec.night_end_h or st.judged_night == day or day not in st.nights:
        return []
    # this night's window is over: judge it against the previous nights
    st.judged_night = day
    s, n = st.nights[day]
    tonight = s / n
    before = [
        s2 / n2 for d, (s2, n2) in st.nights.items() if day - spec.history_days <= d < day and n2
    ]
    for nights in (st.nights, *st.meter_nights.values()):
        for d in [d for d in nights if d < day - spec.history_days]:
            del nights[d]
    if not before:
        return []
    usual = statistics.median(before)
    excess = tonight - usual
    if not st.night_high and excess >= spec.night_rise_lps:
        st.night_high = True
        st.night_sensor = _largest_excess(spec, st, day, 0, night=True)
        return [
            AreaEvent(
                "raised",
                "night_flow_rise",
                t,
                excess,
                spec.night_rise_lps,
                tonight,
                usual,
                st.night_sensor,
            )
        ]
    if st.night_high and excess < spec.night_rise_lps / 2:
        st.night_high = False
        return [
            AreaEvent(
                "cleared",
                "night_flow_rise",
                t,
                excess,
                spec.night_rise_lps,
                tonight,
                usual,
                st.night_sensor or spec.alert_sensor,
            )
        ]
    return []


def _add(days: dict[int, dict[int, tuple[float, int]]], day: int, b: int, value: float) -> None:
    bins = days.setdefault(day, {})
    s, n = bins.get(b, (0.0, 0))
    bins[b] = (s + value, n + 1)


def meters_of(areas: Sequence[AreaSpec]) -> dict[str, list[str]]:
    """sensor id -> the areas it meters."""
    out: dict[str, list[str]] = {}
    for a in areas:
        for sid, _ in a.meters:
            out.setdefault(sid, []).append(a.area_id)
    return out
