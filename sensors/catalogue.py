"""The sensor catalogue: sensor types with their quantities and alarm ranges, and sensors.

Alarm ranges are process limits (a pressure too low for supply); physical limits live with the
quantity (sensors/quantities.py). Values here are the defaults seeded by ``cityops migrate``;
operators change them in the ``sensor_type_quantities`` table.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sensors.quantities import QUANTITIES, Utility
from sensors.topics import is_valid_sensor_id


@dataclass(frozen=True, slots=True)
class QuantityLimits:
    quantity: str
    alarm_low: float | None  # [canonical unit]; None: no lower alarm
    alarm_high: float | None
    deadband: float  # hysteresis [canonical unit]: clear only this far back inside the range


@dataclass(frozen=True, slots=True)
class SensorType:
    type_id: str
    utility: Utility
    name_zh: str
    name_en: str
    expected_interval_s: float
    limits: tuple[QuantityLimits, ...]

    @property
    def quantities(self) -> tuple[str, ...]:
        return tuple(lim.quantity for lim in self.limits)


SENSOR_TYPES: dict[str, SensorType] = {
    t.type_id: t
    for t in (
        # Chengdu's minimum service pressure at the tap is 0.14 MPa; mains run 0.25-0.45 MPa.
        SensorType(
            "water_pressure",
            Utility.WATER,
            "供水压力监测点",
            "Water pressure station",
            60,
            (QuantityLimits("pressure", 200.0, 700.0, 10.0),),
        ),
        SensorType(
            "water_flow",
            Utility.WATER,
            "供水流量计",
            "Water flow meter",
            60,
            (
                QuantityLimits("flow", None, 400.0, 5.0),
                QuantityLimits("pressure", 200.0, 700.0, 10.0),
            ),
        ),
        SensorType(
            "water_tank",
            Utility.WATER,
            "水池液位计",
            "Tank level gauge",
            60,
            (QuantityLimits("level", 1.0, 9.5, 0.2),),
        ),
        # 10 kV distribution bus: +/-7 % of nominal (GB/T 12325); frequency 50 +/- 0.2 Hz.
        SensorType(
            "power_bus",
            Utility.POWER,
            "10kV母线监测",
            "10 kV bus monitor",
            60,
            (
                QuantityLimits("voltage", 9300.0, 10700.0, 50.0),
                QuantityLimits("current", None, 600.0, 10.0),
                QuantityLimits("frequency", 49.8, 50.2, 0.02),
            ),
        ),
        SensorType(
            "power_transformer",
            Utility.POWER,
            "配电变压器监测",
            "Transformer monitor",
            60,
            (
                QuantityLimits("loading", None, 100.0, 5.0),
                QuantityLimits("temperature", None, 95.0, 3.0),
            ),
        ),
        # medium-pressure B gas distribution (0.01-0.2 MPa) regulated to about 150 kPa
        SensorType(
            "gas_pressure",
            Utility.GAS,
            "燃气压力监测点",
            "Gas pressure station",
            60,
            (QuantityLimits("pressure", 100.0, 250.0, 5.0),),
        ),
        # 20 %LEL is the usual first alarm level of combustible gas detectors (GB 15322)
        SensorType(
            "gas_detector",
            Utility.GAS,
            "可燃气体探测器",
            "Combustible gas detector",
            60,
            (QuantityLimits("gas_concentration", None, 20.0, 2.0),),
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Sensor:
    sensor_id: str
    utility: Utility
    sensor_type: str
    name: str
    lon: float
    lat: float
    district_adcode: int | None = None
    asset_id: str | None = None
    status: str = "active"  # active | retired


class CatalogueError(ValueError):
    pass


def parse_sensor_record(props: Mapping[str, Any], lon: float, lat: float) -> Sensor:
    """Validate one catalogue record (from GeoJSON properties or a CSV row)."""
    sid = str(props.get("sensor_id", "")).strip()
    if not is_valid_sensor_id(sid):
        raise CatalogueError(f"invalid sensor_id {sid!r}: use 1-64 of [a-z0-9_-]")
    stype = str(props.get("sensor_type", "")).strip()
    if stype not in SENSOR_TYPES:
        raise CatalogueError(f"{sid}: unknown sensor_type {stype!r}")
    utility = SENSOR_TYPES[stype].utility
    if props.get("utility") not in (None, "", utility.value):
        raise CatalogueError(f"{sid}: sensor_type {stype} belongs to {utility.value}")
    if not (math.isfinite(lon) and math.isfinite(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
        raise CatalogueError(f"{sid}: coordinates out of range ({lon}, {lat})")
    adcode = props.get("district_adcode")
    status = str(props.get("status") or "active")
    if status not in ("active", "retired"):
        raise CatalogueError(f"{sid}: status must be active or retired")
    return Sensor(
        sensor_id=sid,
        utility=utility,
        sensor_type=stype,
        name=str(props.get("name") or sid)[:200],
        lon=float(lon),
        lat=float(lat),
        district_adcode=int(adcode) if adcode not in (None, "") else None,
        asset_id=(str(props["asset_id"]) if props.get("asset_id") not in (None, "") else None),
        status=status,
    )


def parse_geojson_sensors(doc: Mapping[str, Any]) -> list[Sensor]:
    """Sensors from a GeoJSON FeatureCollection of Points in EPSG:4326."""
    if doc.get("type") != "FeatureCollection":
        raise CatalogueError("expected a GeoJSON FeatureCollection")
    out = []
    for i, feat in enumerate(doc.get("features") or []):
        geom = feat.get("geometry") or {}
        if geom.get("type") != "Point":
            raise CatalogueError(f"feature {i}: geometry must be a Point")
        lon, lat = geom["coordinates"][:2]
        out.append(parse_sensor_record(feat.get("properties") or {}, float(lon), float(lat)))
    return _unique(out)


def parse_csv_sensors(text: str) -> list[Sensor]:
    """Sensors from CSV with columns sensor_id, sensor_type, name, lon, lat[, district_adcode, asset_id, status]."""
    reader = csv.DictReader(io.StringIO(text))
    out = []
    for line, row in enumerate(reader, start=2):
        try:
            out.append(parse_sensor_record(row, float(row["lon"]), float(row["lat"])))
        except (KeyError, ValueError) as exc:
            raise CatalogueError(f"line {line}: {exc}") from None
    return _unique(out)


def _unique(sensors: Iterable[Sensor]) -> list[Sensor]:
    seen: set[str] = set()
    out = []
    for s in sensors:
        if s.sensor_id in seen:
            raise CatalogueError(f"duplicate sensor_id {s.sensor_id}")
        seen.add(s.sensor_id)
        out.append(s)
    return out


def sensors_to_geojson(sensors: Iterable[Sensor]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [round(s.lon, 6), round(s.lat, 6)]},
                "properties": {
                    "sensor_id": s.sensor_id,
                    "sensor_type": s.sensor_type,
                    "utility": s.utility.value,
                    "name": s.name,
                    "district_adcode": s.district_adcode,
                    "asset_id": s.asset_id,
                    "status": s.status,
                },
            }
            for s in sensors
        ],
    }


assert all(lim.quantity in QUANTITIES for t in SENSOR_TYPES.values() for lim in t.limits)


@dataclass(frozen=True, slots=True)
class DefaultDetector:
    """A streaming detector every installation starts with (``alert_detector_settings``; the
    threshold on the limits above always runs). Parameters not given take alerts' defaults."""

    type_id: str
    quantity: str
    detector: str  # silent | spike | stuck | rate_of_change | gas_levels | drift
    severity: str
    params: Mapping[str, float | str] = field(default_factory=dict)


