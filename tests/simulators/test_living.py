"""The living demo (simulators/living.py): its pure planning, and a bounded run through the
real stack (broker, `cityops ingest`, `cityops alerts`, database)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest

from cityops.kernel.settings import Settings
from simulators.living import (
    DEFAULT_EVERY_S,
    KINDS,
    LivingConfig,
    parse_every,
    plan_event,
    run_living,
    segment_scenario,
)
from tests.conftest import ROOT, cityops_cmd, settings_env
from tests.waiting import wait_for


def test_the_setting_turns_incidents_off_or_sets_their_interval() -> None:
    assert parse_every("0") is None and parse_every("off") is None
    assert parse_every("1") == DEFAULT_EVERY_S and parse_every(None) == DEFAULT_EVERY_S
    assert parse_every("3m") == 180.0 and parse_every("90") == 90.0
    with pytest.raises(ValueError, match="CITYOPS_DEMO_INCIDENTS"):
        parse_every("often")
    with pytest.raises(ValueError, match="at least 30 s"):
        parse_every("5s")


def test_every_kind_makes_a_valid_segment_whose_event_ends_before_it() -> None:
    cfg = LivingConfig(every_s=180.0, water_model="Net3")
    rng = np.random.default_rng(1)
    for kind in KINDS:
        one = LivingConfig(**{**cfg.__dict__, "kinds": (kind,)})
        for index in (0, 1):
            event = plan_event(rng, one, index, ["101", "105"])
            assert event is not None
            scn = segment_scenario(one, index, 7, event)
            (item,) = (*scn.incidents, *scn.faults)
            assert item.start_s == (60.0 if index == 0 else 30.0)
            assert item.end_s is not None and item.end_s <= scn.duration_s - one.recover_s
            assert scn.speedup == 1 and scn.duration_s == 180.0
    quiet = LivingConfig(every_s=None, water_model="Net3")
    assert plan_event(rng, quiet, 0, []) is None
    assert segment_scenario(quiet, 0, 7, None).incidents == ()
    with pytest.raises(ValueError, match="no room"):
        LivingConfig(every_s=60.0, first_at_s=50.0)
    with pytest.raises(ValueError, match="unknown event kinds"):
        LivingConfig(kinds=("meteor",))


def _start(settings: Settings, command: str, log: Path) -> subprocess.Popen[bytes]:
    out = open(log, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        cityops_cmd(command), env=settings_env(settings), cwd=ROOT, stdout=out,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.mark.slow
def test_the_living_city_raises_an_alert_and_an_incident_with_ground_truth(
    settings: Settings, tmp_path: Path
) -> None:
    """A bounded run with a short interval: a feeder trip or a gas leak in the first minute
    raises alerts, groups them into an incident, and its ground truth is in the database."""

    def q(sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(settings.database_url) as conn:
            return conn.execute(sql, params or None).fetchall()

    ingest = _start(settings, "ingest", tmp_path / "ingest.log")
    alerts = _start(settings, "alerts", tmp_path / "alerts.log")
    stop = threading.Event()
    segments: list[str | None] = []
    cfg = LivingConfig(
        every_s=60.0, step_s=5.0, first_at_s=15.0, at_s=10.0, event_s=35.0, recover_s=5.0,
        seed=4, kinds=("power_line_outage", "gas_leak"), water_model="Net3",
        water_sensors=6, power_buses=25,
    )  # fmt: skip
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(
            run_living(settings, cfg, stop=stop, on_segment=segments.append)
        )
    )
    try:
        wait_for(
            lambda: q("SELECT 1 FROM ingest_workers WHERE state = 'running'"),
            60,
            what="ingestion to subscribe",
        )
        wait_for(
            lambda: "alerts engine ready" in (tmp_path / "alerts.log").read_text(),
            60,
            what="the alert engine to subscribe",
        )
        worker.start()
        wait_for(
            lambda: q(
                "SELECT 1 FROM alerts a JOIN incidents i USING (incident_id)"
                " WHERE a.sensor_id LIKE 'city-%'"
            ),
            150,
            interval_s=1.0,
            what="an alert from the living city grouped into an incident",
        )
        wait_for(lambda: len(segments) >= 1, 90, interval_s=1.0, what="the first segment")
    finally:
        stop.set()
        worker.join(60)
        _stop(ingest)
        _stop(alerts)
    assert not worker.is_alive()  # stopped at the end of a step
    (stats,) = result
    assert stats.events >= 1 and stats.run_ids[0] == segments[0]
    truth = q(
        "SELECT g.kind, g.type, g.network, g.ends_at > g.starts_at, cardinality(g.affected_sensors)"
        " FROM sim_ground_truth g WHERE g.run_id = %s",
        segments[0],
    )
    assert len(truth) == 1
    kind, type_, network, ends, affected = truth[0]
    assert (kind, type_) in {("incident", "line_outage"), ("incident", "leak")}
    assert ends and affected > 0  # it ended within its segment and reached sensors
    utilities = {u for (u,) in q("SELECT DISTINCT utility FROM incidents")}
    assert utilities & {network}
    # sequence numbers carried on across segments: nothing quarantined as reused
    assert q("SELECT count(*) FROM quarantine WHERE reason = 'seq_reused'") == [(0,)]
