"""Incidents: grouping by place and time, the grouper's rules for one raised alert (pure), and
as the stores do it with each raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.engine import AlertChange, Evaluation
from alerts.incidents import (
    AlertPoint,
    Candidate,
    IncidentState,
    RaisedAlert,
    alert_tag,
    choose_for_alert,
    group_alerts,
    haversine_m,
    incident_explanation,
    incident_kind,
    join_incident,
    new_incident,
    settle,
    symptom_weight,
)
from alerts.stores.batch import write_evaluation
from alerts.stores.catalogue import write_metered_area
from alerts.stores.incidents import read_open_incidents, resolve_quiet_incidents

S = 1_000_000
T0 = 1_764_115_200 * S
# Tianfu Square, Chengdu; 0.001 deg of latitude is about 111 m
LON, LAT = 104.0657, 30.6574


def pt(
    aid: int,
    dlat_m: float,
    minutes: float,
    utility: str = "water",
    kind: str = "threshold_low",
    severity: str = "major",
) -> AlertPoint:
    return AlertPoint(
        aid, utility, kind, severity, T0 + int(minutes * 60 * S), LON, LAT + dlat_m / 111_195.0
    )


def test_haversine_known_distance() -> None:
    # one degree of latitude on the mean-radius sphere
    assert haversine_m(LON, 30.0, LON, 31.0) == pytest.approx(111_195, rel=1e-4)
    assert haversine_m(LON, LAT, LON, LAT) == 0.0


def test_grouping_by_place_time_and_utility() -> None:
    alerts = [
        pt(1, 0, 0),
        pt(2, 800, 5),  # 800 m away, 5 min later: same water incident
        pt(3, 5000, 6),  # 5 km away: another one
        pt(4, 300, 50),  # near the first, but 45 min after its last alert: a new one
        pt(5, 100, 7, utility="gas", kind="gas_lel_alarm1"),  # another utility
        pt(6, 1200, 10),  # 1.2 km from 1, about 0.8 km from the centre of {1, 2}: joins
    ]
    assert group_alerts(alerts) == [[1, 2, 6], [3], [5], [4]]
    assert group_alerts(alerts, radius_m=500) == [[1], [2, 6], [3], [5], [4]]
    # order of arrival does not change the answer when the time order is the same
    assert group_alerts(list(reversed(alerts))) == [[1, 2, 6], [3], [5], [4]]


def test_incident_summary() -> None:
    inc = new_incident(pt(1, 0, 0, severity="warning"), 9)
    inc = join_incident(inc, pt(2, 1000, 1, severity="critical", kind="rate_of_change"))
    assert (inc.count, inc.severity, inc.kinds) == (
        2,
        "critical",
        {"threshold_low", "rate_of_change"},
    )
    assert inc.radius_m == pytest.approx(500, rel=0.01)
    assert inc.lat == pytest.approx(LAT + 500 / 111_195.0)
    zh, en = incident_explanation(inc)
    assert zh == "供水异常：2 条相关告警，范围约 500 米"
    assert en == "water anomaly: 2 related alerts within about 500 m"
    assert incident_kind("gas", frozenset({"gas_lel_prealarm"})) == "gas_leak"
    assert incident_kind("water", frozenset({"silent", "stuck"})) == "sensor_health"
    assert incident_kind("power", frozenset({"silent", "threshold_low"})) == "power_outage"
    tags = frozenset({alert_tag("pressure", "threshold_low"), alert_tag("flow", "threshold_high")})
    assert incident_kind("water", tags) == "water_burst"
    # a burst needs both: pressure low alone (a pump trip) or flow high alone (a demand peak)
    # is no burst
    assert (
        incident_kind("water", frozenset({alert_tag("pressure", "threshold_low")}))
        == "water_anomaly"
    )
    assert incident_kind("water", frozenset({alert_tag("flow", "threshold_high")})) == (
        "water_anomaly"
    )
    assert (
        incident_kind("gas", frozenset({alert_tag("gas_concentration", "rate_of_change")}))
        == "gas_leak"
    )
    assert (
        incident_kind("gas", frozenset({alert_tag("pressure", "threshold_high")})) == "gas_anomaly"
    )
    assert (
        incident_kind("power", frozenset({alert_tag("voltage", "threshold_low")})) == "power_outage"
    )


def test_store_groups_each_raise(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for sid, dlat in (("wp-a", 0), ("wp-b", 700), ("wp-c", 9000)):
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, geom)"
                " VALUES (%s, 'water', 'water_pressure', %s, 510104,"
                " ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
                (sid, sid, LON, LAT + dlat / 111_195.0),
            )

        def raise_(sid: str, minutes: float) -> int:
            ch = AlertChange(
                "raised",
                sid,
                "water",
                "pressure",
                "threshold_low",
                "major",
                150.0,
                200.0,
                T0 + int(minutes * 60 * S),
                "z",
                "e",
            )
            return write_evaluation(conn, Evaluation((ch,), {}))[0].alert_id

        a, b, c = raise_("wp-a", 0), raise_("wp-b", 2), raise_("wp-c", 3)
        incidents = read_open_incidents(conn)
        assert [(i.alert_ids, i.alert_count, i.kind) for i in incidents] == [
            ((a, b), 2, "water_anomaly"),
            ((c,), 1, "water_anomaly"),
        ]
        assert incidents[0].radius_m == pytest.approx(350, rel=0.02)
        assert incidents[0].explanation_zh == "供水异常：2 条相关告警，范围约 350 米"
        # nothing resolves while an alert is active; once all are cleared and the window passed
        now = datetime.fromtimestamp(T0 / S, UTC) + timedelta(hours=2)
        assert resolve_quiet_incidents(conn, now=now) == 0
        conn.execute("UPDATE alerts SET cleared_at = raised_at + interval '1 minute'")
        assert resolve_quiet_incidents(conn, now=now) == 2
        assert read_open_incidents(conn) == []


def test_centre_leans_towards_the_strongest_symptom() -> None:
    # 60 kPa under a 200 kPa limit weighs (1 + 3)^2 = 16, 20 kPa under (1 + 1)^2 = 4
    assert symptom_weight("threshold_low", 140.0, 200.0) == pytest.approx(16.0)
    assert symptom_weight("threshold_low", 180.0, 200.0) == pytest.approx(4.0)
    assert symptom_weight("rate_of_change", -90.0, 30.0) == pytest.approx(9.0)
    assert symptom_weight("gas_lel_alarm1", 40.0, 20.0) == pytest.approx(4.0)
    assert symptom_weight("silent", 600.0, 180.0) == 0.01
    assert symptom_weight("threshold_high", 1.0, None) == 0.01
    strong = AlertPoint(1, "water", "threshold_low", "major", T0, LON, LAT, 16.0)
    weak = AlertPoint(2, "water", "threshold_low", "major", T0, LON, LAT + 1000 / 111_195.0, 4.0)
    inc = join_incident(new_incident(strong), weak)
    # 4 / (16 + 4) of the way from the strong sensor to the weak one: 200 m, not 500 m
    assert haversine_m(LON, LAT, inc.lon, inc.lat) == pytest.approx(200, rel=0.01)
    assert inc.weight == 20.0


def test_alarms_of_sensors_that_show_a_fault_are_a_sensor_problem() -> None:
    spiky = frozenset({alert_tag("pressure", "threshold_high"), alert_tag("pressure", "spike")})
    assert incident_kind("gas", spiky, suspect_only=True) == "sensor_health"
    # unless every alarming sensor is flagged, it stays a process incident
    assert incident_kind("gas", spiky) == "gas_anomaly"
    # no fault flagged: a process incident
    low = frozenset({alert_tag("pressure", "threshold_low")})
    assert incident_kind("water", low, suspect_only=True) == "water_anomaly"


def test_a_bursts_symptoms_in_its_metered_area_join_its_incident(db_url: str) -> None:
    """Grouping by topology: a pressure alert 5 km from the inlet joins the burst's incident
    when its sensor is inside the burst's metered area, not when it is outside."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for sid, stype, dlat in (
            ("wf-inlet", "water_flow", 0),
            ("wp-inside", "water_pressure", 5000),
            ("wp-outside", "water_pressure", 5200),
        ):
            conn.execute(
                "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom)"
                " VALUES (%s, 'water', %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
                (sid, stype, sid, LON, LAT + dlat / 111_195.0),
            )
        write_metered_area(conn, "test", "dma-7", "DMA 7", [("wf-inlet", 1)], members=["wp-inside"])

        def raise_(sid: str, quantity: str, kind: str, minutes: float, value: float) -> int:
            ch = AlertChange(
                "raised",
                sid,
                "water",
                quantity,
                kind,
                "critical",
                value,
                30.0 if kind == "water_burst" else 200.0,
                T0 + int(minutes * 60 * S),
                "z",
                "e",
            )
            return write_evaluation(conn, Evaluation((ch,), {}))[0].alert_id

        burst = raise_("wf-inlet", "flow", "water_burst", 0, 55.0)
        inside = raise_("wp-inside", "pressure", "threshold_low", 3, 150.0)
        outside = raise_("wp-outside", "pressure", "threshold_low", 4, 150.0)
        incidents = read_open_incidents(conn)
    assert [(i.kind, i.alert_ids) for i in incidents] == [
        ("water_burst", (burst, inside)),
        ("water_anomaly", (outside,)),
    ]


