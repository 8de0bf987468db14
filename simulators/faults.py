"""Sensor and device faults on top of the physics (pure, seeded per step).

Value faults change what a sensor measures: ``noise`` (extra Gaussian noise, ``sigma_pct`` of
the value), ``drift`` (a calibration drift of ``pct_per_day``), ``stuck`` (the value frozen at
what it read when the fault began), ``spikes`` (with ``probability`` per reading, the value off
by ``magnitude_pct``). Device faults change what is sent: ``dropout`` (no message, with
``probability``, default always), ``clock_skew`` (timestamps off by ``offset``), ``duplicate``
(sent twice), ``out_of_order`` (held back ``delay_steps`` and sent after newer ones) and
``malformed`` (a message from the bad-input catalogue instead of the reading, see
``MALFORMED_REASONS``: the decoder's reason each one must produce).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from simulators.spec import MALFORMED_KINDS, FaultSpec

# the reason sensors.payload.decode_message gives each malformed kind (ground truth for tests)
MALFORMED_REASONS = {
    "not_json": "not_json",
    "truncated": "not_json",
    "missing_ts": "missing_field",
    "ts_seconds": "ts_not_milliseconds",
    "unknown_unit": "unknown_unit",
    "unknown_quantity": "unknown_quantity",
    "non_finite": "number_out_of_range",  # 1e999 overflows the JSON decoder
    "id_mismatch": "id_mismatch",
    "empty": "empty_payload",
    "physically_impossible": "physically_impossible",
}
VALUE_FAULTS = ("noise", "drift", "stuck", "spikes")


@dataclass(frozen=True, slots=True)
class Record:
    """One reading as the device would send it."""

    sensor_id: str
    ts_ms: int
    seq: int
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class ActiveFault:
    spec: FaultSpec
    sensors: frozenset[str]

    def active(self, t_s: float) -> bool:
        s = self.spec
        return s.start_s <= t_s and (s.end_s is None or t_s < s.end_s)


def malformed_payload(kind: str, rec: Record) -> bytes:
    """A bad message of ``kind`` standing in for ``rec`` (see MALFORMED_REASONS)."""
    q = rec.values
    first = next(iter(q))
    if kind == "not_json":
        return f"{first}={q[first]};ts={rec.ts_ms}".encode()
    if kind == "truncated":
        full = msgspec.json.encode({"v": 1, "ts": rec.ts_ms, "seq": rec.seq, "q": q})
        return full[: max(1, len(full) // 2)]
    if kind == "missing_ts":
        return msgspec.json.encode({"v": 1, "seq": rec.seq, "q": q})
    if kind == "ts_seconds":
        return msgspec.json.encode({"v": 1, "ts": rec.ts_ms // 1000, "seq": rec.seq, "q": q})
    if kind == "unknown_unit":
        return msgspec.json.encode(
            {"v": 1, "ts": rec.ts_ms, "seq": rec.seq, "q": q, "u": {first: "furlong"}}
        )
    if kind == "unknown_quantity":
        return msgspec.json.encode({"v": 1, "ts": rec.ts_ms, "seq": rec.seq, "q": {"flux": 1.0}})
    if kind == "non_finite":
        return b'{"v":1,"ts":%d,"seq":%d,"q":{"%s":1e999}}' % (rec.ts_ms, rec.seq, first.encode())
    if kind == "id_mismatch":
        return msgspec.json.encode(
            {"v": 1, "id": "not-" + rec.sensor_id[:50], "ts": rec.ts_ms, "seq": rec.seq, "q": q}
        )
    if kind == "empty":
        return b""
    if kind == "physically_impossible":
        return msgspec.json.encode({"v": 1, "ts": rec.ts_ms, "seq": rec.seq, "q": {first: 1.0e7}})
    raise ValueError(f"unknown malformed kind {kind!r}")


@dataclass
class FaultLayer:
    """Applies the run's faults; call ``values`` then ``stream`` once per step, in order."""

    faults: Sequence[ActiveFault]
    seed: int
    step_s: float
    _stuck: dict[tuple[int, str], dict[str, float]] = field(default_factory=dict)
    _held: list[tuple[int, object]] = field(default_factory=list)  # (release step, message)

    def _rng(self, step: int, fault: ActiveFault, purpose: int) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed & 0xFFFF_FFFF, 0xFA17, fault.spec.event_id, step, purpose]
        )

    def records(self, step: int, t_s: float, records: list[Record]) -> list[Record]:
        """Value faults, clock skew and dropouts for one step."""
        out = list(records)
        for f in self.faults:
            if not f.active(t_s):
                continue
            s = f.spec
            idx = [i for i, r in enumerate(out) if r.sensor_id in f.sensors]
            if not idx:
                continue
            u = self._rng(step, f, 1).random(len(idx))
            z = self._rng(step, f, 2).standard_normal(len(idx))
            drop: set[int] = set()
            for j, i in enumerate(idx):
                r = out[i]
                if s.type == "noise":
                    sigma = s.params.get("sigma_pct", 5.0) / 100.0
                    out[i] = _with(r, {k: v * (1 + sigma * z[j]) for k, v in r.values.items()})
                elif s.type == "drift":
                    days = (t_s - s.start_s) / 86_400.0
                    g = 1 + s.params.get("pct_per_day", 5.0) / 100.0 * days
                    out[i] = _with(r, {k: v * g for k, v in r.values.items()})
                elif s.type == "stuck":
                    frozen = self._stuck.setdefault((s.event_id, r.sensor_id), dict(r.values))
                    out[i] = _with(r, frozen)
                elif s.type == "spikes":
                    if u[j] < s.params.get("probability", 0.2):
                        m = s.params.get("magnitude_pct", 50.0) / 100.0
                        sign = 1.0 if z[j] >= 0 else -1.0
                        out[i] = _with(r, {k: v * (1 + sign * m) for k, v in r.values.items()})
                elif s.type == "clock_skew":
                    offset_ms = round(s.params.get("offset", 600.0) * 1000)
                    out[i] = Record(r.sensor_id, r.ts_ms + offset_ms, r.seq, r.values)
                elif s.type == "dropout" and u[j] < s.params.get("probability", 1.0):
                    drop.add(i)
            if drop:
                out = [r for i, r in enumerate(out) if i not in drop]
        return out

    def stream(self, step: int, t_s: float, messages: list) -> list:
        """Duplicates, out-of-order delivery and malformed payloads for one step's messages.

        ``messages`` are Outgoing-like objects with ``sensor_id`` and ``payload`` and a
        ``replace(payload=...)``-compatible dataclass; returns the list to publish, in order.
        """
        import dataclasses

        out = list(messages)
        for f in self.faults:
            if not f.active(t_s) or f.spec.type not in ("duplicate", "out_of_order", "malformed"):
                continue
            s = f.spec
            idx = [i for i, m in enumerate(out) if m.sensor_id in f.sensors]
            if not idx:
                continue
            u = self._rng(step, f, 3).random(len(idx))
            pick = self._rng(step, f, 4).integers(0, 1 << 30, len(idx))
            if s.type == "malformed":
                kinds = s.params.get("kinds") or MALFORMED_KINDS
                for j, i in enumerate(idx):
                    if u[j] < s.params.get("probability", 1.0):
                        m = out[i]
                        kind = kinds[int(pick[j]) % len(kinds)]
                        rec = Record(m.sensor_id, m.ts_ms, m.seq, m.values)
                        out[i] = dataclasses.replace(m, payload=malformed_payload(kind, rec))
            elif s.type == "duplicate":
                extra = [
                    out[i] for j, i in enumerate(idx) if u[j] < s.params.get("probability", 1.0)
                ]
                out.extend(extra)  # the copy arrives after the rest of the step
            elif s.type == "out_of_order":
                delay = int(s.params.get("delay_steps", 1))
                held = {i for j, i in enumerate(idx) if u[j] < s.params.get("probability", 1.0)}
                self._held.extend((step + delay, out[i]) for i in sorted(held))
                out = [m for i, m in enumerate(out) if i not in held]
        release = [m for due, m in self._held if due <= step]
        self._held = [(due, m) for due, m in self._held if due > step]
        return out + release

    def flush_held(self) -> list:
        """Messages still held back when the run ends (sent last)."""
        out = [m for _, m in self._held]
        self._held = []
        return out


def _with(r: Record, values: dict[str, float]) -> Record:
    return Record(
        r.sensor_id,
        r.ts_ms,
        r.seq,
        {k: (round(float(v), 3) if math.isfinite(v) else 0.0) for k, v in values.items()},
    )
