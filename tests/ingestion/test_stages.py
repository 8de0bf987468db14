"""The pure stages of ingestion (decode, validate), without broker or database."""

from __future__ import annotations

from ingestion.classify import Catalogue, Decoded, Rejection, SensorEntry
from ingestion.stages import decode, minimal_quarantine_row, unknown_sensors, validate
from sensors.payload import TimeWindow, encode_reading

NOW_MS = 1_764_000_000_000
NOW_US = NOW_MS * 1000
TOPIC = "city/water/wp-1/telemetry"
CATALOGUE = Catalogue(
    {
        "wp-1": SensorEntry("water", "water_pressure", True),
        "old": SensorEntry("water", "water_pressure", False),
    },
    {"water_pressure": {"pressure": (0.0, 1000.0)}},
)


def _item(topic: str, payload: bytes, received_us: int = NOW_US):  # type: ignore[no-untyped-def]
    item, defect = decode("msg", topic, payload, False, received_us, NOW_US, TimeWindow())
    assert defect is None
    return item


def test_decode_keeps_a_message_the_decoder_fails_on() -> None:
    def broken(*_args: object) -> Decoded:
        raise KeyError("boom")

    item, defect = decode("m", TOPIC, b"{}", False, 5, NOW_US, TimeWindow(), decoder=broken)
    assert item.outcome == Rejection("internal_error", "KeyError: 'boom'", None)
    assert item.message == "m" and item.received_us == 5
    assert defect is not None and "KeyError" in defect


def test_validate_splits_rows_and_rejections_and_counts_them() -> None:
    good = _item(TOPIC, encode_reading(NOW_MS - 2000, 7, {"pressure": 321.5}), NOW_US - 10)
    suspect = _item(TOPIC, encode_reading(NOW_MS - 1000, 8, {"pressure": 1500.0}), NOW_US - 20)
    bad = _item(TOPIC, b"not json")
    retired = _item("city/water/old/telemetry", encode_reading(NOW_MS, 1, {"pressure": 1.0}))
    unknown = _item("city/water/nobody/telemetry", encode_reading(NOW_MS, 1, {"pressure": 1.0}))
    items = [good, suspect, bad, retired, unknown]
    assert unknown_sensors(items, CATALOGUE) == {"nobody"}
    out = validate(items, CATALOGUE)
    assert out.rows == [
        ("wp-1", "pressure", (NOW_MS - 2000) * 1000, 321.5, 7, 0),
        ("wp-1", "pressure", (NOW_MS - 1000) * 1000, 1500.0, 8, 1),  # suspect: flagged, stored
    ]
    assert out.received_us == [NOW_US - 10, NOW_US - 20]
    assert out.by_reason == {"not_json": 1, "sensor_retired": 1, "unknown_sensor": 1}
    assert [r.reason for r in out.rejects] == ["not_json", "sensor_retired", "unknown_sensor"]
    assert out.rejects[0].payload == b"not json" and out.rejects[0].topic == TOPIC
    assert out.oldest_received_us == NOW_US - 20
    assert out.newest_ts_us == (NOW_MS - 1000) * 1000
    assert out.defects == []


def test_a_catalogue_check_that_raises_quarantines_only_its_message() -> None:
    broken = Catalogue({"wp-1": SensorEntry("water", "water_pressure", True)}, None)  # type: ignore[arg-type]
    out = validate([_item(TOPIC, encode_reading(NOW_MS, 1, {"pressure": 1.0}))], broken)
    assert [r.reason for r in out.rejects] == ["internal_error"]
    assert out.rejects[0].sensor_id == "wp-1" and len(out.defects) == 1


def test_minimal_quarantine_row_keeps_no_payload_and_an_ascii_topic() -> None:
    row = minimal_quarantine_row(_item("city/water/wp-1/télé", b"x" * 50))
    assert (row.payload, row.payload_size, row.sensor_id) == (b"", 50, None)
    assert row.topic == "city/water/wp-1/t\\xe9l\\xe9" and row.reason == "store_refused"
