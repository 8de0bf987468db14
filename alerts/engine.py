"""The streaming engine's pure core: per-sensor detector state, readings in, alert changes out.

The service (alerts/service.py) feeds it one batch of decoded readings at a time, stores the
changes, and only then calls ``commit`` so that a failed database transaction leaves the
in-memory state where the database is (the batch is evaluated again on retry).

Per (sensor, quantity) the engine runs the detectors configured for the sensor type and
quantity (``StreamConfig``, alerts/detectors/): the threshold wherever the catalogue has limits,
and those enabled in ``alert_detector_settings``. It knows none of them by name: each keeps its
own state per key and answers with signals. Every detector yields alert *kinds*; the set of
active kinds per key is the state that a restart restores from the open alerts. The water
balance of metered areas (alerts/balance.py) runs beside them, per area; its learnt state is
given back at start (``area_states``, kept in ``alert_balance_state``).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec

from alerts.balance import (
    AreaEvent,
    AreaSpec,
    AreaState,
    learnt_from_other_meters,
    meters_of,
    relearn,
    step_area,
)
from alerts.detectors import UNCONFIGURED, StreamConfig
from alerts.detectors.base import KeyClock, Observation, Signal
from alerts.messages import area_messages, quantity_names
from alerts.source_loss import (
    LossStep,
    SensorClock,
    SourceLoss,
    SourceLossRule,
    covered,
    step_losses,
)
from sensors.catalogue import QuantityLimits
from sensors.payload import Reading

Key = tuple[str, str]  # (sensor_id, quantity)
US = 1_000_000

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
class SensorInfo:
    """A sensor as the engine needs it: utility, limits and detectors per quantity."""

    sensor_id: str
    utility: str
    sensor_type: str
    limits: Mapping[str, QuantityLimits]
    expected_interval_s: float = 60.0
    streams: Mapping[str, StreamConfig] = field(default_factory=dict)


class KeyState(msgspec.Struct, frozen=True):
    """What the engine remembers per sensor and quantity (a Struct: one is made per reading)."""

    last_ts_us: int | None = None  # newest reading evaluated [us]
    active: frozenset[str] = frozenset()  # alert kinds whose condition is active
    interval_us: float | None = None  # the key's usual interval between arrivals (smoothed) [us]
    arrived_us: int | None = None  # the stream's clock when its readings last arrived [us]
    # detector name -> its own state
    detectors: dict[str, Any] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert to raise or to clear, with everything the row and the event carry; ``grown``:
    the active alert's cause grew (recorded on it and escalated, not a new alert)."""

    event: Literal["raised", "cleared", "grown"]
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
    # the clock's look at source losses (alerts/source_loss.py); None: it did not look
    losses: LossStep | None = None


