"""Incidents: related alerts grouped by place and time (pure).

Method: single-linkage grouping in space and time within one utility. A new alert joins the
nearest open incident of its utility whose centre is within ``radius_m`` [m] of the alert's sensor
and whose latest alert is at most ``window_s`` [s] older than it; otherwise it opens an incident.
The centre is the mean position of the member sensors weighted by how strongly each shows the
symptom (``symptom_weight``), the radius the farthest member from it (an upper bound),
the severity the highest of the members. Distances are great-circle (haversine, mean Earth
radius), exact enough at city scale (< 0.5 % error).

Planned operations: a process alarm raised during an active works-calendar entry on its
sensor (``alerts.suppressed_by = 'works:<id>'``, alerts/stores/works.py) is grouped only with
other such alarms, into an incident of kind ``planned_operation``: a valve shut for works is
not a leak or a burst, and the real events around it stay apart.

Grouping by the topology of metered areas: a water process alarm that finds no incident near
enough joins its metered area's open burst or leak incident, however far from the inlet (a
burst's pressure falls downstream of it). Grouping by the GIS network graph (a pressure drop on
a different pressure zone stays apart, even when near) is a later step (docs/alerts.md).

``choose_for_alert`` and ``settle`` are the rules the grouper applies to each raised alert
(alerts/stores/grouping.py fetches the candidates and writes the decision).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from alerts.messages import SEVERITIES, UTILITY_NAMES

EARTH_RADIUS_M = 6_371_008.8
DEFAULT_RADIUS_M = {"water": 1500.0, "gas": 500.0, "power": 3000.0}
DEFAULT_WINDOW_S = 1800.0


@dataclass(frozen=True, slots=True)
class AlertPoint:
    alert_id: int
    utility: str
    kind: str
    severity: str
    raised_us: int  # [us]
    lon: float
    lat: float
    weight: float = 1.0  # symptom_weight: how strongly this sensor shows the symptom


@dataclass(frozen=True, slots=True)
class IncidentState:
    incident_id: int
    utility: str
    severity: str
    last_alert_us: int  # [us]
    lon: float  # centre
    lat: float
    count: int
    radius_m: float
    kinds: frozenset[str]
    weight: float = 1.0  # sum of the members' weights (the centre is their weighted mean)


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def max_severity(a: str, b: str) -> str:
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return a if rank.get(a, 0) >= rank.get(b, 0) else b


def choose_incident(
    alert: AlertPoint,
    open_incidents: Sequence[IncidentState],
    *,
    radius_m: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
) -> IncidentState | None:
    """The incident the alert belongs to, or None (it opens a new one)."""
    radius = radius_m if radius_m is not None else DEFAULT_RADIUS_M.get(alert.utility, 1000.0)
    best: tuple[float, IncidentState] | None = None
    for inc in open_incidents:
        if inc.utility != alert.utility:
            continue
        if not (-window_s * 1e6 <= alert.raised_us - inc.last_alert_us <= window_s * 1e6):
            continue
        d = haversine_m(alert.lon, alert.lat, inc.lon, inc.lat)
        if d <= radius and (best is None or d < best[0]):
            best = (d, inc)
    return best[1] if best else None


HEALTH_KINDS = frozenset({"silent", "stuck", "sensor_fault", "spike", "drift"})
MIN_WEIGHT = 0.01
PLANNED_KIND = "planned_operation"
PLANNED_TAG = "works:planned"  # in an incident's kinds: its process alarms were planned


def symptom_weight(kind: str, value: float, limit: float | None) -> float:
    """How strongly an alert shows its symptom, for the incident centre: the squared relative
    exceedance of the limit (a sensor 60 kPa under a 200 kPa limit weighs 9 times one 20 kPa
    under), so that the centre leans towards the sensors nearest the cause (a burst's largest
    pressure drops, a leak's highest concentration). Sensor-health alerts barely count."""
    if kind in HEALTH_KINDS or limit is None or not math.isfinite(limit) or limit == 0:
        return MIN_WEIGHT
    if kind == "rate_of_change":  # value: the change; limit: the allowed change
        strength = abs(value) / abs(limit)
    elif kind.startswith("gas_lel"):  # value: %LEL; limit: the level
        strength = value / limit
    else:  # thresholds: how far beyond the limit, relative to it
        strength = 1.0 + abs(value - limit) / abs(limit) * 10.0
    return max(MIN_WEIGHT, strength * strength)


def join_incident(inc: IncidentState, alert: AlertPoint) -> IncidentState:
    """The incident with one more member: weighted mean centre (``symptom_weight``), radius,
    severity, kinds."""
    n = inc.count + 1
    total = inc.weight + alert.weight
    share = alert.weight / total
    lon = inc.lon + (alert.lon - inc.lon) * share
    lat = inc.lat + (alert.lat - inc.lat) * share
    # the radius is an upper bound after moving the centre (members are not kept here)
    moved = haversine_m(inc.lon, inc.lat, lon, lat)
    radius = max(inc.radius_m + moved, haversine_m(lon, lat, alert.lon, alert.lat))
    return replace(
        inc,
        severity=max_severity(inc.severity, alert.severity),
        last_alert_us=max(inc.last_alert_us, alert.raised_us),
        lon=lon,
        lat=lat,
        count=n,
        radius_m=radius,
        kinds=inc.kinds | {alert.kind},
        weight=total,
    )


def new_incident(alert: AlertPoint, incident_id: int = 0) -> IncidentState:
    return IncidentState(
        incident_id,
        alert.utility,
        alert.severity,
        alert.raised_us,
        alert.lon,
        alert.lat,
        1,
        0.0,
        frozenset({alert.kind}),
        alert.weight,
    )


def group_alerts(
    alerts: Sequence[AlertPoint],
    *,
    radius_m: float | None = None,
    window_s: float = DEFAULT_WINDOW_S,
) -> list[list[int]]:
    """Group a batch of alerts (in raise order) the way the engine does one by one; returns the
    alert ids per incident, in order of opening. For back-fills and the evaluation."""
    incidents: list[IncidentState] = []
    members: list[list[int]] = []
    for a in sorted(alerts, key=lambda a: (a.raised_us, a.alert_id)):
        inc = choose_incident(a, incidents, radius_m=radius_m, window_s=window_s)
        if inc is None:
            incidents.append(new_incident(a, len(incidents)))
            members.append([a.alert_id])
        else:
            incidents[inc.incident_id] = join_incident(inc, a)
            members[inc.incident_id].append(a.alert_id)
    return members


def alert_tag(quantity: str, kind: str) -> str:
    """How an alert is recorded in its incident's ``kinds``: ``"<quantity>:<kind>"``."""
    return f"{quantity}:{kind}"


def incident_kind(utility: str, kinds: frozenset[str], *, suspect_only: bool = False) -> str:
    """A coarse label of what the incident probably is, from its members' alert tags
    (``alert_tag``; a bare kind counts with an unknown quantity). ``suspect_only``: every
    sensor with a process alarm in the incident is itself flagged faulty (silent, stuck, spiky);
    its process alarms are then put down to the sensors (validity before alarm):
    ``sensor_health``."""
    parts = {(q, k) for q, _, k in (t.rpartition(":") for t in kinds)}
    if suspect_only and any(k in HEALTH_KINDS for _, k in parts):
        return "sensor_health"
    if PLANNED_TAG in kinds:
        return PLANNED_KIND
    if utility == "gas" and any(
        k.startswith("gas_lel") or q == "gas_concentration" for q, k in parts
    ):
        return "gas_leak"
    if utility == "water" and (
        any(k == "water_burst" for _, k in parts)
        # the classic signature: pressure under its low limit with inlet flow over its high one
        or {("pressure", "threshold_low"), ("flow", "threshold_high")} <= parts
    ):
        return "water_burst"
    if utility == "water" and any(k in ("night_flow_rise", "night_flow_step") for _, k in parts):
        return "water_leak"
    if utility == "water" and any(k == "inlet_flow_low" for _, k in parts):
        return "water_supply_loss"
    if parts and all(k in HEALTH_KINDS for _, k in parts):
        return "sensor_health"
    if utility == "power" and any(
        k == "silent" or (q == "voltage" and k == "threshold_low") for q, k in parts
    ):
        return "power_outage"
    return f"{utility}_anomaly"


_KIND_TEXT = {
    "gas_leak": ("疑似燃气泄漏", "suspected gas leak"),
    "water_burst": ("疑似供水爆管", "suspected water main burst"),
    "water_leak": ("疑似供水管网漏水", "suspected water leak"),
    "water_supply_loss": ("水源供水中断（泵站或水厂）", "supply lost at a source (pump or works)"),
    "sensor_health": ("传感器异常", "sensor problems"),
    PLANNED_KIND: (
        "计划作业（阀门操作或管网调整）引起",
        "a planned operation (valve or network works)",
    ),
    "power_outage": ("疑似停电", "suspected power outage"),
}


def incident_explanation(inc: IncidentState, *, suspect_only: bool = False) -> tuple[str, str]:
    """(zh, en) one-liners: what, how many alerts, over what area."""
    kind = incident_kind(inc.utility, inc.kinds, suspect_only=suspect_only)
    u_zh, u_en = UTILITY_NAMES.get(inc.utility, (inc.utility, inc.utility))
    k_zh, k_en = _KIND_TEXT.get(kind, (f"{u_zh}异常", f"{u_en} anomaly"))
    r = f"{inc.radius_m:.0f}"
    return (
        f"{k_zh}：{inc.count} 条相关告警，范围约 {r} 米",
        f"{k_en}: {inc.count} related alerts within about {r} m",
    )


# -- one raised alert into its incident (the grouper's rules) ---------------------------------

AREA_INCIDENT_KINDS = frozenset({"water_burst", "water_leak"})
# process alarms of one metered area raised this close together [s] are one hydraulic event,
# however far apart their sensors: a pressure change crosses a zone in seconds (a tank that
# runs dry drops four loggers kilometres apart at one reading: four incidents on ky10)
SAME_EVENT_S = 120.0


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """A newly raised alert to group, placed at its sensor."""

    point: AlertPoint  # its kind is the alert's tag (``alert_tag``)
    sensor_id: str
    kind: str  # the alert's kind
    flags: frozenset[str] = frozenset()  # tags of the sensor's other active sensor-health alerts
    planned: str | None = None  # its works mark ('works:<id>'): raised during planned works

    @property
    def keeps_apart(self) -> bool:
        """A sensor's own problem (silent, stuck, spiky), grouped apart from the process;
        except a silent power monitor: a substation's RTU that loses its supply goes silent,
        a symptom of the outage around it."""
        silent_rtu = self.point.utility == "power" and self.kind == "silent"
        return self.kind in HEALTH_KINDS and not silent_rtu

    @property
    def planned_process(self) -> bool:
        """A process alarm raised during planned works on its sensor."""
        return self.planned is not None and not self.keeps_apart

    @property
    def may_join_by_area(self) -> bool:
        """A water process alarm: it may join its metered area's burst or leak incident. A
        night-flow step is a new leak on top of an open one (alerts/balance.py): it opens an
        incident of its own, or one leak would hide the next."""
        return (
            self.point.utility == "water"
            and not self.keeps_apart
            and self.kind != "night_flow_step"
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open incident of the alert's utility whose latest alert is within the window."""

    incident: IncidentState
    kind: str  # incident_kind as stored
    has_sensor: bool  # the alert's sensor is already a member
    sensor_flagged: bool  # ... with a sensor-health alert in it
    shares_area: bool  # a member is in a metered area with the alert's sensor


@dataclass(frozen=True, slots=True)
class Grouping:
    """Where a raised alert goes, and what its incident becomes."""

    joins: int | None  # the incident it joins; None: it opens a new one
    incident: IncidentState  # the incident with the alert in it
    kind: str
    explanation: tuple[str, str]  # (zh, en)
    health: bool  # the alert is a sensor-health one (else a process alarm)


def choose_for_alert(alert: RaisedAlert, candidates: Sequence[Candidate]) -> Candidate | None:
    """The incident a raised alert joins, or None (it opens one). A sensor's own problems and
    the process stay apart: an alert that ``keeps_apart`` joins only sensor-health incidents or
    one with its own sensor's alarms; a process alarm does not join another sensor's health
    incident. Among those, the nearest in place and time (``choose_incident``); failing that,
    a water process alarm joins the latest burst or leak incident of its metered area, or one
    of its area whose latest alarm came within ``SAME_EVENT_S`` (the same event). A
    process alarm raised during planned works joins only planned-operation incidents (its
    area's too), and no other process alarm joins those."""
    apart = alert.keeps_apart
    planned = alert.planned_process
    eligible = {
        c.incident.incident_id: c
        for c in candidates
        if (c.has_sensor or (c.kind == "sensor_health") == apart)
        and (apart or (c.kind == PLANNED_KIND) == planned)
    }
    near = choose_incident(alert.point, [c.incident for c in eligible.values()])
    if near is not None:
        return eligible[near.incident_id]
    if not alert.may_join_by_area:
        return None
    kinds = {PLANNED_KIND} if planned else AREA_INCIDENT_KINDS
    same_event_us = SAME_EVENT_S * 1_000_000

    def same_event(c: Candidate) -> bool:
        return not planned and alert.point.raised_us - c.incident.last_alert_us <= same_event_us

    in_area = [c for c in eligible.values() if c.shares_area and (c.kind in kinds or same_event(c))]
    return max(in_area, key=lambda c: c.incident.last_alert_us, default=None)


def is_flagged(alert: RaisedAlert, chosen: Candidate | None) -> bool:
    """Whether the alert's sensor is flagged faulty: by this alert, by an active health alert
    of its own, or by a health alert it already has in the incident."""
    own = alert.kind in HEALTH_KINDS or bool(alert.flags)
    return own or (chosen is not None and chosen.sensor_flagged)


def settle(
    alert: RaisedAlert,
    chosen: Candidate | None,
    *,
    others: Iterable[str] = (),
    faulty: frozenset[str] = frozenset(),
) -> Grouping:
    """The incident with the alert in it. A process alarm from a sensor flagged faulty carries
    that flag into its incident. When the alert's sensor is flagged (``is_flagged``) and so is
    every other sensor with a process alarm in the incident (``others``: those without a health
    alert in it; ``faulty``: sensors with an active health alert now), the incident is a sensor
    problem: its process alarms are put down to the sensors (``suspect_only``)."""
    inc = join_incident(chosen.incident, alert.point) if chosen else new_incident(alert.point)
    health = alert.kind in HEALTH_KINDS
    if alert.flags and not health:
        inc = replace(inc, kinds=inc.kinds | alert.flags)
    if alert.planned_process:
        inc = replace(inc, kinds=inc.kinds | {PLANNED_TAG})
    unflagged = any(s != alert.sensor_id and s not in faulty for s in others)
    suspect_only = is_flagged(alert, chosen) and not unflagged
    return Grouping(
        chosen.incident.incident_id if chosen else None,
        inc,
        incident_kind(inc.utility, inc.kinds, suspect_only=suspect_only),
        incident_explanation(inc, suspect_only=suspect_only),
        health,
    )
