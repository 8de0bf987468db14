"""Planned incidents (``planned: true``): parsed, left out of the ground truth that detection
is scored against, and booked in the works calendar before the run (real database)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from simulators.run import WORKS_MARGIN_S, ScenarioRun
from simulators.spec import ScenarioError, parse_scenario
from simulators.store import write_run_start
from tests.conftest import ROOT

SCENARIO = ROOT / "scenarios" / "planned_valve_operation.yaml"


def test_library_scenario_parses() -> None:
    scn = parse_scenario(SCENARIO.read_text(encoding="utf-8"), str(SCENARIO))
    (inc,) = scn.incidents
    assert (inc.type, inc.element, inc.planned, inc.works_kind) == (
        "valve_closure",
        "189",
        True,
        "valve_operation",
    )
    assert inc.params == {}  # planned is not a physics parameter
    assert [f.type for f in scn.faults] == ["drift"]
    assert scn.duration_s == 3 * 86_400


BASE = """
name: t
start: "2026-11-23T00:00:00+08:00"
duration: 3h
step: 5m
networks:
  water: {model: Net3, anchor: [104.085, 30.64], scale_m: 225}
sensors:
  water: {pressure: 5, inlets: all}
incidents:
"""


def test_planned_must_be_a_boolean() -> None:
    text = (
        BASE + '  - {network: water, type: valve_closure, element: "189", at: 1h, planned: maybe}\n'
    )
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "t.yaml")
    assert "planned" in str(err.value) and "line 11" in str(err.value)


def test_works_kinds() -> None:
    text = BASE.replace(
        "networks:\n", "networks:\n  power: {model: mv_oberrhein, anchor: [104.13, 30.68]}\n"
    ) + (
        '  - {network: water, type: valve_closure, element: "189", at: 1h, planned: true}\n'
        '  - {network: power, type: switch_close, element: "14", at: 1h, planned: true}\n'
        '  - {network: water, type: pump_trip, element: "10", at: 1h, planned: true}\n'
    )
    scn = parse_scenario(text, "t.yaml")
    assert [i.works_kind for i in scn.incidents] == [
        "valve_operation",
        "reconfiguration",
        "maintenance",
    ]


def _truth() -> dict:
    text = (
        BASE
        + '  - {network: water, type: valve_closure, element: "189", at: 1h, duration: 30m,'
        + " planned: true}\n"
        + '  - {network: water, type: burst, element: "121", at: 2h, area_cm2: 50}\n'
    )
    scn = parse_scenario(text, "t.yaml")
    run = ScenarioRun(scn, start_ms=scn.start_ms or 0)
    try:
        for step in range(run.steps):
            run.messages(step)
        return run.ground_truth(run_id="t-planned")
    finally:
        run.close()


def test_planned_incident_is_works_not_truth() -> None:
    truth = _truth()
    assert [(e["type"], e["event_id"]) for e in truth["events"]] == [("burst", 2)]
    (w,) = truth["works"]
    assert w["kind"] == "valve_operation" and w["utility"] == "water"
    assert w["area_ids"] == ["sim-water"] and w["asset_ids"] == ["189"]
    start = datetime.fromisoformat(w["starts_at"])
    end = datetime.fromisoformat(w["ends_at"])
    assert start == datetime(2026, 11, 22, 17, tzinfo=UTC)  # 01:00 in Chengdu
    assert (end - start).total_seconds() == 1800 + WORKS_MARGIN_S
    assert w["affected_sensors"]  # the closure did move some pressures


def test_run_start_books_the_works(db_url: str) -> None:
    from alerts.stores.catalogue import write_metered_area

    truth = _truth()
    with psycopg.connect(db_url) as conn:
        # the area the scenario's run registers before its start (simulators.scenario)
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom) VALUES"
            " ('sim-wi-10', 'water', 'water_flow', 'x', ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326))"
        )
        write_metered_area(conn, "t", "sim-water", "w", [("sim-wi-10", 1)])
        write_run_start(conn, truth)
        works = conn.execute(
            "SELECT kind, area_ids, asset_ids, recorded_by, ends_at - starts_at FROM works"
        ).fetchall()
        events = conn.execute(
            "SELECT type FROM sim_ground_truth WHERE run_id = 't-planned'"
        ).fetchall()
    assert [(k, a, s, by) for k, a, s, by, _ in works] == [
        ("valve_operation", ["sim-water"], ["189"], "simulator")
    ]
    assert works[0][4].total_seconds() == 1800 + WORKS_MARGIN_S
    assert events == [("burst",)]
