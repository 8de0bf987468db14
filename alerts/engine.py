"""The streaming engine's pure core: per-sensor detector state, readings in, alert changes out.

The service (alerts/service.py) feeds it one batch of decoded readings at a time, stores the
changes, and only then calls ``commit`` so that a failed database transaction leaves the
in-memory state where the database is (the batch is evaluated again on retry).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from alerts.detectors import ThresholdState, step_threshold
from alerts.messages import threshold_messages, threshold_severity
from sensors.catalogue import QuantityLimits
from sensors.payload import Reading

Key = tuple[str, str]  # (sensor_id, quantity)


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """A sensor as the engine needs it: its utility and its type's limits per quantity."""

    sensor_id: str
    utility: str
    sensor_type: str
    limits: Mapping[str, QuantityLimits]


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert to raise or to clear, with everything the row and the event carry."""

    event: Literal["raised", "cleared"]
    sensor_id: str
    utility: str
    quantity: str
    kind: str
    severity: str
    value: float  # [canonical unit]
    limit: float | None  # [canonical unit]
    ts_us: int  # reading time [us]
    message_zh: str
    message_en: str


@dataclass(frozen=True, slots=True)
class Evaluation:
    changes: tuple[AlertChange, ...]
    states: Mapping[Key, ThresholdState]  # new state of every key the batch touched
    unknown_sensors: frozenset[str] = field(default_factory=frozenset)
    evaluated: int = 0  # readings that reached a detector


class Engine:
    def __init__(
        self,
        sensors: Mapping[str, SensorInfo],
        states: Mapping[Key, ThresholdState] | None = None,
    ) -> None:
        self.sensors = dict(sensors)
        self.states: dict[Key, ThresholdState] = dict(states or {})

    def evaluate(self, readings: Iterable[Reading]) -> Evaluation:
        """Evaluate a batch without changing the engine (see ``commit``).

        Readings are taken in time order within the batch, so a gateway's buffer that arrives
        shuffled is still evaluated; across batches, older readings are ignored by the detector.
        """
        touched: dict[Key, ThresholdState] = {}
        changes: list[AlertChange] = []
        unknown: set[str] = set()
        evaluated = 0
        for r in sorted(readings, key=lambda r: r.ts_us):
            info = self.sensors.get(r.sensor_id)
            if info is None:
                unknown.add(r.sensor_id)
                continue
            limits = info.limits.get(r.quantity)
            if limits is None:
                continue  # a quantity this sensor type has no limits for
            key = (r.sensor_id, r.quantity)
            state = touched.get(key) or self.states.get(key) or ThresholdState()
            new_state, events = step_threshold(state, limits, r.ts_us, r.value)
            evaluated += 1
            if new_state is not state:
                touched[key] = new_state
            for ev in events:
                zh, en = threshold_messages(
                    ev.event, ev.kind, r.sensor_id, r.quantity, ev.value, ev.limit
                )
                changes.append(
                    AlertChange(
                        event=ev.event,
                        sensor_id=r.sensor_id,
                        utility=info.utility,
                        quantity=r.quantity,
                        kind=ev.kind,
                        severity=threshold_severity(info.utility, r.quantity, ev.kind),
                        value=ev.value,
                        limit=ev.limit,
                        ts_us=ev.ts_us,
                        message_zh=zh,
                        message_en=en,
                    )
                )
        return Evaluation(tuple(changes), touched, frozenset(unknown), evaluated)

    def commit(self, evaluation: Evaluation) -> None:
        self.states.update(evaluation.states)
