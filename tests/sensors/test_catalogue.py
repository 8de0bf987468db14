import json
from pathlib import Path

import pytest

from sensors.catalogue import (
    SENSOR_TYPES,
    CatalogueError,
    parse_csv_sensors,
    parse_geojson_sensors,
    sensors_to_geojson,
)
from sensors.quantities import QUANTITIES, UnknownUnitError, Utility

DATA = Path(__file__).resolve().parents[2] / "data"


def test_demo_catalogue_parses_and_covers_every_district_and_utility() -> None:
    doc = json.loads((DATA / "demo_sensors.geojson").read_text(encoding="utf-8"))
    sensors = parse_geojson_sensors(doc)
    assert len(sensors) == 120
    assert {s.district_adcode for s in sensors} == {
        f["properties"]["adcode"]
        for f in json.loads((DATA / "chengdu_districts.geojson").read_text(encoding="utf-8"))[
            "features"
        ]
    }
    assert {s.utility for s in sensors} == set(Utility)
    assert parse_geojson_sensors(sensors_to_geojson(sensors)) == sensors


def test_csv_catalogue_with_errors_names_the_line() -> None:
    good = "sensor_id,sensor_type,name,lon,lat\nwp-1,water_pressure,泵站,104.06,30.67\n"
    [s] = parse_csv_sensors(good)
    assert (s.utility, s.name, s.lon) == (Utility.WATER, "泵站", 104.06)
    with pytest.raises(CatalogueError, match="line 3"):
        parse_csv_sensors(good + "wp-2,steam_valve,x,104,30\n")
    with pytest.raises(CatalogueError, match="duplicate"):
        parse_csv_sensors(good + "wp-1,water_pressure,x,104,30\n")
    with pytest.raises(CatalogueError, match="invalid sensor_id"):
        parse_csv_sensors("sensor_id,sensor_type,name,lon,lat\nWP/1,water_pressure,x,104,30\n")
    with pytest.raises(CatalogueError, match="coordinates"):
        parse_csv_sensors("sensor_id,sensor_type,name,lon,lat\nwp-1,water_pressure,x,204,30\n")


def test_sensor_type_limits_are_in_canonical_units_and_ordered() -> None:
    for t in SENSOR_TYPES.values():
        for lim in t.limits:
            q = QUANTITIES[lim.quantity]
            for v in (lim.alarm_low, lim.alarm_high):
                if v is not None:
                    assert q.physical_min <= v <= q.physical_max
            if lim.alarm_low is not None and lim.alarm_high is not None:
                assert lim.alarm_low + 2 * lim.deadband < lim.alarm_high


@pytest.mark.parametrize(
    ("quantity", "value", "unit", "expected"),
    [
        ("pressure", 0.35, "MPa", 350.0),
        ("pressure", 3.5, "bar", 350.0),
        ("pressure", 10.0, "m", 98.0665),
        ("flow", 36.0, "m3/h", 10.0),
        ("voltage", 10.0, "kV", 10_000.0),
        ("temperature", 300.0, "K", 26.85),
        ("pressure", 350.0, None, 350.0),
    ],
)
def test_units_convert_to_canonical(
    quantity: str, value: float, unit: str | None, expected: float
) -> None:
    assert QUANTITIES[quantity].to_canonical(value, unit) == pytest.approx(expected)


def test_unknown_unit_is_refused() -> None:
    with pytest.raises(UnknownUnitError):
        QUANTITIES["pressure"].to_canonical(1.0, "furlong")