class Engine:
    def __init__(
        self,
        sensors: Mapping[str, SensorInfo],
        states: Mapping[Key, KeyState] | None = None,
        areas: Mapping[str, AreaSpec] | None = None,
        area_states: Mapping[str, AreaState] | None = None,
    ) -> None:
        self.sensors = dict(sensors)
        self.states: dict[Key, KeyState] = dict(states or {})
        self.area_states: dict[str, AreaState] = dict(area_states or {})
        self.set_areas(areas or {})
        # source losses (alerts/source_loss.py): the rule, the open losses, sensors' districts
        self.loss_rule = SourceLossRule()
        self.losses: tuple[SourceLoss, ...] = ()
        self.districts: dict[str, int | None] = {}
        self._clocks: dict[str, SensorClock] = {}  # sensor_clocks, by sensor
        self._clocks_built = False
        # the stream's clock: the newest reading time evaluated (replays and backlogs run on
        # it, not on the wall clock)
        self.stream_us: int | None = max(
            (st.last_ts_us for st in self.states.values() if st.last_ts_us is not None),
            default=None,
        )

    def set_areas(self, areas: Mapping[str, AreaSpec]) -> None:
        """The metered areas (alerts/balance.py); a redefined area keeps what it learnt while
        its meters are the same, and learns again (its open alerts kept) when they are not."""
        self.areas = dict(areas)
        for area_id, spec in self.areas.items():
            st = self.area_states.get(area_id)
            if st is not None and learnt_from_other_meters(st, spec):
                self.area_states[area_id] = relearn(st)
        self._meters = meters_of(list(self.areas.values()))

    def evaluate(self, readings: Iterable[Reading]) -> Evaluation:
        """Evaluate a batch without changing the engine (see ``commit``).

        Readings are taken in time order within the batch, so a gateway's buffer that arrives
        shuffled is still evaluated; across batches, readings not newer than the last one
        evaluated for their key (duplicates, redeliveries, late arrivals) are ignored, as are
        NaN and infinite values.
        """
        ordered = sorted(readings, key=lambda r: r.ts_us)
        touched: dict[Key, KeyState] = {}
        changes: list[AlertChange] = []
        stamps: list[int] = []  # reading times evaluated, in time order
        lost = covered(self.losses)
        for r in ordered:
            info = self.sensors.get(r.sensor_id)
            key = (r.sensor_id, r.quantity)
            state = touched.get(key) or self.states.get(key) or KeyState()
            if info is not None and _reaches_detectors(info, state, r):
                stamps.append(r.ts_us)
                if r.sensor_id in lost:
                    held: list[AlertChange] = []
                    touched[key] = _held_back(_step(info, state, r, held), held, changes)
                else:
                    touched[key] = _step(info, state, r, changes)
        areas = self._step_areas(ordered, changes, lost)
        # the stream's clock moves with the median reading time of the batch, not the newest:
        # one sensor with a clock 10 min fast must not make every other sensor look late
        median = stamps[len(stamps) // 2] if stamps else 0
        stream = max(median, self.stream_us or 0) or None
        if stream is not None:
            touched = {key: _arrived(st, stream) for key, st in touched.items()}
        unknown = frozenset(r.sensor_id for r in ordered if r.sensor_id not in self.sensors)
        return Evaluation(tuple(changes), touched, unknown, len(stamps), stream, areas)

    def _step_areas(
        self, ordered: Sequence[Reading], changes: list[AlertChange], lost: frozenset[str]
    ) -> dict[str, AreaState]:
        """The water balance of each metered area the batch's inlet flows touch, except areas
        metered by a sensor of an open source loss (their balance would see the gap)."""
        flows: dict[str, list[tuple[str, int, float]]] = {}
        blind = {area_id for sid in lost for area_id in self._meters.get(sid, ())}
        for r in ordered:
            if r.quantity == "flow" and r.sensor_id in self._meters and math.isfinite(r.value):
                for area_id in self._meters[r.sensor_id]:
                    flows.setdefault(area_id, []).append((r.sensor_id, r.ts_us, r.value))
        areas: dict[str, AreaState] = {}
        for area_id, area_flows in flows.items():
            if area_id in blind:
                continue
            spec = self.areas[area_id]
            before = self.area_states.get(area_id) or AreaState()
            areas[area_id], events = step_area(spec, before, area_flows)
            changes.extend(_area_change(spec, ev) for ev in events)
        return areas

    def check_clock(self, now_us: int) -> Evaluation:
        """What the stream's clock raises between readings (silence): first the source losses
        (alerts/source_loss.py), then every key's detectors' ``on_clock`` at ``now_us`` [us],
        except for the sensors of an open loss: they raise nothing, and a silent alert one of
        them raised before its loss was seen is cleared into it (pure: the caller gives the
        time)."""
        losses = step_losses(self.sensor_clocks(), self.losses, self.loss_rule, now_us)
        lost = covered(losses.open)
        changes: list[AlertChange] = []
        touched: dict[Key, KeyState] = {}
        for (sensor_id, quantity), state in self.states.items():
            info = self.sensors.get(sensor_id)
            cfg = info.streams.get(quantity) if info is not None else None
            if info is None or cfg is None:
                continue
            if sensor_id in lost:
                if "silent" in state.active:
                    changes.append(_into_loss(info, quantity, state, now_us))
                    active = state.active - {"silent"}
                    touched[(sensor_id, quantity)] = msgspec.structs.replace(state, active=active)
                continue
            clock = KeyClock(
                sensor_id,
                quantity,
                state.active,
                state.last_ts_us,
                state.interval_us,
                info.expected_interval_s,
                now_us,
            )
            signals = [s for det in cfg.detectors if (s := det.on_clock(clock)) is not None]
            if signals:
                changes += [_change(s, info, quantity, now_us) for s in signals]
                active = _after(state.active, signals)
                touched[(sensor_id, quantity)] = msgspec.structs.replace(state, active=active)
        return Evaluation(tuple(changes), touched, losses=losses)

    def sensor_clocks(self) -> list[SensorClock]:
        """Each sensor's newest reading over its watched keys and its usual interval, for the
        source-loss rule (``_sensor_clock``). Kept up to date by ``commit`` for the sensors a
        batch touched (a look at the clock at 50,000 sensors must not rebuild them all), and
        rebuilt after ``catalogue_changed``."""
        if not self._clocks_built:
            self._clocks = {}
            self._update_clocks({sid for sid, _ in self.states})
            self._clocks_built = True
        return list(self._clocks.values())

    def catalogue_changed(self) -> None:
        """The sensors or their districts were given again: rebuild the sensors' clocks."""
        self._clocks_built = False

    def _update_clocks(self, sensor_ids: Iterable[str]) -> None:
        for sid in sensor_ids:
            clock = self._sensor_clock(sid)
            if clock is None:
                self._clocks.pop(sid, None)
            else:
                self._clocks[sid] = clock

    def _sensor_clock(self, sensor_id: str) -> SensorClock | None:
        """The sensor's newest reading over its watched keys and the shortest of their usual
        intervals (each the larger of its type's and its own); None while its rhythm is not
        known yet (fewer than two arrivals), as for the silent detector."""
        info = self.sensors.get(sensor_id)
        if info is None:
            return None
        last, usual = None, math.inf
        for quantity in info.streams:
            st = self.states.get((sensor_id, quantity))
            if st is None or st.last_ts_us is None or st.interval_us is None:
                continue
            last = st.last_ts_us if last is None else max(last, st.last_ts_us)
            usual = min(usual, max(info.expected_interval_s * US, st.interval_us))
        if last is None:
            return None
        return SensorClock(sensor_id, info.utility, self.districts.get(sensor_id), last, usual)

    def commit(self, evaluation: Evaluation) -> None:
        self.states.update(evaluation.states)
        self.area_states.update(evaluation.areas)
        if evaluation.losses is not None:
            self.losses = evaluation.losses.open
        if evaluation.stream_us is not None:
            self.stream_us = max(self.stream_us or 0, evaluation.stream_us)
        if self._clocks_built:
            self._update_clocks({sid for sid, _ in evaluation.states})


def _reaches_detectors(info: SensorInfo, state: KeyState, r: Reading) -> bool:
    """Something watches this quantity of this sensor, the value is finite and above its
    no-signal floor, and the reading is newer than the key's last one."""
    if r.quantity not in info.limits and r.quantity not in info.streams:
        return False
    if not math.isfinite(r.value) or r.value < NO_SIGNAL_BELOW.get(r.quantity, -math.inf):
        return False
    return state.last_ts_us is None or r.ts_us > state.last_ts_us


def _step(info: SensorInfo, state: KeyState, r: Reading, out: list[AlertChange]) -> KeyState:
    """One reading through the key's detectors in registry order; each sees the alert kinds as
    the ones before it left them."""
    cfg = info.streams.get(r.quantity) or UNCONFIGURED
    limits = info.limits.get(r.quantity)
    own = dict(state.detectors)
    obs = Observation(r.sensor_id, info.utility, r.quantity, r.ts_us, r.value, limits, state.active)
    for det in cfg.detectors:
        own[det.name], signals = det.step(own.get(det.name), obs)
        if signals:
            obs = msgspec.structs.replace(obs, active=_after(obs.active, signals))
            out += [_change(s, info, r.quantity, r.ts_us) for s in signals]
    return KeyState(r.ts_us, obs.active, state.interval_us, state.arrived_us, own)


def _held_back(state: KeyState, signals: list[AlertChange], out: list[AlertChange]) -> KeyState:
    """A reading of a sensor in an open source loss: what it raises is dropped (the gap and the
    backlog after it say nothing about the city), and the kinds it would have raised are left
    inactive, so that a condition that lasts raises at the first reading after the loss; its
    clears of alerts raised before the loss go through."""
    dropped = {c.kind for c in signals if c.event == "raised"}
    out += [c for c in signals if c.event != "raised"]
    if not dropped:
        return state
    return msgspec.structs.replace(state, active=state.active - dropped)


def _into_loss(info: SensorInfo, quantity: str, state: KeyState, now_us: int) -> AlertChange:
    """The clear of a silent alert whose sensor turned out to be part of a source loss."""
    q_zh, q_en = quantity_names(quantity)
    sid = info.sensor_id
    return AlertChange(
        "cleared",
        sid,
        info.utility,
        quantity,
        "silent",
        "warning",
        0.0,
        None,
        now_us,
        f"{sid} {q_zh}无数据归入数据源中断",
        f"{sid}: missing {q_en} readings are part of a source loss",
    )


def _after(active: frozenset[str], signals: Iterable[Signal]) -> frozenset[str]:
    """The active kinds once ``signals`` are applied, in order."""
    kinds = set(active)
    for s in signals:
        (kinds.add if s.event == "raised" else kinds.discard)(s.kind)
    return frozenset(kinds)


def _change(s: Signal, info: SensorInfo, quantity: str, ts_us: int) -> AlertChange:
    zh, en = s.messages
    return AlertChange(
        s.event,
        info.sensor_id,
        info.utility,
        quantity,
        s.kind,
        s.severity,
        s.value,
        s.limit,
        ts_us,
        zh,
        en,
    )


def _arrived(st: KeyState, stream_us: int) -> KeyState:
    """The key's rhythm is how often its readings *arrive*, on the stream's clock: a gateway
    that uploads every 15 min of 5-min readings is silent only after 3 x 15 min."""
    interval = st.interval_us
    if st.arrived_us is not None and stream_us > st.arrived_us:
        gap = float(stream_us - st.arrived_us)
        interval = gap if interval is None else interval + INTERVAL_SMOOTHING * (gap - interval)
    return KeyState(st.last_ts_us, st.active, interval, stream_us, st.detectors)


def _area_change(spec: AreaSpec, ev: AreaEvent) -> AlertChange:
    """A metered area's event as an alert on the inlet meter that carries it."""
    zh, en = area_messages(
        ev.event,
        ev.kind,
        spec.name,
        ev.value,
        ev.supply,
        ev.expected,
        before=ev.before,
        persistent=ev.persistent,
    )
    # a leak that keeps growing is escalated to critical, as a burst is
    severity = "critical" if ev.kind == "water_burst" or ev.event == "grown" else "major"
    sensor_id = ev.sensor_id or spec.alert_sensor
    return AlertChange(
        ev.event,
        sensor_id,
        "water",
        "flow",
        ev.kind,
        severity,
        ev.value,
        ev.limit,
        ev.ts_us,
        zh,
        en,
    )


def wanted_history(sensors: Mapping[str, SensorInfo]) -> dict[tuple[str, str], float]:
    """(sensor type, quantity) -> seconds of stored readings its detectors want back after a
    restart (the windowed ones; ``Detector.warm``)."""
    wanted: dict[tuple[str, str], float] = {}
    for info in sensors.values():
        for quantity, cfg in info.streams.items():
            if cfg.history_s > 0:
                wanted[(info.sensor_type, quantity)] = cfg.history_s
    return wanted


def restored_states(
    sensors: Mapping[str, SensorInfo],
    last_us: Mapping[Key, int],
    active: Mapping[Key, Iterable[str]],
    history: Mapping[Key, Sequence[tuple[int, float]]],
    intervals: Mapping[Key, float] | None = None,
) -> dict[Key, KeyState]:
    """The engine's memory after a restart, from what the database keeps: each key's last
    evaluated reading [us], its active alert kinds, and the stored readings (ts_us, value) its
    windowed detectors want back. Keys of sensors not in ``sensors`` (retired, or another
    worker's) are history and left out; a key keeps the rhythm it had learnt (``intervals``
    [us], kept in alert_detector_state), else its type's until it shows its own."""
    out: dict[Key, KeyState] = {}
    for key in last_us.keys() | active.keys():
        info = sensors.get(key[0])
        if info is None:
            continue
        cfg = info.streams.get(key[1]) or UNCONFIGURED
        points = history.get(key, ())
        own = {d.name: d.warm(points) for d in cfg.detectors if d.history_s > 0 and points}
        interval = (intervals or {}).get(key) or info.expected_interval_s * US
        out[key] = KeyState(last_us.get(key), frozenset(active.get(key, ())), interval, None, own)
    return out
