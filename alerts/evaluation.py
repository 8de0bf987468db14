"""Scoring detections against a simulator run's ground truth (pure).

Ground truth comes from ``sim_ground_truth`` (written by the simulators: what happened, where,
when, which sensors it affected); detections are cityops incidents (one per real event is the
goal, issue 6). The CLI's ``cityops evaluate`` replays a scenario through the pipeline and then
calls ``alerts.api.read_evaluation_input`` and ``score_run`` on the run.

Matching: a process incident (truth ``kind = 'incident'``) is detected by a detection of the same
network (utility) that is not a pure sensor-health incident, first raised within
``[start - EARLY_S, end + LATE_S]``, and either shares an affected sensor or lies within
``MATCH_RADIUS_M`` of the truth location. A sensor fault (truth ``kind = 'fault'``) is detected by
a ``sensor_health`` detection sharing one of its sensors in the same window. A detection that
matches no truth event is a false alert.

Figures per truth type: recall, median and p90 time to detection (first matching detection minus
start) [s], localisation error (distance from the detection's likely location, the midpoint of
its best candidate pipe, or its centre when it has none, to the truth location) [m], the share
within 300 m and the share whose true element is among the detection's first ``TOP_K``
candidates (alerts/enrich.py); over the water incidents together: the median error, the share
within 300 m and the top-5 share (the targets of issue 15); over the run: precision, false alerts per 1,000 sensor-days and a
NAB-style score (Lavin & Ahmad 2015, standard profile, simplified: the earliest detection in a
window of ``NAB_WINDOW_S`` from the start scores ``2 / (1 + exp(5 y)) - 1`` with ``y`` from -1 at
the window's start to 0 at its end, a missed event -1, each false alert -0.11; normalised so that
no detections score 0 and perfect detection 100).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from alerts.incidents import haversine_m

EARLY_S = 300.0
LATE_S = 1800.0
MATCH_RADIUS_M = 2000.0
NAB_WINDOW_S = 3600.0
NAB_FP_WEIGHT = 0.11
LOCALISED_M = 300.0
PLANNED_OPERATION = "planned_operation"  # the incident kind of alarms during booked works
TOP_K = 5
US = 1_000_000


@dataclass(frozen=True, slots=True)
class TruthEvent:
    event_id: int
    kind: str  # incident | fault
    type: str  # burst, leak, gas_leak, line_outage ... / stuck, dropout ...
    network: str | None
    start_us: int
    end_us: int | None
    lon: float | None
    lat: float | None
    sensors: frozenset[str]
    element: str | None = None  # the pipe, line or node it happened on


@dataclass(frozen=True, slots=True)
class DetectionRecord:
    detection_id: int
    utility: str
    kind: str  # incident kind (alerts/incidents.py)
    first_us: int
    lon: float
    lat: float
    sensors: frozenset[str]
    # the likely location's point (the best candidate pipe's midpoint), when it was placed
    loc_lon: float | None = None
    loc_lat: float | None = None
    candidates: tuple[str, ...] = ()  # ranked candidate elements (alerts/enrich.py)

    def point(self) -> tuple[float, float]:
        if self.loc_lon is not None and self.loc_lat is not None:
            return self.loc_lon, self.loc_lat
        return self.lon, self.lat


@dataclass(frozen=True, slots=True)
class TypeScore:
    type: str
    events: int
    detected: int
    recall: float
    ttd_median_s: float | None
    ttd_p90_s: float | None
    loc_median_m: float | None
    localised_share: float | None  # of detected events with a location, within LOCALISED_M
    top_k_share: float | None = None  # of detected events with an element: in the top TOP_K


@dataclass(frozen=True, slots=True)
class Localisation:
    """Water incidents together (the targets: >= 70 % within 300 m, >= 80 % in the top 5)."""

    events: int  # detected water incidents with a true location
    median_m: float | None
    within_share: float | None
    top_k_share: float | None


@dataclass(frozen=True, slots=True)
class RunScore:
    by_type: tuple[TypeScore, ...]
    detections: int
    false_alerts: int
    precision: float | None
    false_per_1000_sensor_days: float
    nab_score: float
    water: Localisation | None = None


def _quantile(xs: Sequence[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def matches(truth: TruthEvent, det: DetectionRecord, run_end_us: int) -> bool:
    end = truth.end_us if truth.end_us is not None else run_end_us
    if not (truth.start_us - EARLY_S * US <= det.first_us <= end + LATE_S * US):
        return False
    if truth.kind == "fault":
        return det.kind == "sensor_health" and bool(truth.sensors & det.sensors)
    if det.kind == "sensor_health" or (truth.network and det.utility != truth.network):
        return False
    if truth.sensors & det.sensors:
        return True
    return (
        truth.lon is not None
        and truth.lat is not None
        and haversine_m(truth.lon, truth.lat, det.lon, det.lat) <= MATCH_RADIUS_M
    )


def nab_sigmoid(y: float) -> float:
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def score_run(
    truth: Sequence[TruthEvent],
    detections: Sequence[DetectionRecord],
    *,
    sensors: int,
    run_start_us: int,
    run_end_us: int,
) -> RunScore:
    # a planned operation's alarms (works calendar, decision 0074) were expected by the people
    # who booked it: neither a detection of an unplanned event nor a false alert
    detections = [d for d in detections if d.kind != PLANNED_OPERATION]
    matched_dets: set[int] = set()
    per_type: dict[str, list[tuple[TruthEvent, DetectionRecord | None]]] = {}
    nab_raw = 0.0
    water_err: list[float] = []
    water_top: list[bool] = []
    for t in sorted(truth, key=lambda t: t.start_us):
        hits = sorted(
            (d for d in detections if matches(t, d, run_end_us)), key=lambda d: d.first_us
        )
        matched_dets.update(d.detection_id for d in hits)
        first = hits[0] if hits else None
        per_type.setdefault(t.type, []).append((t, first))
        in_window = [d for d in hits if t.start_us <= d.first_us <= t.start_us + NAB_WINDOW_S * US]
        if in_window:
            y = (in_window[0].first_us - t.start_us) / (NAB_WINDOW_S * US) - 1.0
            nab_raw += nab_sigmoid(y)
        else:
            nab_raw -= 1.0
    scores = []
    for ttype, pairs in sorted(per_type.items()):
        found = [(t, d) for t, d in pairs if d is not None]
        ttd = [max(0.0, (d.first_us - t.start_us) / US) for t, d in found]
        loc = [
            haversine_m(t.lon, t.lat, *d.point())
            for t, d in found
            if t.lon is not None and t.lat is not None
        ]
        top = [t.element in d.candidates[:TOP_K] for t, d in found if t.element]
        if any(t.kind == "incident" and t.network == "water" for t, _ in pairs):
            water_err += loc
            water_top += top
        scores.append(
            TypeScore(
                ttype,
                len(pairs),
                len(found),
                len(found) / len(pairs),
                _quantile(ttd, 0.5),
                _quantile(ttd, 0.9),
                _quantile(loc, 0.5),
                (sum(x <= LOCALISED_M for x in loc) / len(loc)) if loc else None,
                (sum(top) / len(top)) if top else None,
            )
        )
    false_alerts = len([d for d in detections if d.detection_id not in matched_dets])
    nab_raw -= NAB_FP_WEIGHT * false_alerts
    n = len(truth)
    # normalised: no detections -> 0 (raw -n), perfect -> 100 (raw about +n)
    perfect = n * nab_sigmoid(-1.0)
    nab = 100.0 * (nab_raw + n) / (perfect + n) if n else (0.0 if false_alerts else 100.0)
    sensor_days = sensors * max(1e-9, (run_end_us - run_start_us) / US / 86_400)
    return RunScore(
        tuple(scores),
        len(detections),
        false_alerts,
        (len(detections) - false_alerts) / len(detections) if detections else None,
        1000.0 * false_alerts / sensor_days,
        nab,
        Localisation(
            len(water_err),
            _quantile(water_err, 0.5),
            sum(x <= LOCALISED_M for x in water_err) / len(water_err),
            (sum(water_top) / len(water_top)) if water_top else None,
        )
        if water_err
        else None,
    )


def format_score(run_id: str, s: RunScore) -> str:
    """A plain-text table for the CLI."""

    def f(x: float | None, fmt: str) -> str:
        return "-" if x is None else format(x, fmt)

    lines = [
        f"run {run_id}: {s.detections} detections, {s.false_alerts} false, precision "
        f"{f(s.precision, '.2f')}, false alerts per 1000 sensor-days "
        f"{s.false_per_1000_sensor_days:.2f}, NAB-style score {s.nab_score:.1f}",
        f"{'type':<22}{'events':>7}{'recall':>8}{'TTD p50 s':>11}{'TTD p90 s':>11}"
        f"{'loc p50 m':>11}{'<=300 m':>9}{'top5':>6}",
    ]
    for t in s.by_type:
        lines.append(
            f"{t.type:<22}{t.events:>7}{t.recall:>8.2f}{f(t.ttd_median_s, '.0f'):>11}"
            f"{f(t.ttd_p90_s, '.0f'):>11}{f(t.loc_median_m, '.0f'):>11}"
            f"{f(t.localised_share, '.2f'):>9}{f(t.top_k_share, '.2f'):>6}"
        )
    if s.water is not None:
        w = s.water
        lines.append(
            f"water localisation: {w.events} incidents, median error {f(w.median_m, '.0f')} m,"
            f" within {LOCALISED_M:.0f} m {f(w.within_share, '.2f')},"
            f" true pipe in top {TOP_K} {f(w.top_k_share, '.2f')}"
        )
    return "\n".join(lines)
