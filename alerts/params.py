"""Default detector parameters per quantity (pure data; docs/alerts.md "Detectors").

The alarm limits and deadbands of the threshold detector come from the sensor catalogue
(``sensor_type_quantities``). The catalogue has no columns yet for the other detectors, so their
defaults live here, keyed by quantity in its canonical unit, until they move into the catalogue
(see the report on issue 6). Why each number: a main's pressure moves a few kPa a minute in normal
operation, a burst or a valve slam moves it tens of kPa; flat-line tolerances sit below each
quantity's sensor noise; a sensor reporting every ``expected_interval_s`` is silent after three
missed reports.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DetectorParams:
    rate_max_change: float | None  # [canonical unit] within rate_window_s; None: not checked
    rate_window_s: float
    stuck_window_s: float  # flat for this long [s] ...
    stuck_tolerance: float  # ... within this band [canonical unit]
    profile_bin_s: int = 900  # daily profile resolution [s]
    profile_z_raise: float = 5.0
    profile_z_clear: float = 3.0
    profile_min_duration_s: float = 1800.0
    silence_factor: float = 3.0  # missed reports before "silent"


DEFAULTS: dict[str, DetectorParams] = {
    "pressure": DetectorParams(50.0, 300.0, 3600.0, 0.01),
    "flow": DetectorParams(50.0, 300.0, 3600.0, 0.001),
    "level": DetectorParams(0.5, 600.0, 7200.0, 0.001),
    "voltage": DetectorParams(800.0, 60.0, 1800.0, 0.1),
    "current": DetectorParams(200.0, 60.0, 1800.0, 0.01),
    "frequency": DetectorParams(0.3, 60.0, 1800.0, 0.0005),
    "active_power": DetectorParams(None, 60.0, 1800.0, 0.01),
    "loading": DetectorParams(40.0, 300.0, 3600.0, 0.01),
    "gas_flow": DetectorParams(None, 300.0, 3600.0, 0.001),
    "gas_concentration": DetectorParams(10.0, 120.0, 86_400.0, 0.0),
    "temperature": DetectorParams(15.0, 600.0, 7200.0, 0.01),
}


def params_for(quantity: str) -> DetectorParams:
    return DEFAULTS.get(quantity, DetectorParams(None, 300.0, 3600.0, 0.0))
