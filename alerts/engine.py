"""The streaming engine's pure core: per-sensor detector state, readings in, alert changes out.

The service (alerts/service.py) feeds it one batch of decoded readings at a time, stores the
changes, and only then calls ``commit`` so that a failed database transaction leaves the
in-memory state where the database is (the batch is evaluated again on retry).

Per (sensor, quantity) the engine runs the threshold detector whenever the sensor type has limits
for the quantity, and the detectors enabled in ``alert_detector_settings`` (``StreamConfig``):
rate of change, stuck, silent, graded gas levels. Every detector yields one alert *kind*; the
set of active kinds per key is the state that a restart restores from the open alerts.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from alerts.balance import AreaSpec, AreaState, meters_of, step_area
from alerts.detectors import (
    THRESHOLD_HIGH,
    THRESHOLD_LOW,
    Flat,
    ThresholdState,
    step_flat,
    step_gas_levels,
    step_rate_of_change,
    step_spike,
    step_threshold,
)
from alerts.messages import (
    area_messages,
    detector_messages,
    threshold_messages,
    threshold_severity,
)
from sensors.catalogue import QuantityLimits
from sensors.payload import Reading

Key = tuple[str, str]  # (sensor_id, quantity)
US = 1_000_000

SPIKE_CLEAR_S = 3600.0  # a spiky sensor is healthy again after an hour without a spike
INTERVAL_SMOOTHING = 0.2  # weight of the newest gap in the usual reporting interval

# Consequential-alarm suppression (ISA-18.2 "alarm rationalisation"): a dead 10 kV bus reports
# 0 V and 0 Hz; the low-voltage alert says it all, so a frequency this low is read as "no
# signal" (a gap), not as a second alert per bus. [Hz]
NO_SIGNAL_BELOW = {"frequency": 1.0}


def in_partition(sensor_id: str, partition: tuple[int, int]) -> bool:
    """Whether worker ``k`` of ``n`` (``partition = (k, n)``) owns this sensor: a stable hash
    (CRC-32), the same in every process and on every start."""
    k, n = partition
    return n <= 1 or zlib.crc32(sensor_id.encode()) % n == k


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """Detectors enabled for one sensor type and quantity, with their parameters."""

    rate: tuple[float, float] | None = None  # (max_change [unit], window_s [s])
    rate_rise_only: bool = False  # only a rise counts (combustible gas: a fall is no leak)
    stuck: tuple[float, float, int] | None = None  # (window_s [s], tolerance [unit], min_points)
    silent_factor: float | None = None  # silent after this many missed reports
    gas_levels: bool = False
    spike: tuple[float, float] | None = None  # (relative band, absolute floor [unit])
    on_delay: int = 1  # threshold: consecutive readings beyond a limit before it raises
    severity: Mapping[str, str] = field(default_factory=dict)  # detector -> severity

    @property
    def window_s(self) -> float:
        """How much history the windowed detectors keep per key (rate of change; the stuck
        test keeps a constant-size run instead)."""
        return self.rate[1] if self.rate else 0.0


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """A sensor as the engine needs it: utility, limits and detectors per quantity."""

    sensor_id: str
    utility: str
    sensor_type: str
    limits: Mapping[str, QuantityLimits]
    expected_interval_s: float = 60.0
    streams: Mapping[str, StreamConfig] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the engine remembers per sensor and quantity."""

    last_ts_us: int | None = None  # newest reading evaluated [us]
    active: frozenset[str] = frozenset()  # alert kinds whose condition is active
    recent: tuple[tuple[int, float], ...] = ()  # (ts_us, value) within the longest window
    pending: str | None = None  # threshold kind beyond its limit, waiting for the on-delay
    pending_count: int = 0
    last_values: tuple[float, ...] = ()  # the last two values (spike test)
    spike_us: int | None = None  # when the last spike was seen [us]
    interval_us: float | None = None  # the key's usual interval between arrivals (smoothed) [us]
    arrived_us: int | None = None  # the stream's clock when its readings last arrived [us]
    flat: Flat | None = None  # the stuck test's current flat run


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert to raise or to clear, with everything the row and the event carry."""

    event: Literal["raised", "cleared"]
    sensor_id: str
    utility: str
    quantity: str
    kind: str
    severity: str
    value: float  # [canonical unit] (silent: the gap [s])
    limit: float | None  # [canonical unit] (silent: the allowed gap [s])
    ts_us: int  # reading time [us] (silent: when the silence was noticed)
    message_zh: str
    message_en: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    changes: tuple[AlertChange, ...]
    states: Mapping[Key, KeyState]  # new state of every key the batch touched
    unknown_sensors: frozenset[str] = frozenset()
    evaluated: int = 0  # readings that reached a detector
    stream_us: int | None = None  # the newest reading time evaluated (the stream's clock)
    areas: Mapping[str, AreaState] = field(default_factory=dict)  # metered areas touched


class Engine:
    def __init__(
        self,
        sensors: Mapping[str, SensorInfo],
        states: Mapping[Key, KeyState] | None = None,
        areas: Mapping[str, AreaSpec] | None = None,
    ) -> None:
        self.sensors = dict(sensors)
        self.states: dict[Key, KeyState] = dict(states or {})
        self.area_states: dict[str, AreaState] = {}
        self.set_areas(areas or {})
        # the stream's clock: the newest reading time evaluated (replays and backlogs run on
        # it, not on the wall clock)
        self.stream_us: int | None = max(
            (st.last_ts_us for st in self.states.values() if st.last_ts_us is not None),
            default=None,
        )

    def set_areas(self, areas: Mapping[str, AreaSpec]) -> None:
        """The metered areas (alerts/balance.py); a redefined area keeps what it learnt."""
        self.areas = dict(areas)
        self._meters = meters_of(list(self.areas.values()))

    def evaluate(self, readings: Iterable[Reading]) -> Evaluation:
        """Evaluate a batch without changing the engine (see ``commit``).

        Readings are taken in time order within the batch, so a gateway's buffer that arrives
        shuffled is still evaluated; across batches, readings not newer than the last one
        evaluated for their key (duplicates, redeliveries, late arrivals) are ignored, as are
        NaN and infinite values.
        """
        touched: dict[Key, KeyState] = {}
        changes: list[AlertChange] = []
        unknown: set[str] = set()
        stamps: list[int] = []  # reading times evaluated in this batch
        evaluated = 0
        metered: dict[str, list[tuple[str, int, float]]] = {}
        for r in sorted(readings, key=lambda r: r.ts_us):
            if r.quantity == "flow" and r.sensor_id in self._meters and math.isfinite(r.value):
                for area_id in self._meters[r.sensor_id]:
                    metered.setdefault(area_id, []).append((r.sensor_id, r.ts_us, r.value))
            info = self.sensors.get(r.sensor_id)
            if info is None:
                unknown.add(r.sensor_id)
                continue
            limits = info.limits.get(r.quantity)
            cfg = info.streams.get(r.quantity)
            if limits is None and cfg is None:
                continue  # nothing watches this quantity of this sensor type
            key = (r.sensor_id, r.quantity)
            state = touched.get(key) or self.states.get(key) or KeyState()
            if not math.isfinite(r.value) or r.value < NO_SIGNAL_BELOW.get(r.quantity, -math.inf):
                continue
            if state.last_ts_us is not None and r.ts_us <= state.last_ts_us:
                continue
            evaluated += 1
            stamps.append(r.ts_us)
            touched[key] = self._step(info, limits, cfg, state, r, changes)
        areas: dict[str, AreaState] = {}
        for area_id, flows in metered.items():
            spec = self.areas[area_id]
            areas[area_id], area_events = step_area(
                spec, self.area_states.get(area_id) or AreaState(), flows
            )
            for ev in area_events:
                zh, en = area_messages(
                    ev.event, ev.kind, spec.name, ev.value, ev.supply, ev.expected
                )
                changes.append(
                    AlertChange(
                        ev.event,
                        ev.sensor_id or spec.alert_sensor,
                        "water",
                        "flow",
                        ev.kind,
                        "critical" if ev.kind == "water_burst" else "major",
                        ev.value,
                        ev.limit,
                        ev.ts_us,
                        zh,
                        en,
                    )
                )
        # the stream's clock moves with the median reading time of the batch, not the newest:
        # one sensor with a clock 10 min fast must not make every other sensor look late
        newest = sorted(stamps)[len(stamps) // 2] if stamps else 0
        stream = max(newest, self.stream_us or 0) or None
        if stream is not None:
            # each key's rhythm is how often its readings *arrive*, on the stream's clock: a
            # gateway that uploads every 15 min of 5-min readings is silent only after 3 x 15 min
            for key, st in touched.items():
                interval = st.interval_us
                if st.arrived_us is not None and stream > st.arrived_us:
                    gap = float(stream - st.arrived_us)
                    interval = (
                        gap
                        if interval is None
                        else interval + INTERVAL_SMOOTHING * (gap - interval)
                    )
                touched[key] = replace(st, interval_us=interval, arrived_us=stream)
        return Evaluation(tuple(changes), touched, frozenset(unknown), evaluated, stream, areas)

    def _step(
        self,
        info: SensorInfo,
        limits: QuantityLimits | None,
        cfg: StreamConfig | None,
        state: KeyState,
        r: Reading,
        out: list[AlertChange],
    ) -> KeyState:
        active = set(state.active)

        def emit(
            event: Literal["raised", "cleared"],
            kind: str,
            severity: str,
            value: float,
            limit: float | None,
            msgs: tuple[str, str],
        ) -> None:
            (active.add if event == "raised" else active.discard)(kind)
            out.append(
                AlertChange(
                    event,
                    r.sensor_id,
                    info.utility,
                    r.quantity,
                    kind,
                    severity,
                    value,
                    limit,
                    r.ts_us,
                    *msgs,
                )
            )

        pending: str | None = None
        pending_count = 0
        # graded %LEL levels replace the single combustible-gas limit (no double alarm at 20 %)
        if limits is not None and not (cfg is not None and cfg.gas_levels):
            th_active = (
                THRESHOLD_HIGH
                if THRESHOLD_HIGH in active
                else THRESHOLD_LOW
                if THRESHOLD_LOW in active
                else None
            )
            th_state, events = step_threshold(
                ThresholdState(
                    state.last_ts_us,
                    th_active,
                    state.pending,  # type: ignore[arg-type]
                    state.pending_count,
                ),
                limits,
                r.ts_us,
                r.value,
                on_delay=cfg.on_delay if cfg is not None else 1,
            )
            pending, pending_count = th_state.pending, th_state.pending_count
            for ev in events:
                emit(
                    ev.event,
                    ev.kind,
                    threshold_severity(info.utility, r.quantity, ev.kind),
                    ev.value,
                    ev.limit,
                    threshold_messages(
                        ev.event, ev.kind, r.sensor_id, r.quantity, ev.value, ev.limit
                    ),
                )
        if "silent" in active:
            emit(
                "cleared",
                "silent",
                self._severity(cfg, "silent"),
                r.value,
                None,
                detector_messages("cleared", "silent", r.sensor_id, r.quantity, r.value, None),
            )
        recent = state.recent
        spike_us = state.spike_us
        if spike_us is None and "spike" in active:
            spike_us = r.ts_us  # restored after a restart: the quiet hour starts now
        flat = state.flat
        if cfg is not None and cfg.spike is not None:
            rel, floor = cfg.spike
            out_by = step_spike(state.last_values, r.value, rel=rel, floor=floor)
            if out_by is not None:
                spike_us = r.ts_us
                if "spike" not in active:
                    spiked = state.last_values[-1]
                    emit(
                        "raised",
                        "spike",
                        self._severity(cfg, "spike"),
                        spiked,
                        abs(out_by),
                        detector_messages(
                            "raised", "spike", r.sensor_id, r.quantity, spiked, abs(out_by)
                        ),
                    )
            elif (
                "spike" in active
                and spike_us is not None
                and r.ts_us - spike_us > SPIKE_CLEAR_S * US
            ):
                emit(
                    "cleared",
                    "spike",
                    self._severity(cfg, "spike"),
                    r.value,
                    None,
                    detector_messages("cleared", "spike", r.sensor_id, r.quantity, r.value, None),
                )
        if cfg is not None:
            if cfg.rate is not None:
                max_change, window_s = cfg.rate
                was = "rate_of_change" in active
                now, change = step_rate_of_change(
                    recent, r.ts_us, r.value, max_change=max_change, window_s=window_s, active=was
                )
                if cfg.rate_rise_only and change < 0:
                    now = False
                if now != was:
                    ev_name: Literal["raised", "cleared"] = "raised" if now else "cleared"
                    emit(
                        ev_name,
                        "rate_of_change",
                        self._severity(cfg, "rate_of_change"),
                        change if now else r.value,
                        max_change,
                        detector_messages(
                            ev_name,
                            "rate_of_change",
                            r.sensor_id,
                            r.quantity,
                            change,
                            max_change,
                            window_s=window_s,
                        ),
                    )
            if cfg.stuck is not None:
                window_s, tol, min_points = cfg.stuck
                was = "stuck" in active
                if was and flat is None:
                    # restored after a restart: still stuck while it reads the same value
                    flat = (r.value, r.value, r.ts_us - int(window_s * US), min_points)
                now, flat, _spread = step_flat(
                    flat,
                    r.ts_us,
                    r.value,
                    window_s=window_s,
                    tolerance=tol,
                    min_points=min_points,
                    active=was,
                )
                if now != was:
                    ev_name = "raised" if now else "cleared"
                    emit(
                        ev_name,
                        "stuck",
                        self._severity(cfg, "stuck"),
                        r.value,
                        tol,
                        detector_messages(
                            ev_name,
                            "stuck",
                            r.sensor_id,
                            r.quantity,
                            r.value,
                            tol,
                            window_s=window_s,
                        ),
                    )
            if cfg.gas_levels:
                for gas_ev, kind, severity, level in step_gas_levels(frozenset(active), r.value):
                    ev_name = "raised" if gas_ev == "raised" else "cleared"
                    emit(
                        ev_name,
                        kind,
                        severity,
                        r.value,
                        level,
                        detector_messages(ev_name, kind, r.sensor_id, r.quantity, r.value, level),
                    )
            if cfg.window_s > 0:
                keep_from = r.ts_us - int(cfg.window_s * US)
                recent = (*(p for p in recent if p[0] >= keep_from), (r.ts_us, r.value))
        return KeyState(
            r.ts_us,
            frozenset(active),
            recent,
            pending,
            pending_count,
            (*state.last_values[-1:], r.value),
            spike_us,
            state.interval_us,
            state.arrived_us,
            flat,
        )

    @staticmethod
    def _severity(cfg: StreamConfig | None, detector: str) -> str:
        return cfg.severity.get(detector, "warning") if cfg is not None else "warning"

    def check_silence(self, now_us: int) -> Evaluation:
        """Raise ``silent`` for every watched key whose last reading is older than its
        ``silent_factor`` x the sensor type's ``expected_interval_s`` (pure: ``now_us`` given)."""
        changes: list[AlertChange] = []
        touched: dict[Key, KeyState] = {}
        for key, state in self.states.items():
            info = self.sensors.get(key[0])
            cfg = info.streams.get(key[1]) if info else None
            if info is None or cfg is None or cfg.silent_factor is None:
                continue
            if "silent" in state.active or state.last_ts_us is None:
                continue
            if state.interval_us is None:
                continue  # its rhythm is known from its second reading on
            # a sensor that reports less often than its type says (a gateway's schedule, a
            # simulator's step) is judged on its own usual interval
            usual_s = max(info.expected_interval_s, (state.interval_us or 0.0) / US)
            allowed_s = cfg.silent_factor * usual_s
            gap_s = (now_us - state.last_ts_us) / US
            if gap_s <= allowed_s:
                continue
            zh, en = detector_messages(
                "raised",
                "silent",
                key[0],
                key[1],
                gap_s,
                allowed_s,
                interval_s=usual_s,
            )
            changes.append(
                AlertChange(
                    "raised",
                    key[0],
                    info.utility,
                    key[1],
                    "silent",
                    self._severity(cfg, "silent"),
                    gap_s,
                    allowed_s,
                    now_us,
                    zh,
                    en,
                )
            )
            touched[key] = replace(state, active=state.active | {"silent"})
        return Evaluation(tuple(changes), touched)

    def commit(self, evaluation: Evaluation) -> None:
        self.states.update(evaluation.states)
        self.area_states.update(evaluation.areas)
        if evaluation.stream_us is not None:
            self.stream_us = max(self.stream_us or 0, evaluation.stream_us)
