"""Scenario files: the library validates; mistakes are refused naming the line and field."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cityops.kernel.settings import Settings
from simulators.scenario import load_scenario, prepare_run, run_scenario
from simulators.spec import ScenarioError, parse_duration_s, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = sorted((ROOT / "scenarios").glob("*.yaml"))

GOOD = """\
name: t
start: "2026-11-26T00:00:00+08:00"
duration: 2h
step: 1m
networks:
  water: {model: Net3, anchor: [104.085, 30.64]}
sensors:
  water: {pressure: 5}
incidents:
  - network: water
    type: burst
    element: "101"
    at: 30m
    area_cm2: 20
"""


def test_library_has_the_scenarios_of_the_issue() -> None:
    names = {load_scenario(p).name for p in LIBRARY}
    assert {
        "quiet-day",
        "burst-main-at-night",
        "incipient-leak-week",
        "feeder-outage",
        "gas-leak-school",
        "sensor-fault-storm",
        "mixed-city-day",
    } <= names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_scenarios_build_against_their_models(path: Path) -> None:
    run = prepare_run(load_scenario(path))
    try:
        assert run.sensors and run.steps > 0
        assert len({s.sensor_id for s in run.sensors}) == len(run.sensors)
        for s in run.sensors:  # placed in Chengdu
            assert 103.5 < s.lon < 104.6 and 30.3 < s.lat < 31.0
    finally:
        run.close()


def test_durations() -> None:
    assert parse_duration_s("2h30m") == 9000
    assert parse_duration_s("90") == 90 and parse_duration_s(45) == 45
    assert parse_duration_s("1d") == 86_400 and parse_duration_s("1w") == 604_800
    assert parse_duration_s("-1h") == -3600
    with pytest.raises(ValueError, match="duration"):
        parse_duration_s("soon")


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as exc:
        run = prepare_run(parse_scenario(text, "bad.yaml"))
        run.close()
    return exc.value


@pytest.mark.parametrize(
    ("old", "new", "line", "field", "problem"),
    [
        (
            'element: "101"',
            'element: "no-such-pipe"',
            12,
            "incidents[0].element",
            "no junction or pipe 'no-such-pipe'",
        ),
        ("duration: 2h", "duration: -2h", 3, "duration", "must be > 0"),
        ("    at: 30m", "    at: -30m", 13, "incidents[0].at", "must be >= 0"),
        ("type: burst", "type: meteor", 11, "incidents[0].type", "unknown incident type 'meteor'"),
        (
            "sensors:\n  water: {pressure: 5}",
            'sensors:\n  water: {pressure: ["404"]}',
            8,
            "sensors.water.pressure",
            "no junction '404'",
        ),
        ("model: Net3", "model: Net9", 6, "networks.water.model", "unknown water network 'Net9'"),
        ("step: 1m", "step: 1m\nspeed: 3", 5, "speed", "unknown field"),
        ("area_cm2: 20", "area_cm2: big", 14, "incidents[0].area_cm2", "expected a number"),
        ("anchor: [104.085, 30.64]", "anchor: [4.0, 50.0]", 6, "networks.water.anchor", "Sichuan"),
        (
            "area_cm2: 20",
            "area_cm2: 20\n    factor: 2",
            15,
            "incidents[0].factor",
            "unknown field (expected one of area_cm2, at, duration, element, network, planned, type)",
        ),
        (
            "  - network: water",
            "  - network: sewer",
            10,
            "incidents[0].network",
            "'sewer' is not one of water, power, gas",
        ),
        ("    area_cm2: 20", "", 10, "incidents[0].area_cm2", "is required"),
        ("step: 1m", "step: 1m\nseed: 1.5", 5, "seed", "expected an integer, got 1.5"),
        ("step: 1m", "step: 1m\nencoding: cbor", 5, "encoding", "'cbor' is not one of compact"),
        ("step: 1m", "step: 1m\ntruth_every: 90s", 5, "truth_every", "a multiple of step"),
        ("model: Net3", "model: Net3, scale_m: 0", 6, "networks.water.scale_m", "must be > 0.0"),
        (
            "{pressure: 5}",
            "{tanks: 2}",
            8,
            "sensors.water.tanks",
            "expected 'all' or a list of names",
        ),
        (
            "area_cm2: 20",
            "area_cm2: 20\nfaults:\n  - {type: dropout, count: 1, at: 0, probability: 1.5}",
            16,
            "faults[0].probability",
            "must be within 0-1, got 1.5",
        ),
        (
            "area_cm2: 20",
            "area_cm2: 20\nfaults:\n  - {type: malformed, count: 1, at: 0, kinds: [haiku]}",
            16,
            "faults[0].kinds[0]",
            "unknown malformed kind 'haiku'",
        ),
        (
            "area_cm2: 20",
            "area_cm2: 20\nfaults:\n  - {type: stuck, at: 0}",
            16,
            "faults[0]",
            "name the sensors or give a count",
        ),
        (
            "area_cm2: 20",
            "area_cm2: 20\nfaults:\n  - {type: sticky, count: 1, at: 0}",
            16,
            "faults[0].type",
            "unknown fault type 'sticky' (one of noise, drift, stuck",
        ),
    ],
)
def test_mistakes_name_line_and_field(old, new, line, field, problem) -> None:
    assert old in GOOD
    err = _error(GOOD.replace(old, new))
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert problem in str(err)
    assert str(err).startswith(f"bad.yaml: line {line}: {field}: ")


def test_malformed_yaml_names_the_line() -> None:
    err = _error(GOOD.replace("    at: 30m", "    at: [30m"))
    assert "malformed YAML" in str(err) and err.line in (13, 14, 15), str(err)
    err = _error("name: t\nname: u\n")
    assert err.line == 2 and "twice" in str(err)
    err = _error("- just\n- a list\n")
    assert "mapping" in str(err)


def test_a_bad_file_is_refused_before_connecting(tmp_path: Path) -> None:
    """Validation comes first: with no broker listening, the error is the scenario's."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace('element: "101"', 'element: "999"'))
    settings = Settings(mqtt_url=f"mqtt://x:y@127.0.0.1:{port}", database_url="")
    with pytest.raises(ScenarioError, match=r"line 12: incidents\[0\]\.element"):
        run_scenario(settings, bad, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # no ground truth for a run that never started


def test_check_scenario_summarises_without_publishing(tmp_path: Path) -> None:
    from simulators.scenario import check_scenario

    assert check_scenario(ROOT / "scenarios" / "burst_main_at_night.yaml") == {
        "name": "burst-main-at-night",
        "sensors": 38,  # 25 pressure, 5 flow, 3 tank levels, 5 inlet meters
        "steps": 3240,  # 54 h at 1 min: two ordinary days before the burst night
        "incidents": 1,
        "faults": 0,
    }
    broken = tmp_path / "broken.inp.yaml"
    broken.write_text(GOOD.replace("model: Net3", f"model: {tmp_path / 'missing.inp'}"))
    with pytest.raises(ScenarioError, match=r"networks\.water\.model: cannot load"):
        check_scenario(broken)
