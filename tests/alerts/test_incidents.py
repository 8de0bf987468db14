"""Incidents: grouping by place and time (pure) and as the store does it with each raise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts import store
from alerts.engine import AlertChange, Evaluation
from alerts.incidents import (
    AlertPoint,
    alert_tag,
    group_alerts,
    haversine_m,
    incident_explanation,
    incident_kind,
    join_incident,
    new_incident,
    symptom_weight,
)

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
    assert (
        incident_kind("water", frozenset({alert_tag("pressure", "threshold_low")}))
        == "water_anomaly"
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
            return store.write_evaluation(conn, Evaluation((ch,), {}))[0].alert_id

        a, b, c = raise_("wp-a", 0), raise_("wp-b", 2), raise_("wp-c", 3)
        incidents = store.read_open_incidents(conn)
        assert [(i.alert_ids, i.alert_count, i.kind) for i in incidents] == [
            ((a, b), 2, "water_anomaly"),
            ((c,), 1, "water_anomaly"),
        ]
        assert incidents[0].radius_m == pytest.approx(350, rel=0.02)
        assert incidents[0].explanation_zh == "供水异常：2 条相关告警，范围约 350 米"
        # nothing resolves while an alert is active; once all are cleared and the window passed
        now = datetime.fromtimestamp(T0 / S, UTC) + timedelta(hours=2)
        assert store.resolve_quiet_incidents(conn, now=now) == 0
        conn.execute("UPDATE alerts SET cleared_at = raised_at + interval '1 minute'")
        assert store.resolve_quiet_incidents(conn, now=now) == 2
        assert store.read_open_incidents(conn) == []


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
        store.write_metered_area(
            conn, "test", "dma-7", "DMA 7", [("wf-inlet", 1)], members=["wp-inside"]
        )

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
            return store.write_evaluation(conn, Evaluation((ch,), {}))[0].alert_id

        burst = raise_("wf-inlet", "flow", "water_burst", 0, 55.0)
        inside = raise_("wp-inside", "pressure", "threshold_low", 3, 150.0)
        outside = raise_("wp-outside", "pressure", "threshold_low", 4, 150.0)
        incidents = store.read_open_incidents(conn)
    assert [(i.kind, i.alert_ids) for i in incidents] == [
        ("water_burst", (burst, inside)),
        ("water_anomaly", (outside,)),
    ]
