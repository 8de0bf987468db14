"""Scoring localisation: the likely location (best candidate pipe's midpoint) before the
centre, and the true element among the first five candidates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from alerts.engine import AlertChange, Evaluation
from alerts.evaluation import DetectionRecord, TruthEvent, format_score, score_run
from alerts.stores.batch import write_evaluation
from alerts.stores.evaluation_reads import read_evaluation_input
from alerts.stores.incidents import write_context
from gis.epanet import import_epanet
from simulators.water import library_inp

S = 1_000_000
T0 = 1_764_086_400 * S
LON, LAT = 104.085, 30.64
M_PER_DEG = 111_195.0


def _truth(eid: int, element: str | None, ttype: str = "burst") -> TruthEvent:
    at = T0 + eid * 10 * 3600 * S  # each event its own hours: a detection matches only its own
    return TruthEvent(
        eid,
        "incident",
        ttype,
        "water",
        at,
        at + 3600 * S,
        LON,
        LAT,
        frozenset({f"s{eid}"}),
        element,
    )


def _det(
    did: int, *, centre_m: float, loc_m: float | None, candidates: tuple[str, ...]
) -> DetectionRecord:
    return DetectionRecord(
        did,
        "water",
        "water_anomaly",
        T0 + did * 10 * 3600 * S + 60 * S,
        LON,
        LAT + centre_m / M_PER_DEG,
        frozenset({f"s{did}"}),
        None if loc_m is None else LON,
        None if loc_m is None else LAT + loc_m / M_PER_DEG,
        candidates,
    )


def test_likely_location_and_top5_are_scored() -> None:
    truth = [_truth(1, "101"), _truth(2, "121"), _truth(3, "10", "pump_trip"), _truth(4, "189")]
    dets = [
        _det(1, centre_m=900, loc_m=50, candidates=("7", "101")),  # placed: 50 m, in the top 5
        _det(2, centre_m=2000, loc_m=400, candidates=("1", "2", "3", "4", "5", "121")),  # 6th
        _det(3, centre_m=0, loc_m=None, candidates=()),  # not placed: its centre, 0 m
        _det(4, centre_m=1000, loc_m=250, candidates=("189",)),
    ]
    s = score_run(truth, dets, sensors=10, run_start_us=T0, run_end_us=T0 + 48 * 3600 * S)
    by = {t.type: t for t in s.by_type}
    assert by["burst"].loc_median_m == pytest.approx(250, abs=1)
    assert by["burst"].localised_share == pytest.approx(2 / 3)
    assert by["burst"].top_k_share == pytest.approx(2 / 3)
    assert by["pump_trip"].top_k_share == 0.0
    assert s.water is not None
    assert s.water.events == 4
    assert s.water.median_m == pytest.approx(150, abs=1)  # 0, 50, 250, 400
    assert s.water.within_share == pytest.approx(0.75)
    assert s.water.top_k_share == pytest.approx(0.5)
    text = format_score("run-x", s)
    assert "median error 150 m" in text and "top 5 0.50" in text


def test_no_water_incident_no_localisation_line() -> None:
    t = TruthEvent(1, "incident", "line_outage", "power", T0, None, LON, LAT, frozenset({"p"}))
    d = DetectionRecord(1, "power", "power_anomaly", T0, LON, LAT, frozenset({"p"}))
    s = score_run([t], [d], sensors=1, run_start_us=T0, run_end_us=T0 + S)
    assert s.water is None and "water localisation" not in format_score("r", s)


def test_likely_location_and_candidates_read_from_the_database(db_url: str) -> None:
    start = datetime.fromtimestamp(T0 / S, UTC)
    with psycopg.connect(db_url, autocommit=True) as conn:
        import_epanet(conn, library_inp("Net3"), origin=(LON, LAT), scale_m=225)
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom) VALUES"
            " ('n3-p1', 'water', 'water_pressure', 'p1', ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
            (LON, LAT),
        )
        conn.execute(
            "INSERT INTO sim_runs (run_id, scenario, seed, sim_start, sim_end, step_s, sensors)"
            " VALUES ('run-1', 'burst', 11, %s, %s, 60, 40)",
            (start, start + timedelta(hours=6)),
        )
        conn.execute(
            "INSERT INTO sim_ground_truth (run_id, event_id, kind, type, network, element,"
            " starts_at, ends_at, geom, affected_sensors) VALUES ('run-1', 1, 'incident', 'burst',"
            " 'water', '101', %s, %s, (SELECT ST_LineInterpolatePoint(geom, 0.5) FROM water_pipes"
            " WHERE pipe_id = '101'), '{n3-p1}')",
            (start + timedelta(hours=2), start + timedelta(hours=4)),
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
            T0 + 123 * 60 * S,
            "z",
            "e",
        )
        write_evaluation(conn, Evaluation((ch,), {}))
        (incident_id,) = conn.execute("SELECT incident_id FROM incidents").fetchone() or (None,)
        write_context(
            conn,
            incident_id,
            "101",
            {"candidates": [{"pipe": "101", "score": 0.9}, {"pipe": "103", "score": 0.8}]},
        )
        info, truth, dets = read_evaluation_input(conn, "run-1")
    assert truth[0].element == "101"
    assert dets[0].candidates == ("101", "103")
    assert dets[0].loc_lon is not None
    s = score_run(
        truth, dets, sensors=info.sensors, run_start_us=info.start_us, run_end_us=info.end_us
    )
    assert s.water is not None
    assert s.water.median_m == pytest.approx(0.0, abs=1.0)  # the pipe's midpoint is the truth
    assert s.water.top_k_share == 1.0
