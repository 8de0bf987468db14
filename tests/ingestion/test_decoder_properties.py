"""Property tests of the boundary decoder and the pure classification (no I/O)."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.batching import Batch, BatchPolicy, Item
from ingestion.classify import (
    QUALITY_SUSPECT,
    Catalogue,
    Decoded,
    Rejection,
    SensorEntry,
    check_catalogue,
    compute_plausible_band,
    decode_item,
    sanitize_text,
)
from sensors.payload import (
    SENTINEL_VALUES,
    PayloadError,
    TimeWindow,
    decode_message,
    encode_batch,
    encode_reading,
)
from sensors.quantities import QUANTITIES

NOW_US = 1_795_700_000_000_000
NOW_MS = NOW_US // 1000
W = TimeWindow()
SID = "wp-1"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)


def _check_readings(readings: list) -> None:
    for r in readings:
        q = QUANTITIES[r.quantity]
        assert math.isfinite(r.value) and q.physical_min <= r.value <= q.physical_max
        assert NOW_US - W.max_past_s * 1e6 <= r.ts_us <= NOW_US + W.max_future_s * 1e6
        assert r.sensor_id == SID
        assert r.seq is None or 0 <= r.seq < 2**63


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_payload_error(payload: bytes) -> None:
    try:
        _check_readings(decode_message(payload, SID, NOW_US, W))
    except PayloadError as exc:
        assert exc.reason and exc.reason.isidentifier()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.sampled_from(["v", "ts", "q", "seq", "batch", "u", "id", "n", "bt"]))
def test_any_json_decodes_or_raises_payload_error(value: object, key: str) -> None:
    for doc in (value, {key: value}, {"v": 1, "ts": NOW_MS, key: value}, [value]):
        payload = json.dumps(doc).encode()
        try:
            _check_readings(decode_message(payload, SID, NOW_US, W))
        except PayloadError as exc:
            assert exc.reason


finite_in = st.sampled_from(sorted(QUANTITIES)).flatmap(
    lambda name: st.tuples(
        st.just(name),
        st.floats(QUANTITIES[name].physical_min, QUANTITIES[name].physical_max).filter(
            lambda v: v not in SENTINEL_VALUES
        ),
    )
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(NOW_MS - 86_400_000, NOW_MS + 60_000),
            st.one_of(st.none(), st.integers(0, 2**63 - 1)),
            st.dictionaries(st.sampled_from(sorted(QUANTITIES)), st.just(0.0), min_size=1),
        ),
        min_size=1,
        max_size=10,
    ),
    st.data(),
)
def test_valid_messages_round_trip_exactly(entries: list, data: st.DataObject) -> None:
    filled = []
    for ts, seq, qs in entries:
        values = {}
        for name in qs:
            q = QUANTITIES[name]
            values[name] = data.draw(
                st.floats(q.physical_min, q.physical_max).filter(lambda v: v not in SENTINEL_VALUES)
            )
        filled.append((ts, seq, values))
    readings = decode_message(encode_batch(filled), SID, NOW_US, W)
    expected = [
        (SID, name, ts * 1000, value, seq)
        for ts, seq, values in filled
        for name, value in values.items()
    ]
    assert [(r.sensor_id, r.quantity, r.ts_us, r.value, r.seq) for r in readings] == expected
    ts, seq, values = filled[0]
    single = decode_message(encode_reading(ts, seq, values), SID, NOW_US, W)
    assert [(r.quantity, r.value) for r in single] == list(values.items())


@settings(deadline=None)  # timing is not the property; the test machine may be loaded
@given(finite_in, st.booleans())
def test_duplicate_keys_are_always_rejected(qv: tuple[str, float], spaced: bool) -> None:
    name, value = qv
    sep = ", " if spaced else ","
    payload = f'{{"v":1,"ts":{NOW_MS}{sep}"q":{{"{name}":{value!r}{sep}"{name}":{value!r}}}}}'
    try:
        decode_message(payload.encode(), SID, NOW_US, W)
    except PayloadError as exc:
        assert exc.reason == "duplicate_key"
    else:
        raise AssertionError("duplicate key accepted")


def test_senml_pack_is_decoded_with_base_fields_and_units() -> None:
    t = NOW_US / 1e6
    pack = [
        {"bn": f"urn:dev:cityops:{SID}:", "bt": t - 60, "bu": "kPa", "n": "pressure", "v": 300},
        {"n": "pressure", "t": 30, "v": 0.31, "u": "MPa"},
        {"n": "flow", "t": 30, "v": 3.6, "u": "m3/h"},
    ]
    out = decode_message(json.dumps(pack).encode(), SID, NOW_US, W)
    assert [(r.quantity, round(r.value, 9), r.ts_us) for r in out] == [
        ("pressure", 300.0, round((t - 60) * 1e6)),
        ("pressure", 310.0, round((t - 30) * 1e6)),
        ("flow", 1.0, round((t - 30) * 1e6)),
    ]


def test_catalogue_check_and_quality_flag() -> None:
    cat = Catalogue(
        {
            SID: SensorEntry("water", "water_pressure", True),
            "old": SensorEntry("water", "water_pressure", False),
        },
        {"water_pressure": {"pressure": compute_plausible_band("pressure", 200.0, 700.0)}},
    )
    ok = decode_item(
        "city/water/wp-1/telemetry", encode_reading(NOW_MS, 1, {"pressure": 300}), False, NOW_US, W
    )
    hot = decode_item(
        "city/water/wp-1/telemetry", encode_reading(NOW_MS, 2, {"pressure": 5000}), False, NOW_US, W
    )
    assert isinstance(ok, Decoded) and isinstance(hot, Decoded)
    assert check_catalogue(ok, cat) == [(SID, "pressure", NOW_MS * 1000, 300.0, 1, 0)]
    assert check_catalogue(hot, cat)[0][5] == QUALITY_SUSPECT  # type: ignore[index]
    old = decode_item(
        "city/water/old/telemetry", encode_reading(NOW_MS, 1, {"pressure": 300}), False, NOW_US, W
    )
    assert isinstance(old, Decoded) and check_catalogue(old, cat) == Rejection(
        "sensor_retired", "", "old"
    )
    retained = decode_item("city/water/wp-1/telemetry", b"{}", True, NOW_US, W)
    assert retained == Rejection("retained_message", "", SID)


@settings(deadline=None)
@given(st.text())
def test_sanitized_text_is_storable(text: str) -> None:
    out = sanitize_text(text)
    assert "\x00" not in out
    out.encode("utf-8")


def test_batch_closes_by_size_or_age() -> None:
    b: Batch[int] = Batch(BatchPolicy(max_readings=3, max_messages=10, max_age_s=0.01))
    assert not b.is_due(0.0) and b.time_left(0.0) == 0.01
    item = Item(1, "t", b"", 0, Rejection("x"))
    b.add(item, now=1.0)
    assert not b.is_due(1.005) and b.is_due(1.011)
    d = Decoded(
        SID,
        "water",
        decode_message(
            encode_reading(NOW_MS, 1, {"pressure": 1, "flow": 2, "level": 3}), SID, NOW_US, W
        ),
    )
    b.add(Item(2, "t", b"", 0, d), now=1.001)
    assert b.readings == 3 and b.is_full() and b.is_due(1.001)
