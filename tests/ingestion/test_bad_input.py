"""The bad-input catalogue of RELIABILITY.md through the real broker: each message is quarantined
with its raw bytes (bounded), topic and reason, acknowledged, and the next good reading is stored.

One ingestor and database serve the whole module (the cases are independent: each has its own
good reading to wait for), so the catalogue runs in seconds.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from cityops.kernel.mqtt import Publisher
from cityops.shell.stack import LocalStack
from ingestion.service import Ingestor
from sensors.payload import encode_reading
from sensors.quantities import Utility
from sensors.topics import telemetry_topic
from tests.conftest import create_database, drop_database, stack_settings
from tests.ingestion.conftest import add_sensors, now_ms, query, wait_for

GOOD = "bad-good"
RETIRED = "bad-retired"
FLOW = "bad-flow"
GAS = "bad-gas"
_seq = itertools.count(1)


@pytest.fixture(scope="module")
def env(stack: LocalStack, template_db: str) -> Iterator[tuple[str, Publisher, Ingestor]]:
    name = "t_bad_" + uuid.uuid4().hex[:8]
    db_url = create_database(stack, name, template_db)
    add_sensors(
        db_url,
        [
            (GOOD, "water", "water_pressure"),
            (FLOW, "water", "water_flow"),
            (GAS, "gas", "gas_detector"),
        ],
    )
    add_sensors(db_url, [(RETIRED, "water", "water_pressure")], status="retired")
    settings = stack_settings(stack, db_url)
    tag = settings.ingest_client_id
    ing = Ingestor(settings)
    ing.start()
    try:
        with Publisher(settings.mqtt_url, f"pub-bad-{tag}") as pub:
            yield db_url, pub, ing
    finally:
        ing.stop(end_session=True)
        drop_database(stack, name)


def _ms(offset_s: float = 0) -> int:
    return now_ms() + int(offset_s * 1000)


def _compact(**doc: object) -> bytes:
    return json.dumps({"v": 1, "ts": _ms(), **doc}).encode()


W = telemetry_topic(Utility.WATER, GOOD)
SQL = "'); DROP TABLE readings; --"
CASES: list[tuple[str, str, bytes | None, str]] = [
    # not JSON
    ("empty", W, b"", "empty_payload"),
    ("binary", W, bytes(range(1, 40)) + b"\x89PNG", "invalid_utf8"),
    ("binary_nul", W, b"\x00\x01\x02\x03", "nul_byte"),
    ("truncated", W, b'{"v":1,"ts":17', "not_json"),
    ("invalid_utf8", W, b'{"v":1,"q":{"pressure":1},"x":"\xc3\x28"}', "invalid_utf8"),
    ("bom", W, b"\xef\xbb\xbf" + _compact(q={"pressure": 300}), "not_json"),
    ("json_number", W, b"42", "not_json"),
    ("json_string", W, b'"pressure=300"', "not_json"),
    ("json_null", W, b"null", "not_json"),
    ("json_array_of_numbers", W, b"[1, 2, 3]", "not_object"),
    ("oversized", W, b'{"v":1,"pad":"' + b"x" * 300_000 + b'"}', "too_large"),
    ("deep_nesting", W, b'{"v":1,"x":' + b"[" * 60_000 + b"]" * 60_000 + b"}", "too_deep"),
    (
        "huge_integer",
        W,
        b'{"v":1,"ts":' + b"9" * 5000 + b',"q":{"pressure":1}}',
        "number_out_of_range",
    ),
    ("duplicate_keys", W, None, "duplicate_key"),
    # numbers
    ("nan", W, None, "not_json"),
    ("infinity", W, None, "not_json"),
    ("1e400", W, None, "number_out_of_range"),
    ("sentinel_-9999", W, None, "sentinel_value"),
    ("sentinel_65535", W, None, "sentinel_value"),
    ("impossible_value", W, None, "physically_impossible"),
    ("wrong_unit", W, None, "unknown_unit"),
    ("value_as_string", W, None, "schema_mismatch"),
    # time
    ("epoch_0", W, None, "ts_not_milliseconds"),
    ("year_2000", W, None, "ts_past"),
    ("seconds_not_ms", W, None, "ts_not_milliseconds"),
    ("microseconds_not_ms", W, None, "ts_future"),
    ("no_time_zone", W, None, "ts_no_timezone"),
    ("impossible_date", W, None, "bad_timestamp"),
    ("far_future", W, None, "ts_future"),
    ("far_past", W, None, "ts_past"),
    ("missing_ts", W, None, "missing_field"),
    # identity
    ("unknown_sensor", telemetry_topic(Utility.WATER, "bad-nobody"), None, "unknown_sensor"),
    ("retired_sensor", telemetry_topic(Utility.WATER, RETIRED), None, "sensor_retired"),
    ("id_disagrees_with_topic", W, None, "id_mismatch"),
    ("senml_name_disagrees", W, None, "id_mismatch"),
    ("uppercase_id_topic", "city/water/BAD-GOOD/telemetry", None, "topic_invalid_sensor_id"),
    ("lookalike_id_topic", "city/water/bad-gоod/telemetry", None, "topic_invalid_sensor_id"),
    ("unknown_utility_topic", "city/sewage/bad-good/telemetry", None, "topic_unknown_utility"),
    ("utility_disagrees", telemetry_topic(Utility.GAS, GOOD), None, "utility_mismatch"),
    ("quantity_not_of_type", telemetry_topic(Utility.WATER, GAS), None, "utility_mismatch"),
    ("quantity_not_for_type", W, None, "quantity_not_for_type"),
    ("unknown_quantity", W, None, "unknown_quantity"),
    # strings
    ("nul_in_string", W, None, "nul_byte"),
    ("lone_surrogate", W, None, "not_json"),
    ("zero_width_quantity", W, None, "unknown_quantity"),
    ("right_to_left_quantity", W, None, "unknown_quantity"),
    ("lookalike_quantity", W, None, "unknown_quantity"),
    ("fullwidth_digits", W, None, "not_json"),
    # injection: stored literally
    ("sql_in_quantity", W, None, "unknown_quantity"),
    ("html_in_quantity", W, None, "unknown_quantity"),
    ("log_injection_quantity", W, None, "unknown_quantity"),
    # schema
    ("missing_version", W, b'{"ts":1,"q":{"pressure":1}}', "missing_field"),
    ("future_version", W, None, "unsupported_version"),
    ("negative_seq", W, None, "bad_sequence"),
    ("seq_beyond_bigint", W, None, "bad_sequence"),
    ("empty_batch", W, b'{"v":1,"batch":[]}', "missing_field"),
]


def _payload(case: str) -> bytes:
    """Payloads built at publish time (timestamps relative to now)."""
    t = _ms()
    q = {"pressure": 300.0}
    table: dict[str, bytes] = {
        "duplicate_keys": b'{"v":1,"ts":%d,"q":{"pressure":300,"pressure":-5}}' % t,
        "nan": b'{"v":1,"ts":%d,"q":{"pressure":NaN}}' % t,
        "infinity": b'{"v":1,"ts":%d,"q":{"pressure":Infinity}}' % t,
        "1e400": b'{"v":1,"ts":%d,"q":{"pressure":1e400}}' % t,
        "sentinel_-9999": _compact(q={"pressure": -9999}),
        "sentinel_65535": _compact(q={"pressure": 65535}),
        "impossible_value": _compact(q={"pressure": 1e7}),
        "wrong_unit": _compact(q=q, u={"pressure": "V"}),
        "value_as_string": _compact(q={"pressure": "300"}),
        "epoch_0": _compact(ts=0, q=q),
        "year_2000": _compact(ts=946_684_800_000, q=q),
        "seconds_not_ms": _compact(ts=t // 1000, q=q),
        "microseconds_not_ms": _compact(ts=t * 1000, q=q),
        "no_time_zone": _compact(ts="2026-11-26T10:00:00", q=q),
        "impossible_date": _compact(ts="2026-02-30T10:00:00+08:00", q=q),
        "far_future": _compact(ts=_ms(86_400 * 365), q=q),
        "far_past": _compact(ts=_ms(-86_400 * 400), q=q),
        "missing_ts": json.dumps({"v": 1, "q": q}).encode(),
        "unknown_sensor": _compact(q=q),
        "retired_sensor": _compact(q=q),
        "id_disagrees_with_topic": _compact(id="some-other-sensor", q=q),
        "senml_name_disagrees": json.dumps(
            [{"bn": "urn:dev:cityops:intruder:", "n": "pressure", "v": 300, "t": 0}]
        ).encode(),
        "uppercase_id_topic": _compact(q=q),
        "lookalike_id_topic": _compact(q=q),
        "unknown_utility_topic": _compact(q=q),
        "utility_disagrees": _compact(q=q),
        "quantity_not_of_type": _compact(q={"gas_concentration": 5}),
        "quantity_not_for_type": _compact(q={"flow": 3.0}),
        "unknown_quantity": _compact(q={"humidity": 50}),
        "nul_in_string": b'{"v":1,"ts":%d,"q":{"pressure":300},"x":"a\x00b"}' % t,
        "lone_surrogate": b'{"v":1,"ts":%d,"q":{"\\ud800":300}}' % t,
        "zero_width_quantity": _compact(q={"pres\u200bsure": 300}),
        "right_to_left_quantity": _compact(q={"\u202epressure": 300}),
        "lookalike_quantity": _compact(q={"рressure": 300}),  # Cyrillic er
        "fullwidth_digits": f'{{"v":1,"ts":{t},"q":{{"pressure":３００}}}}'.encode(),
        "sql_in_quantity": _compact(q={SQL: 1}),
        "html_in_quantity": _compact(q={"<script>alert(1)</script>$x$": 1}),
        "log_injection_quantity": _compact(q={'x\n{"level":"CRITICAL"}': 1}),
        "future_version": json.dumps({"v": 2, "ts": t, "q": q}).encode(),
        "negative_seq": _compact(seq=-1, q=q),
        "seq_beyond_bigint": _compact(seq=2**63, q=q),
    }
    return table[case]


@pytest.mark.parametrize(("case", "topic", "payload", "reason"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_quarantined_and_next_good_is_stored(
    env: tuple[str, Publisher, Ingestor], case: str, topic: str, payload: bytes | None, reason: str
) -> None:
    db_url, pub, _ = env
    body = _payload(case) if payload is None else payload
    seq = next(_seq)
    before = query(db_url, "SELECT coalesce(max(id), 0) FROM quarantine")[0][0]
    pub.publish(topic, body)
    pub.publish(W, encode_reading(_ms() + seq, seq, {"pressure": 300.0 + seq}))
    pub.flush()
    rows = wait_for(
        lambda: query(
            db_url,
            "SELECT topic, reason, detail, payload, payload_size, received_at FROM quarantine"
            " WHERE id > %s",
            (before,),
        )
    )
    assert len(rows) == 1, rows
    q_topic, q_reason, detail, q_payload, size, received_at = rows[0]
    assert (q_topic, q_reason) == (topic, reason), detail
    assert bytes(q_payload) == body[:4096] and size == len(body)
    assert abs(received_at.timestamp() - time.time()) < 60
    stored = wait_for(lambda: query(db_url, "SELECT value FROM readings WHERE seq = %s", (seq,)))
    assert stored == [(300.0 + seq,)]
    if case == "sql_in_quantity":
        assert SQL in detail and query(db_url, "SELECT to_regclass('readings')")[0][0]


def test_retired_and_unknown_never_reach_readings(env: tuple[str, Publisher, Ingestor]) -> None:
    db_url, _, ing = env
    assert query(db_url, "SELECT count(*) FROM readings WHERE sensor_id <> %s", (GOOD,)) == [(0,)]
    assert ing.health().state == "running"
