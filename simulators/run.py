"""A scenario run: physics -> measurement -> faults -> payloads, and its ground truth.

``ScenarioRun.messages(step)`` must be called for steps 0, 1, 2 ... in order (the water model
is an extended-period simulation); it returns the step's messages, and nothing here touches a
broker, a database or a clock, so the same scenario and seed give byte-identical messages.

Sequence numbers count readings per sensor from 1; a dropped reading leaves a gap, as on a
real device. With ``batch_steps > 1`` a sensor's readings are buffered and sent as one compact
batch or SenML pack (a gateway's upload).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from sensors.catalogue import SENSOR_TYPES
from sensors.payload import encode_batch, encode_reading
from sensors.quantities import QUANTITIES
from sensors.topics import telemetry_topic
from simulators.faults import MALFORMED_REASONS, ActiveFault, FaultLayer, Record
from simulators.profiles import Outgoing
from simulators.spec import Scenario
from simulators.world import AFFECTED_THRESHOLD, World, build_world

# measurement noise of a healthy sensor, 1 sigma [canonical unit] or relative (rel)
NOISE: dict[tuple[str, str], float | tuple[str, float]] = {
    ("water", "pressure"): 1.0,
    ("water", "flow"): ("rel", 0.005),
    ("water", "level"): 0.01,
    ("power", "voltage"): 5.0,
    ("power", "current"): ("rel", 0.005),
    ("power", "frequency"): 0.003,
    ("power", "loading"): 0.2,
    ("power", "temperature"): 0.2,
    ("gas", "pressure"): 0.1,
    ("gas", "gas_concentration"): 0.05,
}
# a planned operation is booked in the works calendar until this long after it ends: the
# network settles after a valve is opened again [s]
WORKS_MARGIN_S = 900.0
DECIMALS = {"voltage": 1, "frequency": 3, "level": 3, "temperature": 1, "loading": 1}
SENML_UNITS = {"temperature": "Cel"}


def encode_senml(sensor_id: str, entries: list[tuple[int, dict[str, float]]]) -> bytes:
    """A SenML JSON pack (RFC 8428): base name ``urn:dev:cityops:<id>:``, times in seconds."""
    pack: list[dict[str, Any]] = []
    base_t = entries[0][0] / 1000.0
    for ts_ms, values in entries:
        for name, v in values.items():
            rec: dict[str, Any] = {}
            if not pack:
                rec["bn"] = f"urn:dev:cityops:{sensor_id}:"
                rec["bt"] = base_t
            rec["n"] = name
            rec["u"] = SENML_UNITS.get(name, QUANTITIES[name].unit)
            rec["v"] = v
            dt = ts_ms / 1000.0 - base_t
            if dt:
                rec["t"] = dt
            pack.append(rec)
    return msgspec.json.encode(pack)


@dataclass
class EventTruth:
    """One incident or fault as it happened: what to score detection against."""

    event_id: int
    kind: str  # incident | fault
    type: str
    network: str | None
    element: str | None
    start_ms: int
    end_ms: int | None  # None: still going when the run ended
    lon: float | None
    lat: float | None
    affected: set[str] = field(default_factory=set)
    params: dict[str, Any] = field(default_factory=dict)
    planned: bool = False  # a planned operation: the works calendar's, not detection's

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind,
            "type": self.type,
            "network": self.network,
            "element": self.element,
            "start": iso(self.start_ms),
            "end": iso(self.end_ms) if self.end_ms is not None else None,
            "lon": self.lon,
            "lat": self.lat,
            "affected_sensors": sorted(self.affected),
            "params": self.params,
        }


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


class ScenarioRun:
    def __init__(self, scenario: Scenario, *, start_ms: int) -> None:
        self.scenario = scenario
        self.start_ms = start_ms
        self.world: World = build_world(scenario, start_ms=start_ms)
        self.sensors = [s.sensor for s in self.world.sensors]
        self.topics = [telemetry_topic(s.utility, s.sensor_id) for s in self.sensors]
        self._seq = [0] * len(self.sensors)
        self._pos = {s.sensor_id: i for i, s in enumerate(self.sensors)}
        self._ids = [s.sensor_id for s in self.sensors]
        self._buffer: dict[int, list[Record]] = {}
        self.events = self._events()
        self.faults = FaultLayer(self._resolve_faults(), scenario.seed, scenario.step_s)
        self._truth_every = max(1, round(scenario.truth_every_s / scenario.step_s))
        # per sensor and quantity: (absolute noise, relative noise, decimals)
        self._qspec: list[dict[str, tuple[float, float, int]]] = []
        for s in self.world.sensors:
            spec: dict[str, tuple[float, float, int]] = {}
            for q in SENSOR_TYPES[s.sensor.sensor_type].quantities:
                sd = NOISE.get((s.network, q), 0.0)
                if isinstance(sd, tuple):
                    spec[q] = (0.0, float(sd[1]), DECIMALS.get(q, 2))
                else:
                    spec[q] = (float(sd), 0.0, DECIMALS.get(q, 2))
            self._qspec.append(spec)

    def continue_sequences(self, last: Mapping[str, int]) -> None:
        """Number each sensor's messages on from ``last`` (its last sequence number), not
        from 1: a run that follows another for the same devices (the living demo's segments)."""
        self._seq[:] = [last.get(sid, 0) for sid in self._ids]

    def last_sequences(self) -> dict[str, int]:
        """Each sensor's last sequence number published so far."""
        return dict(zip(self._ids, self._seq, strict=True))

    @property
    def steps(self) -> int:
        return self.scenario.steps

    def ts_ms(self, step: int) -> int:
        return self.start_ms + round(step * self.scenario.step_s * 1000)

    # -- set-up -------------------------------------------------------------------------------
    def _events(self) -> dict[int, EventTruth]:
        scn = self.scenario
        end_ms = self.start_ms + round(scn.duration_s * 1000)
        out: dict[int, EventTruth] = {}
        for inc in scn.incidents:
            lon, lat = self.world.incident_lonlat.get(inc.event_id, (None, None))
            out[inc.event_id] = EventTruth(
                inc.event_id,
                "incident",
                inc.type,
                inc.network,
                inc.element,
                self.start_ms + round(inc.start_s * 1000),
                None
                if inc.end_s is None or inc.end_s >= scn.duration_s
                else min(end_ms, self.start_ms + round(inc.end_s * 1000)),
                None if lon is None else round(float(lon), 7),
                None if lat is None else round(float(lat), 7),
                params=dict(inc.params),
                planned=inc.planned,
            )
        return out

    def _resolve_faults(self) -> list[ActiveFault]:
        scn = self.scenario
        out = []
        for f in scn.faults:
            chosen = set()
            for sid in f.sensors:
                if sid not in self._pos:
                    raise scn.fail((*f.loc, "sensors"), f"no sensor {sid!r} in this run")
                chosen.add(sid)
            if f.count:
                pool = [
                    s.sensor_id
                    for s in self.sensors
                    if (f.utility is None or s.utility.value == f.utility)
                    and s.sensor_id not in chosen
                ]
                if len(pool) < f.count:
                    raise scn.fail(
                        (*f.loc, "count"),
                        f"only {len(pool)} sensors to choose from, asked for {f.count}",
                    )
                rng = np.random.default_rng([scn.seed, 0xFA, f.event_id])
                chosen |= {pool[i] for i in rng.choice(len(pool), f.count, replace=False)}
            end_ms = (
                None
                if f.end_s is None or f.end_s >= scn.duration_s
                else self.start_ms + round(f.end_s * 1000)
            )
            params = {k: list(v) if isinstance(v, tuple) else v for k, v in f.params.items()}
            if f.type == "malformed":
                kinds = f.params.get("kinds") or tuple(MALFORMED_REASONS)
                params["expected_reasons"] = sorted({MALFORMED_REASONS[k] for k in kinds})
            self.events[f.event_id] = EventTruth(
                f.event_id,
                "fault",
                f.type,
                None,
                None,
                self.start_ms + round(f.start_s * 1000),
                end_ms,
                None,
                None,
                affected=set(chosen),
                params=params,
            )
            out.append(ActiveFault(f, frozenset(chosen)))
        return out

    # -- one step -----------------------------------------------------------------------------
    def messages(self, step: int) -> list[Outgoing]:
        scn = self.scenario
        t_s = step * scn.step_s
        ts = self.ts_ms(step)
        active = any(
            inc.start_s <= t_s and (inc.end_s is None or t_s < inc.end_s) for inc in scn.incidents
        )
        # every truth_every, and at the first step of each incident however short it is
        starting = any(inc.start_s <= t_s < inc.start_s + scn.step_s for inc in scn.incidents)
        counterfactuals = active and (step % self._truth_every == 0 or starting)
        truth, _base, without = self.world.truth(t_s, counterfactuals=counterfactuals)
        if counterfactuals:
            self._note_affected(t_s, truth, without)
        noise = np.random.default_rng([scn.seed & 0xFFFF_FFFF, 0x0B5, step]).standard_normal(
            (len(self.sensors), 3)
        )
        records = []
        noise_l = noise.tolist()
        seq = self._seq
        qspec = self._qspec
        for i, (sid, values) in enumerate(zip(self._ids, truth, strict=True)):
            seq[i] += 1
            spec = qspec[i]
            z = noise_l[i]
            measured = {}
            for j, (q, v) in enumerate(values.items()):
                sd, rel, dec = spec[q]
                x = v + (sd + rel * abs(v)) * z[j % 3]
                if v == 0.0 or q == "gas_concentration":
                    # a dead bus or a closed pipe reads zero; a detector no less than zero
                    x = max(0.0, x) if v > 0 else 0.0
                measured[q] = round(x, dec)
            records.append(Record(sid, ts, seq[i], measured))
        records = self.faults.records(step, t_s, records)
        msgs = self._encode(step, records)
        return self.faults.stream(step, t_s, msgs)

    def final_messages(self) -> list[Outgoing]:
        """What is still buffered or held back when the run ends (publish after the last step)."""
        msgs = self._encode(None, [])
        return msgs + self.faults.flush_held()

    def _encode(self, step: int | None, records: list[Record]) -> list[Outgoing]:
        scn = self.scenario
        out = []
        if scn.batch_steps <= 1:
            pos, topics, senml = self._pos, self.topics, scn.encoding == "senml"
            for r in records:
                payload = (
                    encode_senml(r.sensor_id, [(r.ts_ms, r.values)])
                    if senml
                    else encode_reading(r.ts_ms, r.seq, r.values)
                )
                out.append(
                    Outgoing(
                        r.sensor_id, topics[pos[r.sensor_id]], r.ts_ms, r.seq, r.values, payload
                    )
                )
            return out
        for r in records:
            self._buffer.setdefault(self._pos[r.sensor_id], []).append(r)
        due = step is None or (step + 1) % scn.batch_steps == 0 or step + 1 >= self.steps
        if not due:
            return out
        for i in sorted(self._buffer):
            recs = self._buffer[i]
            if not recs:
                continue
            sid = self.sensors[i].sensor_id
            payload = (
                encode_senml(sid, [(r.ts_ms, r.values) for r in recs])
                if scn.encoding == "senml"
                else encode_batch([(r.ts_ms, r.seq, r.values) for r in recs])
            )
            last = recs[-1]
            out.append(Outgoing(sid, self.topics[i], last.ts_ms, last.seq, last.values, payload))
        self._buffer = {}
        return out

    def _note_affected(self, t_s: float, truth: list[dict], without: dict[int, list[dict]]) -> None:
        """A sensor is affected by an incident while its noise-free value with every incident
        differs from its value with every incident but that one by more than a threshold."""
        for inc in self.scenario.incidents:
            if not (inc.start_s <= t_s and (inc.end_s is None or t_s < inc.end_s)):
                continue
            other = without[inc.event_id]
            affected = self.events[inc.event_id].affected
            for k, s in enumerate(self.world.sensors):
                if s.network != inc.network or s.sensor.sensor_id in affected:
                    continue
                for q, v in truth[k].items():
                    thr = AFFECTED_THRESHOLD.get((s.network, q))
                    if thr is not None and abs(v - other[k].get(q, v)) > thr:
                        affected.add(s.sensor.sensor_id)
                        break

    # -- ground truth ---------------------------------------------------------------------------
    def ground_truth(self, *, run_id: str, messages: int | None = None) -> dict[str, Any]:
        scn = self.scenario
        return {
            "run_id": run_id,
            "scenario": scn.name,
            "source": scn.source,
            "seed": scn.seed,
            "start": iso(self.start_ms),
            "end": iso(self.start_ms + round(scn.duration_s * 1000)),
            "step_s": scn.step_s,
            "steps": self.steps,
            "sensors": len(self.sensors),
            "messages": messages,
            "places": [
                {"name": n, "lon": round(lo, 7), "lat": round(la, 7)}
                for n, (lo, la) in self.world.place_lonlat.items()
            ],
            "events": [
                e.to_json()
                for e in sorted(self.events.values(), key=lambda e: e.event_id)
                if not e.planned
            ],
            "works": self.works(),
        }

    def works(self) -> list[dict[str, Any]]:
        """The planned incidents as works-calendar entries (alerts' ``works``, written with the
        run's start): the operator books the water network's metered areas (a scenario's water
        network is one area) and the element operated; on power and gas, which have no areas,
        the whole network. Booked until ``WORKS_MARGIN_S`` after the operation ends."""
        scn = self.scenario
        end_ms = self.start_ms + round(scn.duration_s * 1000)
        out = []
        for inc in scn.incidents:
            if not inc.planned:
                continue
            e = self.events[inc.event_id]
            until = end_ms if e.end_ms is None else e.end_ms + round(WORKS_MARGIN_S * 1000)
            water = inc.network == "water"
            out.append(
                {
                    "event_id": inc.event_id,
                    "kind": inc.works_kind,
                    "utility": inc.network,
                    "starts_at": iso(e.start_ms),
                    "ends_at": iso(max(until, e.start_ms + 1000)),
                    "area_ids": sorted(self.world.metered_areas) if water else [],
                    "asset_ids": [inc.element] if water else [],
                    "description": f"{scn.name}: planned {inc.type} of {inc.element}",
                    "affected_sensors": sorted(e.affected),
                }
            )
        return out

    def close(self) -> None:
        self.world.close()
