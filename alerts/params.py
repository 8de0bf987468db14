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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alerts.engine import StreamConfig


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
    on_delay: int = 1  # threshold: consecutive readings beyond a limit before it raises
    spike_rel: float | None = None  # spike test band, relative to the neighbours' mean
    spike_floor: float = 0.0  # ... and at least this wide [canonical unit]


# On-delay (consecutive readings beyond a limit before the threshold raises) is 1 by default:
# a process alarm pages at once. A single spurious reading is caught by the spike test, and
# its process alarm is then put down to the sensor (alerts/incidents.py: an incident of one
# sensor that shows a fault is a sensor_health incident). Sites with noisy sensors can ask for
# 2 or more with a 'threshold' row ({"on_delay": 2}), at the cost of one reporting interval.
# Spike bands: far outside a quantity's normal step-to-step change (a burst moves a main's
# pressure by tens of kPa, but then it stays).
DEFAULTS: dict[str, DetectorParams] = {
    "pressure": DetectorParams(50.0, 300.0, 3600.0, 0.01, spike_rel=0.25, spike_floor=30.0),
    "flow": DetectorParams(50.0, 300.0, 3600.0, 0.001, spike_rel=0.5, spike_floor=20.0),
    "level": DetectorParams(0.5, 600.0, 7200.0, 0.001, spike_rel=0.25, spike_floor=0.5),
    "voltage": DetectorParams(800.0, 60.0, 1800.0, 0.1),
    "current": DetectorParams(200.0, 60.0, 1800.0, 0.01, spike_rel=0.4, spike_floor=50.0),
    "frequency": DetectorParams(0.3, 60.0, 1800.0, 0.0005),
    "active_power": DetectorParams(None, 60.0, 1800.0, 0.01),
    "loading": DetectorParams(40.0, 300.0, 3600.0, 0.01, spike_rel=0.4, spike_floor=10.0),
    "gas_flow": DetectorParams(None, 300.0, 3600.0, 0.001),
    "gas_concentration": DetectorParams(10.0, 120.0, 86_400.0, 0.0),
    "temperature": DetectorParams(15.0, 600.0, 7200.0, 0.01, spike_rel=0.2, spike_floor=5.0),
}


def params_for(quantity: str) -> DetectorParams:
    return DEFAULTS.get(quantity, DetectorParams(None, 300.0, 3600.0, 0.0))


def build_stream_config(
    quantity: str, detectors: Mapping[str, tuple[str, Mapping[str, Any]]]
) -> StreamConfig:
    """A ``StreamConfig`` from ``alert_detector_settings`` rows: detector -> (severity, params).

    Params override the defaults above: ``rate_of_change``: ``max_change``, ``window_s``,
    ``direction`` (``"rise"``: only a rise counts; default both ways);
    ``stuck``: ``window_s``, ``tolerance``, ``min_points``; ``silent``: ``factor``; ``spike``:
    ``rel``, ``floor``; ``threshold``: ``on_delay`` (the threshold itself always runs where the
    catalogue has limits; with no rows at all the on-delay default still applies).
    """
    d = params_for(quantity)
    rate = stuck = spike = None
    silent = None
    rise_only = False
    if "rate_of_change" in detectors:
        p = detectors["rate_of_change"][1]
        max_change = p.get("max_change", d.rate_max_change)
        if max_change is not None:
            rate = (float(max_change), float(p.get("window_s", d.rate_window_s)))
        rise_only = p.get("direction", "both") == "rise"
    if "stuck" in detectors:
        p = detectors["stuck"][1]
        stuck = (
            float(p.get("window_s", d.stuck_window_s)),
            float(p.get("tolerance", d.stuck_tolerance)),
            int(p.get("min_points", 5)),
        )
    if "silent" in detectors:
        silent = float(detectors["silent"][1].get("factor", d.silence_factor))
    if "spike" in detectors:
        p = detectors["spike"][1]
        rel = p.get("rel", d.spike_rel)
        if rel is not None:
            spike = (float(rel), float(p.get("floor", d.spike_floor)))
    on_delay = int(detectors.get("threshold", ("", {}))[1].get("on_delay", d.on_delay))
    return StreamConfig(
        rate=rate,
        rate_rise_only=rise_only,
        stuck=stuck,
        silent_factor=silent,
        gas_levels="gas_levels" in detectors,
        spike=spike,
        on_delay=max(1, on_delay),
        severity={name: sev for name, (sev, _) in detectors.items() if name != "threshold"},
    )