# -- the grouper's rules for one raised alert (pure) --------------------------------------------


def raised(
    sensor: str,
    kind: str,
    dlat_m: float = 0.0,
    *,
    utility: str = "water",
    quantity: str = "pressure",
    flags: frozenset[str] = frozenset(),
) -> RaisedAlert:
    point = AlertPoint(
        99, utility, alert_tag(quantity, kind), "major", T0, LON, LAT + dlat_m / 111_195.0
    )
    return RaisedAlert(point, sensor, kind, flags)


def candidate(
    incident_id: int,
    kind: str,
    dlat_m: float = 0.0,
    *,
    utility: str = "water",
    has_sensor: bool = False,
    sensor_flagged: bool = False,
    shares_area: bool = False,
    minutes_ago: float = 5.0,
    kinds: frozenset[str] = frozenset({alert_tag("pressure", "threshold_low")}),
) -> Candidate:
    inc = IncidentState(
        incident_id,
        utility,
        "major",
        T0 - int(minutes_ago * 60 * S),
        LON,
        LAT + dlat_m / 111_195.0,
        1,
        0.0,
        kinds,
    )
    return Candidate(inc, kind, has_sensor, sensor_flagged, shares_area)


def _joins(alert: RaisedAlert, candidates: list[Candidate]) -> int | None:
    chosen = choose_for_alert(alert, candidates)
    return chosen.incident.incident_id if chosen else None


