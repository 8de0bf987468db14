"""scenarios/planned_valve_operation.yaml through broker -> `cityops alerts` -> database: the
planned closure of valve 189 (booked in the works calendar by the simulator) raises alerts that
are marked ``works:<id>`` and grouped as a planned operation, not a leak or a burst; the
drifting sensor is found as a sensor fault; nothing else is raised."""

from __future__ import annotations

from pathlib import Path

import psycopg

from alerts.evaluation import format_score, score_run
from alerts.incidents import PLANNED_KIND
from alerts.stores.evaluation_reads import read_evaluation_input
from cityops.kernel.settings import Settings
from cityops.shell.evaluate import last_reading_us, run_sensor_ids, wait_until_evaluated
from simulators.scenario import run_scenario
from tests.alerts.conftest import EngineProcess
from tests.conftest import ROOT


def test_planned_valve_operation_scenario(
    settings: Settings, engine: EngineProcess, tmp_path: Path
) -> None:
    settings.accept_past_s = 10 * 365 * 86_400.0
    engine.settings = settings
    engine.start()
    scenario = ROOT / "scenarios" / "planned_valve_operation.yaml"
    report = run_scenario(
        settings, scenario, speedup=0, register_sensors=True, output_dir=tmp_path / "run"
    )
    ids = run_sensor_ids(report.output_dir)
    assert wait_until_evaluated(
        settings.database_url, ids, last_reading_us(report.ground_truth), timeout_s=600
    )
    assert engine.stop() == 0
    with psycopg.connect(settings.database_url) as conn:
        info, truth, detections = read_evaluation_input(conn, report.run_id)
        (work_id,) = [r[0] for r in conn.execute("SELECT work_id FROM works")]
        marks = conn.execute(
            "SELECT DISTINCT suppressed_by FROM alerts WHERE suppressed_by IS NOT NULL"
        ).fetchall()
    planned = [d for d in detections if d.kind == PLANNED_KIND]
    others = [d for d in detections if d.kind != PLANNED_KIND]
    # the closure did raise alerts (else this proves nothing), all of them the works'
    assert planned, detections
    assert marks == [(f"works:{work_id}",)]
    # a planned operation is neither a detection nor a false alert
    score = score_run(
        truth, others, sensors=info.sensors, run_start_us=info.start_us, run_end_us=info.end_us
    )
    print(f"\n{len(planned)} planned-operation incident(s) set aside")
    print(format_score(report.run_id, score))
    assert {t.type: t.recall for t in score.by_type} == {"drift": 1.0}
    assert score.false_alerts == 0
