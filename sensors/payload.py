"""Decode and validate a telemetry message once, at the boundary (docs/contracts/payload.md).

Three encodings arrive on ``city/<utility>/<sensor_id>/telemetry``:

* compact v1, one instant, several quantities::

      {"v": 1, "ts": 1764146400000, "seq": 42, "q": {"pressure": 312.5}, "u": {"pressure": "kPa"}}

* compact v1 batch (a gateway's buffer)::

      {"v": 1, "batch": [{"ts": ..., "seq": ..., "q": {...}}, ...]}

* SenML JSON (RFC 8428), a JSON array of records (``bn``/``bt``/``bu``/``n``/``u``/``v``/``t``).

``ts`` is integer epoch milliseconds or an RFC 3339 string with an offset. ``u`` is optional;
absent means the canonical unit. Identity always comes from the topic: an ``id`` or SenML name
prefix that disagrees with the topic is rejected (``id_mismatch``), never trusted.

The decoder is pure: ``now_us`` is passed in, nothing here reads a clock or the environment.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime

import msgspec

from sensors.quantities import QUANTITIES, UnknownUnitError

PAYLOAD_VERSION = 1
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_MESSAGE = 10_000
_MS_EPOCH_MIN = 100_000_000_000  # 1973-03-03 in ms; a smaller integer is almost surely seconds
SEQ_MAX = 2**63 - 1  # stored as bigint
# raw values that firmware sends for "no reading" (int16/uint16 limits, -9999 fill values): a
# device that sends one has no measurement, so the message is rejected, not stored as data
SENTINEL_VALUES = frozenset({-9999.0, -99999.0, -32768.0, 32767.0, 65535.0, 999999.0})


class Reading(msgspec.Struct, frozen=True, array_like=True):
    """One value of one quantity of one sensor at one instant, in canonical units."""

    sensor_id: str
    quantity: str
    ts_us: int  # epoch microseconds, UTC
    value: float
    seq: int | None


class PayloadError(ValueError):
    """A message that cityops will not store. ``reason`` is a stable machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """Readings are accepted when ``now - max_past_s <= ts <= now + max_future_s``."""

    max_past_s: float = 30 * 86_400.0
    max_future_s: float = 300.0


class _Entry(msgspec.Struct, forbid_unknown_fields=False):
    ts: int | str | None = None
    seq: int | None = None
    q: dict[str, float] | None = None
    u: dict[str, str] | None = None


class _Compact(msgspec.Struct, forbid_unknown_fields=False):
    v: int | None = None
    id: str | None = None
    ts: int | str | None = None
    seq: int | None = None
    q: dict[str, float] | None = None
    u: dict[str, str] | None = None
    batch: list[_Entry] | None = None


class _SenML(msgspec.Struct, forbid_unknown_fields=False, omit_defaults=True):
    bn: str | None = None
    bt: float | None = None
    bu: str | None = None
    bver: int | None = None
    n: str | None = None
    u: str | None = None
    v: float | None = None
    t: float | None = None
    vs: str | None = None
    vb: bool | None = None


_PHYSICAL_LIMITS = {name: (q.physical_min, q.physical_max) for name, q in QUANTITIES.items()}
_compact_decoder = msgspec.json.Decoder(_Compact)
_senml_decoder = msgspec.json.Decoder(list[_SenML])

# SenML unit symbols (RFC 8428 registry) that differ from ours
_SENML_UNITS = {
    "Pa": "Pa",
    "kPa": "kPa",
    "bar": "bar",
    "l/s": "L/s",
    "m3/s": "m3/s",
    "V": "V",
    "A": "A",
    "Hz": "Hz",
    "W": "W",
    "%": "%",
    "Cel": "Cel",
    "K": "K",
    "m": "m",
    "%LEL": "%LEL",
    "kW": "kW",
    "m3/h": "m3/h",
    "L/s": "L/s",
}


def decode_message(
    payload: bytes,
    sensor_id: str,
    now_us: int,
    window: TimeWindow = TimeWindow(),
) -> list[Reading]:
    """Decode one telemetry message for ``sensor_id`` (taken from its topic) into readings.

    Raises ``PayloadError`` with a reason from docs/contracts/payload.md for anything it rejects.
    """
    if not payload:
        raise PayloadError("empty_payload")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_large", f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    if b"\x00" in payload:
        raise PayloadError("nul_byte")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PayloadError("invalid_utf8", f"byte {exc.start}") from None
    first = _first_significant_byte(payload)
    try:
        if first == ord("["):
            records = _senml_decoder.decode(payload)
            _check_duplicate_keys(payload, _senml_key_count(records))
            return _decode_senml(records, sensor_id, now_us, window)
        if first == ord("{"):
            msg = _compact_decoder.decode(payload)
            _check_duplicate_keys(payload, _compact_key_count(msg))
            return _decode_compact(msg, sensor_id, now_us, window)
    except msgspec.ValidationError as exc:
        raise PayloadError(_validation_reason(str(exc)), str(exc)[:200]) from None
    except msgspec.DecodeError as exc:
        raise PayloadError("not_json", str(exc)[:200]) from None
    except RecursionError:
        raise PayloadError("too_deep") from None
    if payload.startswith(b"\xef\xbb\xbf"):
        raise PayloadError("not_json", "byte-order mark")
    raise PayloadError("not_json", "not a JSON object or array")


