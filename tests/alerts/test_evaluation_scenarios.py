"""Three of the simulators' labelled scenarios, shortened, through broker -> `cityops alerts` -> database,
scored against their ground truth (alerts/evaluation.py). The floors asserted here are
regression guards at what the engine achieves today, not the issue's targets (docs/alerts.md
"Evaluation" has the full-length figures)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml

from alerts.evaluation import RunScore, format_score, score_run
from alerts.stores.evaluation_reads import read_evaluation_input
from cityops.kernel.settings import Settings
from cityops.shell.evaluate import last_reading_us, run_sensor_ids, wait_until_evaluated
from simulators.scenario import run_scenario
from tests.alerts.conftest import EngineProcess
from tests.conftest import ROOT

LIBRARY = ROOT / "scenarios"


def shortened(
    tmp_path: Path, name: str, duration: str, incidents: list[tuple[str, str]] | None = None
) -> Path:
    """A library scenario with a shorter run (its incident moved into it), same start: the time
    of day, and so the network's state, stay those of the library scenario."""
    doc = yaml.safe_load((LIBRARY / name).read_text(encoding="utf-8"))
    doc["duration"] = duration
    for inc, (at, lasts) in zip(doc.get("incidents") or [], incidents or [], strict=True):
        inc["at"], inc["duration"] = at, lasts
    out = tmp_path / name
    out.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def run_and_score(
    settings: Settings, engine: EngineProcess, scenario: Path, tmp_path: Path
) -> RunScore:
    # the library's fixed start dates will lie in the past: let the decoder accept them
    settings.accept_past_s = 10 * 365 * 86_400.0
    engine.settings = settings
    engine.start()
    report = run_scenario(
        settings, scenario, speedup=0, register_sensors=True, output_dir=tmp_path / scenario.stem
    )

    ids = run_sensor_ids(report.output_dir)
    assert wait_until_evaluated(
        settings.database_url, ids, last_reading_us(report.ground_truth), timeout_s=300
    )
    assert engine.stop() == 0
    with psycopg.connect(settings.database_url) as conn:
        info, truth, detections = read_evaluation_input(conn, report.run_id)
    score = score_run(
        truth, detections, sensors=info.sensors, run_start_us=info.start_us, run_end_us=info.end_us
    )
    print(f"\n{scenario.stem} ({report.stats.messages} messages, {datetime.now(UTC):%H:%M:%S})")
    print(format_score(report.run_id, score))
    return score


def test_feeder_outage_scenario(settings: Settings, engine: EngineProcess, tmp_path: Path) -> None:
    scenario = shortened(
        tmp_path,
        "feeder_outage.yaml",
        "3h",
        [("1h", "1h30m"), ("1h30m", "1h"), ("2h", "30m")],
    )
    s = run_and_score(settings, engine, scenario, tmp_path)
    assert {t.type: t.recall for t in s.by_type} == {
        "line_outage": 1.0,
        "switch_close": 1.0,
        "overload": 1.0,
    }
    # The outage and the overload at once. Incidents are grouped in raise order by the grouper
    # thread, whatever the batching: with other modules imported first (`pytest
    # tests/alerts/test_evaluation_scenarios.py tests/simulators/test_physics.py -k
    # feeder_outage_scenario`), which once delayed the outage's incident by 60-2,100 s, it is
    # 0 s too. Closing the tie switch restores supply: it is seen once a bus recovers.
    ttd = {t.type: t.ttd_median_s for t in s.by_type}
    assert ttd["line_outage"] is not None and ttd["line_outage"] <= 300, ttd
    assert ttd["overload"] is not None and ttd["overload"] <= 300, ttd
    assert ttd["switch_close"] is not None and ttd["switch_close"] <= 60 * 60, ttd
    assert s.precision is not None and s.precision >= 0.75


def test_gas_leak_scenario(settings: Settings, engine: EngineProcess, tmp_path: Path) -> None:
    s = run_and_score(
        settings,
        engine,
        shortened(tmp_path, "gas_leak_school.yaml", "2h", [("80m", "30m")]),
        tmp_path,
    )
    (leak,) = s.by_type
    assert leak.recall == 1.0
    assert leak.ttd_median_s is not None and leak.ttd_median_s <= 10 * 60
    assert leak.localised_share == 1.0
    assert s.false_alerts == 0


def test_quiet_day_scenario(settings: Settings, engine: EngineProcess, tmp_path: Path) -> None:
    s = run_and_score(settings, engine, shortened(tmp_path, "quiet_day.yaml", "4h"), tmp_path)
    assert s.by_type == ()
    # the networks' normal peaks stay within their assets' own limits, and no sensor falls
    # silent, spikes or sticks: nothing at all (the target: under 1 per 1,000 days)
    assert s.false_alerts == 0


def test_burst_scenario(settings: Settings, engine: EngineProcess, tmp_path: Path) -> None:
    # one ordinary day for the water balance to learn the supply profile, then the burst at
    # 02:00 on the second day, isolated an hour later
    s = run_and_score(
        settings,
        engine,
        shortened(tmp_path, "burst_main_at_night.yaml", "27h", [("26h", "1h")]),
        tmp_path,
    )
    (burst,) = s.by_type
    assert burst.recall == 1.0
    assert burst.ttd_median_s is not None and burst.ttd_median_s <= 120
    assert s.false_alerts == 0
