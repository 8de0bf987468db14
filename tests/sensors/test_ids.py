"""The documented rule from a utility's sensor ids to catalogue ids (sensors/ids.py)."""

from __future__ import annotations

import pytest

from sensors.ids import SensorIdError, map_sensor_id, map_sensor_ids
from sensors.topics import is_valid_sensor_id


@pytest.mark.parametrize(
    ("utility_id", "catalogue_id"),
    [
        ("wp-510104-1", "wp-510104-1"),  # already valid: kept as it is
        ("T1", "t1"),
        (" PS 12/a ", "ps-12-a"),
        ("_Tank.North", "tank-north"),
        ("水厂1", "1"),
        ("J" * 80, "j" * 64),
    ],
)
def test_the_rule(utility_id: str, catalogue_id: str) -> None:
    assert map_sensor_id(utility_id) == catalogue_id
    assert is_valid_sensor_id(catalogue_id)


def test_an_id_with_nothing_to_keep_is_refused() -> None:
    with pytest.raises(SensorIdError, match="no letter or digit"):
        map_sensor_id("--//")


def test_collisions_and_repeats_are_refused() -> None:
    assert map_sensor_ids(["T1", "t2"]) == {"T1": "t1", "t2": "t2"}
    with pytest.raises(SensorIdError, match="'T1' and 't1' both map to 't1'"):
        map_sensor_ids(["T1", "t1"])
    with pytest.raises(SensorIdError, match="duplicate sensor_id 'X'"):
        map_sensor_ids(["X", "X "])
