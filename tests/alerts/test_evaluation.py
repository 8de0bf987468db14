"""Scoring detections against ground truth: known answers (pure) and from the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.engine import AlertChange, Evaluation
from alerts.evaluation import (
    DetectionRecord,
    TruthEvent,
    format_score,
    nab_sigmoid,
    score_run,
)
from alerts.stores.batch import write_evaluation
from alerts.stores.evaluation_reads import read_evaluation_input

S = 1_000_000
MIN = 60 * S
T0 = 1_764_086_400 * S  # 2025-11-26 00:00 Chengdu
LON, LAT = 104.085, 30.64
DLAT_100M = 100 / 111_195.0


def truth(
    eid, ttype, minute, *, kind="incident", network="water", sensors=(), dlat_m=0.0, end=None
):  # type: ignore[no-untyped-def]
    return TruthEvent(
        eid,
        kind,
        ttype,
        network,
        T0 + minute * MIN,
        T0 + end * MIN if end is not None else None,
        LON,
        LAT + dlat_m / 111_195.0,
        frozenset(sensors),
    )


def det(did, minute, *, utility="water", kind="water_anomaly", sensors=(), dlat_m=0.0):  # type: ignore[no-untyped-def]
    return DetectionRecord(
        did, utility, kind, T0 + minute * MIN, LON, LAT + dlat_m / 111_195.0, frozenset(sensors)
    )


def test_known_scores() -> None:
    events = [
        truth(1, "burst", 120, end=240, sensors={"p1"}),
        truth(2, "burst", 600, end=700),  # missed
        truth(3, "gas_leak", 60, network="gas", dlat_m=150),
        truth(4, "stuck", 30, kind="fault", sensors={"p9"}, end=90),
    ]
    detections = [
        det(10, 121.5, sensors={"p1", "p2"}, dlat_m=250),  # burst 1, 90 s late, 250 m off
        det(11, 130, sensors={"p1"}),  # a second incident for the same burst: not false
        det(12, 61, utility="gas", kind="gas_leak", dlat_m=0),  # gas leak by distance, 150 m
        det(13, 35, kind="sensor_health", sensors={"p9"}),  # the fault
        det(14, 1000),  # nothing happened then: false
        det(15, 600, utility="power", kind="power_anomaly"),  # wrong network: false
    ]
    s = score_run(events, detections, sensors=100, run_start_us=T0, run_end_us=T0 + 1440 * MIN)
    by = {t.type: t for t in s.by_type}
    assert (by["burst"].events, by["burst"].detected, by["burst"].recall) == (2, 1, 0.5)
    assert by["burst"].ttd_median_s == pytest.approx(90)
    assert by["burst"].loc_median_m == pytest.approx(250, abs=1)
    assert by["burst"].localised_share == 1.0
    assert (by["gas_leak"].recall, by["gas_leak"].ttd_median_s) == (1.0, 60)
    assert by["gas_leak"].loc_median_m == pytest.approx(150, abs=1)
    assert (by["stuck"].recall, by["stuck"].ttd_median_s) == (1.0, 300)
    assert (s.detections, s.false_alerts) == (6, 2)
    assert s.precision == pytest.approx(4 / 6)
    assert s.false_per_1000_sensor_days == pytest.approx(1000 * 2 / 100)
    raw = nab_sigmoid(90 / 3600 - 1) + nab_sigmoid(60 / 3600 - 1) + nab_sigmoid(300 / 3600 - 1)
    raw += -1 - 0.11 * 2
    assert s.nab_score == pytest.approx(100 * (raw + 4) / (4 * nab_sigmoid(-1) + 4))
    table = format_score("r1", s)
    assert "burst" in table and "precision 0.67" in table


def test_edge_cases() -> None:
    perfect = score_run(
        [truth(1, "burst", 0, sensors={"a"})],
        [det(1, 0, sensors={"a"})],
        sensors=10,
        run_start_us=T0,
        run_end_us=T0 + 60 * MIN,
    )
    assert perfect.nab_score == pytest.approx(100.0)
    nothing = score_run(
        [truth(1, "burst", 0)], [], sensors=10, run_start_us=T0, run_end_us=T0 + 60 * MIN
    )
    assert (nothing.nab_score, nothing.precision, nothing.by_type[0].ttd_median_s) == (
        0.0,
        None,
        None,
    )
    quiet = score_run([], [det(1, 5)], sensors=10, run_start_us=T0, run_end_us=T0 + 1440 * MIN)
    assert (quiet.false_alerts, quiet.false_per_1000_sensor_days) == (1, 100.0)
    # a detection long before the event (more than 5 min early) does not count for it
    early = score_run(
        [truth(1, "burst", 60, sensors={"a"})],
        [det(1, 50, sensors={"a"})],
        sensors=10,
        run_start_us=T0,
        run_end_us=T0 + 1440 * MIN,
    )
    assert early.by_type[0].recall == 0.0 and early.false_alerts == 1
    # a planned operation's incident (booked works) is neither a detection nor a false alert
    planned = score_run(
        [truth(1, "burst", 60, sensors={"a"})],
        [det(1, 10, kind="planned_operation", sensors={"b"}), det(2, 61, sensors={"a"})],
        sensors=10,
        run_start_us=T0,
        run_end_us=T0 + 1440 * MIN,
    )
    assert (planned.detections, planned.false_alerts, planned.by_type[0].recall) == (1, 0, 1.0)


def test_evaluation_input_from_the_database(db_url: str) -> None:
    start = datetime.fromtimestamp(T0 / S, UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom) VALUES"
            " ('n3-p1', 'water', 'water_pressure', 'p1', ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
            (LON, LAT),
        )
        conn.execute(
            "INSERT INTO sim_runs (run_id, scenario, seed, sim_start, sim_end, step_s, sensors)"
            " VALUES ('run-1', 'burst-main-at-night', 11, %s, %s, 60, 40)",
            (start, start + timedelta(hours=6)),
        )
        conn.execute(
            "INSERT INTO sim_ground_truth (run_id, event_id, kind, type, network, element,"
            " starts_at, ends_at, geom, affected_sensors) VALUES ('run-1', 1, 'incident', 'burst',"
            " 'water', '101', %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326), '{n3-p1}')",
            (start + timedelta(hours=2), start + timedelta(hours=4), LON, LAT + 3 * DLAT_100M),
        )
        ch = AlertChange(
            "raised",
            "n3-p1",
            "water",
            "pressure",
            "threshold_low",
            "major",
            150.0,
            200.0,
            T0 + 123 * MIN,
            "z",
            "e",
        )
        write_evaluation(conn, Evaluation((ch,), {}))
        info, truth_events, detections = read_evaluation_input(conn, "run-1")
        with pytest.raises(LookupError):
            read_evaluation_input(conn, "no-such-run")
    assert (info.sensors, info.end_us - info.start_us) == (40, 6 * 3600 * S)
    assert [(t.type, t.sensors) for t in truth_events] == [("burst", {"n3-p1"})]
    assert [(d.kind, d.sensors) for d in detections] == [("water_anomaly", {"n3-p1"})]
    s = score_run(
        truth_events,
        detections,
        sensors=info.sensors,
        run_start_us=info.start_us,
        run_end_us=info.end_us,
    )
    t = s.by_type[0]
    assert (t.recall, t.ttd_median_s) == (1.0, 180.0)
    assert t.loc_median_m == pytest.approx(300, abs=1)