def _first_significant_byte(payload: bytes) -> int:
    for b in payload[:64]:
        if b not in b" \t\r\n":
            return b
    return -1


def _count_keys(payload: bytes) -> int:
    """Object keys in the text, counted without parsing (a string holding ``":`` counts too)."""
    return payload.translate(None, b" \t\r\n").count(b'":')


def _check_duplicate_keys(payload: bytes, decoded_keys: int) -> None:
    """Reject a repeated object key, which JSON decoders resolve silently (last one wins).

    Fast path: when the keys in the text equal the keys the decoder kept, none repeats. Otherwise
    (unknown fields, ``null`` values, strings holding ``":``) parse again, keeping every pair.
    """
    if _count_keys(payload) == decoded_keys:
        return
    try:
        json.loads(payload, object_pairs_hook=_pairs_without_duplicates)
    except _DuplicateKeyError as exc:
        raise PayloadError("duplicate_key", str(exc)[:64]) from None
    except RecursionError:
        raise PayloadError("too_deep") from None
    except ValueError as exc:
        raise PayloadError("not_json", str(exc)[:200]) from None


class _DuplicateKeyError(ValueError):
    pass


def _pairs_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return out


def _entry_key_count(e: _Entry | _Compact) -> int:
    n = 0
    if e.ts is not None:
        n += 1
    if e.seq is not None:
        n += 1
    if e.q is not None:
        n += 1 + len(e.q)
    if e.u is not None:
        n += 1 + len(e.u)
    return n


def _compact_key_count(msg: _Compact) -> int:
    n = _entry_key_count(msg)
    if msg.v is not None:
        n += 1
    if msg.id is not None:
        n += 1
    if msg.batch is not None:
        n += 1
        for e in msg.batch:
            n += _entry_key_count(e)
    return n


def _senml_key_count(records: list[_SenML]) -> int:
    return sum(sum(x is not None for x in msgspec.structs.astuple(r)) for r in records)


def _validation_reason(message: str) -> str:
    if "out of range" in message:
        return "number_out_of_range"
    if "Expected `object`" in message or "Expected `array`" in message:
        return "not_object"
    return "schema_mismatch"


def _decode_compact(msg: _Compact, sensor_id: str, now_us: int, w: TimeWindow) -> list[Reading]:
    if msg.v is None:
        raise PayloadError("missing_field", "v")
    if msg.v != PAYLOAD_VERSION:
        raise PayloadError("unsupported_version", str(msg.v))
    if msg.id is not None and msg.id != sensor_id:
        raise PayloadError("id_mismatch", f"payload id {msg.id[:80]!r} on topic of {sensor_id!r}")
    if msg.batch is not None:
        if msg.q is not None:
            raise PayloadError("schema_mismatch", "both q and batch")
        if len(msg.batch) == 0:
            raise PayloadError("missing_field", "batch is empty")
        entries = msg.batch
    else:
        entries = [_Entry(ts=msg.ts, seq=msg.seq, q=msg.q, u=msg.u)]
    out: list[Reading] = []
    append = out.append
    # the checks of parse_timestamp_us, check_window and canonical_value, inlined for the
    # common case (integer ms, canonical unit, plain value); anything else takes the full path,
    # which raises the precise reason
    lo_us = now_us - w.max_past_s * 1e6
    hi_us = now_us + w.max_future_s * 1e6
    limits = _PHYSICAL_LIMITS
    sentinels = SENTINEL_VALUES
    for entry in entries:
        q = entry.q
        if not q:
            raise PayloadError("missing_field", "q")
        ts = entry.ts
        if ts is None:
            raise PayloadError("missing_field", "ts")
        ts_us = ts * 1000 if type(ts) is int and ts >= _MS_EPOCH_MIN else parse_timestamp_us(ts)
        if not lo_us <= ts_us <= hi_us:
            check_window(ts_us, now_us, w)
        seq = entry.seq
        if seq is not None and not 0 <= seq <= SEQ_MAX:
            raise PayloadError("bad_sequence", str(seq))
        units = entry.u
        for name, raw in q.items():
            lim = limits.get(name)
            if (
                lim is not None
                and (units is None or name not in units)
                and lim[0] <= raw <= lim[1]  # false for NaN and infinities
                and raw not in sentinels
            ):
                value = raw
            else:
                value = canonical_value(name, raw, units.get(name) if units else None)
            append(Reading(sensor_id, name, ts_us, value, seq))
        if len(out) > MAX_READINGS_PER_MESSAGE:
            raise PayloadError("too_many_readings", f"> {MAX_READINGS_PER_MESSAGE}")
    return out


