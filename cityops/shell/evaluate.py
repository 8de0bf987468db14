"""``cityops evaluate``: replay labelled scenarios through the real pipeline and score detection.

For each scenario: start an alert engine of its own (its own client id and share group, so a
running `cityops up` is not disturbed), publish the scenario through the broker, wait until the
engine has evaluated everything (its detector clocks stop moving), stop it, and score the
incidents it raised against the scenario's ground truth (alerts.evaluation).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from alerts import api as alerts_api
from alerts.evaluation import RunScore, format_score, score_run
from cityops.kernel.clock import Deadline
from cityops.kernel.settings import Settings
from cityops.shell.paths import PROJECT_ROOT
from gis.postgis import retire_sensors
from simulators.scenario import run_scenario

REPLAY_ACCEPT_PAST_S = 10 * 365 * 86_400.0  # library scenarios have fixed dates in the past


def _engine_env(settings: Settings, tag: str) -> dict[str, str]:
    env = {**os.environ, **settings.as_environment()}
    env["CITYOPS_ALERTS_CLIENT_ID"] = f"cityops-evaluate-{tag}"
    env["CITYOPS_ALERTS_SHARE_GROUP"] = f"cityops-evaluate-{tag}"
    env["CITYOPS_ACCEPT_PAST_S"] = str(REPLAY_ACCEPT_PAST_S)
    return env


def _detector_clock(database_url: str) -> object:
    with psycopg.connect(database_url) as conn:
        return alerts_api.read_detector_clock(conn)


def last_reading_us(truth: dict) -> int:
    """The time of a run's last step [us] (its ground truth's start, steps and step)."""
    start = datetime.fromisoformat(truth["start"].replace("Z", "+00:00"))
    return int(start.timestamp() * 1e6) + int((truth["steps"] - 1) * truth["step_s"] * 1e6)


def wait_until_evaluated(
    database_url: str, sensor_ids: list[str], until_us: int, *, timeout_s: float = 600
) -> bool:
    """Wait until the engine has evaluated the run's last step (its detector clock for the
    run's sensors reached ``until_us``) and then stops moving (held-back messages flushed at
    the end); False on timeout. A busy engine's long batch is not mistaken for the end."""
    deadline = Deadline(timeout_s)
    # readings dated after now are refused as from the future (a scenario that runs on past
    # the present): the engine's clock stops at now
    until = min(
        datetime.fromtimestamp(until_us / 1e6, UTC), datetime.now(UTC) - timedelta(minutes=10)
    )
    while not deadline.passed():
        with psycopg.connect(database_url) as conn:
            evaluated = alerts_api.read_evaluated_until(conn, sensor_ids)
        if evaluated is not None and evaluated >= until:
            break
        time.sleep(1.0)
    else:
        return False
    last = _detector_clock(database_url)
    while not deadline.passed():
        time.sleep(2)
        now = _detector_clock(database_url)
        if now == last:
            return True
        last = now
    return False


# Replays run at an hour of readings per second: fast, and still delivered in small batches as
# live, so each sensor's arrival rhythm (which the silence detector learns) is the real one. As
# fast as possible (0) the engine receives hours of readings per batch and a short dropout
# looks like the rhythm.
REPLAY_SPEEDUP = 3600.0


def evaluate_scenario(
    settings: Settings,
    scenario: Path,
    log_dir: Path,
    *,
    drain_timeout_s: float = 600,
    speedup: float = REPLAY_SPEEDUP,
) -> tuple[str, RunScore]:
    tag = uuid.uuid4().hex[:8]
    settings = settings.model_copy(update={"accept_past_s": REPLAY_ACCEPT_PAST_S})
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"alerts-{scenario.stem}.log", "wb") as out:
        engine = subprocess.Popen(
            [sys.executable, "-m", "cityops", "alerts", "--ephemeral"],
            env=_engine_env(settings, tag),
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        started = Deadline(60)
        while "alerts engine ready" not in (log_dir / f"alerts-{scenario.stem}.log").read_text(
            errors="replace"
        ):
            if engine.poll() is not None or started.passed():
                raise RuntimeError(f"the alert engine did not start; see {log_dir}")
            time.sleep(0.2)
        report = run_scenario(
            settings,
            scenario,
            speedup=speedup,
            register_sensors=True,
            output_dir=log_dir / scenario.stem,
        )
        ids = run_sensor_ids(report.output_dir)
        if not wait_until_evaluated(
            settings.database_url,
            ids,
            last_reading_us(report.ground_truth),
            timeout_s=drain_timeout_s,
        ):
            raise RuntimeError(f"the alert engine did not evaluate the whole run; see {log_dir}")
    finally:
        engine.terminate()
        try:
            engine.wait(30)
        except subprocess.TimeoutExpired:
            engine.kill()
    with psycopg.connect(settings.database_url) as conn:
        # only this run's incidents: the library's scenarios share their dates
        info, truth, detections = alerts_api.read_evaluation_input(conn, report.run_id, ids)
        # the run's sensors are retired once it is scored: the next scenario starts from a
        # catalogue without them (they would fall silent, and their clock is not its clock)
        retire_sensors(conn, ids)
    score = score_run(
        truth, detections, sensors=info.sensors, run_start_us=info.start_us, run_end_us=info.end_us
    )
    return report.run_id, score


def run_sensor_ids(output_dir: Path) -> list[str]:
    """The sensors a scenario run published as (its ``sensors.geojson``)."""
    doc = json.loads((output_dir / "sensors.geojson").read_text(encoding="utf-8"))
    return [f["properties"]["sensor_id"] for f in doc["features"]]


def print_evaluation(
    settings: Settings, scenarios: list[Path], log_dir: Path, *, speedup: float = REPLAY_SPEEDUP
) -> list[RunScore]:
    scores = []
    for scenario in scenarios:
        run_id, score = evaluate_scenario(settings, scenario, log_dir, speedup=speedup)
        print(f"\n== {scenario.stem}")
        print(format_score(run_id, score), flush=True)
        scores.append(score)
    return scores