def _defaults() -> tuple[DefaultDetector, ...]:
    out: list[DefaultDetector] = []
    for t in SENSOR_TYPES.values():
        for lim in t.limits:
            # a sensor that stops reporting, or reports spikes, is a maintenance job
            if lim.quantity != "frequency":  # a dead bus reads no frequency: voltage says it
                out.append(DefaultDetector(t.type_id, lim.quantity, "silent", "warning"))
            if lim.quantity not in ("voltage", "frequency", "gas_concentration"):
                out.append(DefaultDetector(t.type_id, lim.quantity, "spike", "warning"))
    out += [
        # a pressure transducer frozen for an hour (QARTOD flat-line)
        DefaultDetector("water_pressure", "pressure", "stuck", "warning"),
        DefaultDetector("gas_pressure", "pressure", "stuck", "warning"),
        # a calibration drift: a day-on-day difference that keeps growing (alerts/detectors/drift.py)
        DefaultDetector("water_pressure", "pressure", "drift", "warning"),
        DefaultDetector("gas_pressure", "pressure", "drift", "warning"),
        # graded %LEL levels (GB/T 50493) and a rise over a near-zero background: a small leak
        # gives a few %LEL at the nearest detectors, under every level, but it rises; 0.4 %LEL
        # in 10 min is four times the detectors' step-to-step noise
        DefaultDetector("gas_detector", "gas_concentration", "gas_levels", "critical"),
        DefaultDetector(
            "gas_detector",
            "gas_concentration",
            "rate_of_change",
            "major",
            {"max_change": 0.4, "window_s": 600.0, "direction": "rise"},
        ),
    ]
    return tuple(out)


DEFAULT_DETECTORS: tuple[DefaultDetector, ...] = _defaults()
