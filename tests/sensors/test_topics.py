import pytest

from sensors.quantities import Utility
from sensors.topics import (
    TopicError,
    alert_topic,
    parse_telemetry_topic,
    shared,
    telemetry_filter,
    telemetry_topic,
)


def test_telemetry_topic_round_trip() -> None:
    topic = telemetry_topic("water", "wp-510104-1")
    assert topic == "city/water/wp-510104-1/telemetry"
    parsed = parse_telemetry_topic(topic)
    assert parsed.utility is Utility.WATER
    assert parsed.sensor_id == "wp-510104-1"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("city/water/wp-1", "topic_not_telemetry"),
        ("city/water/wp-1/telemetry/extra", "topic_not_telemetry"),
        ("town/water/wp-1/telemetry", "topic_not_telemetry"),
        ("city/steam/wp-1/telemetry", "topic_unknown_utility"),
        ("city/water/WP-1/telemetry", "topic_invalid_sensor_id"),
        ("city/water/wр-1/telemetry", "topic_invalid_sensor_id"),  # Cyrillic look-alike
        ("city/water/wp 1/telemetry", "topic_invalid_sensor_id"),
        ("city/water//telemetry", "topic_invalid_sensor_id"),
        ("city/water/" + "a" * 65 + "/telemetry", "topic_invalid_sensor_id"),
    ],
)
def test_bad_topics_are_refused_with_a_reason(topic: str, reason: str) -> None:
    with pytest.raises(TopicError) as exc:
        parse_telemetry_topic(topic)
    assert exc.value.reason == reason


@pytest.mark.parametrize("bad", ["a+b", "a#", "a/b", "", "Ａ1"])
def test_topics_cannot_be_built_with_wildcards_or_separators(bad: str) -> None:
    with pytest.raises(ValueError):
        telemetry_topic("gas", bad)


def test_filters_and_shared_subscriptions() -> None:
    assert telemetry_filter() == "city/+/+/telemetry"
    assert telemetry_filter("power") == "city/power/+/telemetry"
    assert (
        shared("cityops-ingest", telemetry_filter()) == "$share/cityops-ingest/city/+/+/telemetry"
    )
    assert alert_topic("gas", "gd-1") == "city/alerts/gas/gd-1"
    with pytest.raises(ValueError):
        shared("bad/group", "x")