def test_a_sensors_own_problems_and_the_process_stay_apart() -> None:
    process = candidate(1, "water_anomaly", 100)
    health = candidate(2, "sensor_health", 200)
    # a process alarm joins the process incident, not another sensor's health incident
    assert _joins(raised("wp-1", "threshold_low"), [process, health]) == 1
    assert _joins(raised("wp-1", "threshold_low"), [health]) is None
    # a health alert joins a sensor-health incident, or one with its own sensor's alarms
    assert _joins(raised("wp-1", "stuck"), [process, health]) == 2
    mine = candidate(3, "water_anomaly", 300, has_sensor=True)
    assert _joins(raised("wp-1", "stuck"), [process, mine]) == 3
    assert _joins(raised("wp-1", "silent"), [process]) is None
    # except a silent power monitor: a symptom of the outage around it
    outage = candidate(4, "power_outage", 100, utility="power")
    assert _joins(raised("pb-1", "silent", utility="power", quantity="voltage"), [outage]) == 4


def test_nearest_in_reach_then_the_metered_area_for_water_process_alarms() -> None:
    near, nearer = candidate(1, "water_anomaly", 900), candidate(2, "water_anomaly", 400)
    assert _joins(raised("wp-1", "threshold_low"), [near, nearer]) == 2
    # 5 km away: out of reach, unless its burst or leak incident shares a metered area
    burst = candidate(3, "water_burst", 5000, shares_area=True)
    far_anomaly = candidate(4, "water_anomaly", 5000, shares_area=True)
    outside = candidate(5, "water_burst", 5000)
    assert _joins(raised("wp-1", "threshold_low"), [far_anomaly, outside, burst]) == 3
    assert _joins(raised("wp-1", "threshold_low"), [far_anomaly, outside]) is None
    # the latest of several, and never for a sensor's own problem
    leak = candidate(6, "water_leak", 6000, shares_area=True, minutes_ago=1)
    assert _joins(raised("wp-1", "threshold_low"), [burst, leak]) == 6
    assert _joins(raised("wp-1", "stuck"), [burst]) is None
    gas = candidate(7, "gas_leak", 5000, utility="gas", shares_area=True)
    assert _joins(raised("gd-1", "gas_lel_alarm1", utility="gas"), [gas]) is None
    # at the same reading anywhere in its area: the same hydraulic event, whatever its kind
    same_time = candidate(8, "water_anomaly", 5000, shares_area=True, minutes_ago=0)
    assert _joins(raised("wp-1", "threshold_low"), [same_time, outside]) == 8
    assert _joins(raised("wp-1", "stuck"), [same_time]) is None