def _decode_senml(
    records: list[_SenML], sensor_id: str, now_us: int, w: TimeWindow
) -> list[Reading]:
    if not records:
        raise PayloadError("missing_field", "empty SenML pack")
    if len(records) > MAX_READINGS_PER_MESSAGE:
        raise PayloadError("too_many_readings", f"> {MAX_READINGS_PER_MESSAGE}")
    out: list[Reading] = []
    bn, bt, bu = "", 0.0, None
    for rec in records:
        if rec.bver is not None and rec.bver > 10:
            raise PayloadError("unsupported_version", f"bver {rec.bver}")
        if rec.bn is not None:
            bn = rec.bn
        if rec.bt is not None:
            bt = rec.bt
        if rec.bu is not None:
            bu = rec.bu
        if rec.n is None and rec.v is None and rec.vs is None and rec.vb is None:
            continue  # a record that only sets base fields
        name = bn + (rec.n or "")
        # "urn:dev:cityops:<sensor_id>:<quantity>" or "<sensor_id>:<quantity>" or "<quantity>"
        prefix, _, quantity = name.rpartition(":")
        if prefix:
            device = prefix.rpartition(":")[2]
            if device != sensor_id:
                raise PayloadError(
                    "id_mismatch", f"SenML name {name[:80]!r} on topic of {sensor_id!r}"
                )
        if rec.v is None:
            raise PayloadError("schema_mismatch", f"{quantity}: only numeric values (v) are stored")
        t = bt + (rec.t or 0.0)
        if t <= 2**28:  # RFC 8428: small or negative times are relative to now
            t = now_us / 1e6 + t
        ts_us = _seconds_to_us(t)
        check_window(ts_us, now_us, w)
        unit = rec.u if rec.u is not None else bu
        out.append(
            Reading(
                sensor_id,
                quantity,
                ts_us,
                canonical_value(quantity, rec.v, _SENML_UNITS.get(unit, unit) if unit else None),
                None,
            )
        )
    if not out:
        raise PayloadError("missing_field", "no values in SenML pack")
    return out


def _seconds_to_us(t: float) -> int:
    if not math.isfinite(t):
        raise PayloadError("bad_timestamp", repr(t))
    return round(t * 1_000_000)


def parse_timestamp_us(ts: int | str) -> int:
    """Epoch milliseconds (int) or RFC 3339 with an offset (str) -> epoch microseconds."""
    if isinstance(ts, int):
        if ts < _MS_EPOCH_MIN:
            raise PayloadError(
                "ts_not_milliseconds", f"{ts} looks like seconds or a device without a clock"
            )
        return ts * 1000
    if len(ts) > 40:
        raise PayloadError("bad_timestamp", ts[:40])
    try:
        dt = datetime.fromisoformat(ts)
    except ValueError:
        raise PayloadError("bad_timestamp", ts) from None
    if dt.tzinfo is None:
        raise PayloadError("ts_no_timezone", ts)
    return round(dt.timestamp() * 1_000_000)


def check_window(ts_us: int, now_us: int, w: TimeWindow) -> None:
    if ts_us > now_us + w.max_future_s * 1e6:
        raise PayloadError("ts_future", f"{(ts_us - now_us) / 1e6:.0f} s ahead")
    if ts_us < now_us - w.max_past_s * 1e6:
        raise PayloadError("ts_past", f"{(now_us - ts_us) / 1e6:.0f} s behind")


def canonical_value(name: str, raw: float, unit: str | None) -> float:
    q = QUANTITIES.get(name)
    if q is None:
        raise PayloadError("unknown_quantity", name[:64])
    if not math.isfinite(raw):
        raise PayloadError("non_finite_value", f"{name}={raw}")
    if raw in SENTINEL_VALUES:
        raise PayloadError("sentinel_value", f"{name}={raw:g}")
    try:
        value = q.to_canonical(raw, unit)
    except UnknownUnitError as exc:
        raise PayloadError("unknown_unit", str(exc)) from None
    if not (q.physical_min <= value <= q.physical_max):
        raise PayloadError("physically_impossible", f"{name}={value} {q.unit}")
    return value


def encode_reading(
    ts_ms: int, seq: int | None, values: dict[str, float], units: dict[str, str] | None = None
) -> bytes:
    """The compact v1 encoding of one instant (used by simulators and tests)."""
    doc: dict[str, object] = {"v": PAYLOAD_VERSION, "ts": ts_ms}
    if seq is not None:
        doc["seq"] = seq
    doc["q"] = values
    if units:
        doc["u"] = units
    return msgspec.json.encode(doc)


def encode_batch(entries: list[tuple[int, int | None, dict[str, float]]]) -> bytes:
    """The compact v1 batch encoding: ``[(ts_ms, seq, values), ...]``."""
    batch = [
        {"ts": ts, "seq": seq, "q": q} if seq is not None else {"ts": ts, "q": q}
        for ts, seq, q in entries
    ]
    return msgspec.json.encode({"v": PAYLOAD_VERSION, "batch": batch})