def test_settling_an_alert_into_its_incident() -> None:
    # a new incident of one alert
    alone = settle(raised("wp-1", "threshold_low"), None)
    assert (alone.joins, alone.kind, alone.health, alone.incident.count) == (
        None,
        "water_anomaly",
        False,
        1,
    )
    assert alone.explanation == incident_explanation(alone.incident)
    # joining: the incident grows
    joined = settle(raised("wp-2", "threshold_low", 300), candidate(5, "water_anomaly"))
    assert (joined.joins, joined.incident.count) == (5, 2)
    # a process alarm from a sensor flagged faulty carries the flag into a sensor-health
    # incident of its own
    spiky = frozenset({alert_tag("pressure", "spike")})
    flagged = settle(raised("wp-1", "threshold_low", flags=spiky), None)
    assert flagged.kind == "sensor_health" and spiky <= flagged.incident.kinds
    assert not flagged.health and settle(raised("wp-1", "spike"), None).health


def test_an_incident_is_a_sensor_problem_only_when_every_alarming_sensor_is_flagged() -> None:
    spiky = frozenset({alert_tag("pressure", "spike")})
    alert = raised("wp-1", "threshold_low", flags=spiky)
    inc = candidate(5, "water_anomaly", has_sensor=True)
    # another sensor alarms in it without a flag: a process incident
    assert settle(alert, inc, others=["wp-2"]).kind == "water_anomaly"
    # ... unless that sensor is faulty now
    assert settle(alert, inc, others=["wp-2"], faulty=frozenset({"wp-2"})).kind == "sensor_health"
    # the alert's sensor flagged only by a health alert it has in the incident already
    tags = frozenset({alert_tag("pressure", "spike"), alert_tag("pressure", "threshold_high")})
    already = candidate(5, "water_anomaly", has_sensor=True, sensor_flagged=True, kinds=tags)
    assert settle(raised("wp-1", "threshold_low"), already).kind == "sensor_health"
    unflagged = candidate(5, "water_anomaly", has_sensor=True, kinds=tags)
    assert settle(raised("wp-1", "threshold_low"), unflagged).kind == "water_anomaly"


def test_a_night_flow_step_is_a_new_leak_of_its_own() -> None:
    """A step in the night flow while an older leak is open (alerts/balance.py) is a leak, and
    it does not join the older leak's incident through their metered area."""
    assert incident_kind("water", frozenset({"flow:night_flow_step"})) == "water_leak"
    assert incident_kind("water", frozenset({"flow:night_flow_rise"})) == "water_leak"
    step = raised("wi-1", "night_flow_step", quantity="flow")
    rise = raised("wi-1", "night_flow_rise", quantity="flow")
    assert not step.may_join_by_area and rise.may_join_by_area
