"""Limits of the simulated assets (World.asset_limits), from the network models."""

from __future__ import annotations

from collections.abc import Iterator

import pandapower.networks as pn
import psycopg
import pytest

from alerts.api import read_sensors
from gis.postgis import write_sensors
from simulators.run import ScenarioRun
from simulators.scenario import load_scenario
from simulators.store import write_asset_limits
from simulators.water import load_network
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def quiet_day() -> Iterator[ScenarioRun]:
    scn = load_scenario(ROOT / "scenarios" / "quiet_day.yaml")
    run = ScenarioRun(scn, start_ms=1_764_086_400_000)
    yield run
    run.close()


def test_tank_overflow_and_bus_ratings_come_from_the_models(quiet_day: ScenarioRun) -> None:
    limits = quiet_day.world.asset_limits
    tanks = {sid: v["level"] for sid, v in limits.items() if "level" in v}
    inlets = {sid: v for sid, v in limits.items() if "-wi-" in sid}
    # the supply meters are judged by the water balance of their area, not by limits
    assert len(inlets) == 5 and all(
        v["flow"][:2] == v["pressure"][:2] == (None, None) for v in inlets.values()
    )
    ((area, (_name, meters, storage)),) = quiet_day.world.metered_areas.items()
    assert area == "qd-water" and sorted(meters) == sorted((sid, 1) for sid in inlets)
    # Net3's three tanks are storage; the river and lake inlets are sources
    assert sorted(storage) == ["qd-wi-20", "qd-wi-40", "qd-wi-50"]
    buses = {sid: v["current"] for sid, v in limits.items() if "current" in v}
    assert len(tanks) == 3 and len(buses) == 15  # Net3's tanks; the scenario's 15 bus monitors
    wn = load_network("Net3")
    for sid, (low, high, why) in tanks.items():
        # full is normal: the alarm is at the overflow, 0.1 m above the top operating level
        tank = wn.get_node(sid.rsplit("-", 1)[1])
        assert high == round(tank.max_level + 0.1, 2) and high > 9.5  # above the type's 9.5 m
        assert low == round(tank.min_level + 0.5, 2) and "Net3" in why
    net = pn.mv_oberrhein()
    ratings = {round(i * 1000 * 20 / 10, 1) for i in net.line.max_i_ka}  # 20 kV lines at 10 kV
    assert {high for _low, high, _why in buses.values()} <= ratings
    assert all(low is None for low, _h, _w in buses.values())


def test_a_quiet_day_stays_within_the_ratings(quiet_day: ScenarioRun) -> None:
    # the peak hour (Chengdu 19:00) of the quiet day: no transformer over its rating
    step = round(19 * 3600 / quiet_day.scenario.step_s)
    loads = [m.values["loading"] for m in quiet_day.messages(step) if "loading" in m.values]
    assert loads and max(loads) < 100.0


def test_registered_limits_are_what_the_alert_engine_uses(
    quiet_day: ScenarioRun, db_url: str
) -> None:
    with psycopg.connect(db_url) as conn:
        write_sensors(conn, quiet_day.sensors)
        n = write_asset_limits(conn, quiet_day.world.asset_limits)
        sensors = read_sensors(conn)
    assert n == 3 + 15 + 2 * 5  # tank levels, bus currents, the 5 inlet meters' flow and pressure
    for sid, per in quiet_day.world.asset_limits.items():
        for quantity, (low, high, _why) in per.items():
            lim = sensors[sid].limits[quantity]
            assert (lim.alarm_low, lim.alarm_high) == (low, high)
    # a sensor without an asset limit keeps its type's
    pressure = next(s for s in quiet_day.sensors if s.sensor_type == "water_pressure")
    assert sensors[pressure.sensor_id].limits["pressure"].alarm_low == 200.0


def test_pressure_limits_from_the_model_band_each_sensor_round_its_own_day() -> None:
    """``limits: model`` gives each pressure sensor the band round its own simulated range
    over two days without incidents (as `cityops sensors limits --from-model` does for a utility),
    instead of the demo city's type defaults that do not fit another network's pressures."""
    from simulators.spec import parse_scenario

    text = (ROOT / "scenarios" / "burst_ky4.yaml").read_text(encoding="utf-8")
    assert "limits: model" in text
    scn = parse_scenario(
        text.split("incidents:")[0].replace("duration: 30h", "duration: 2h"), "ky4"
    )
    run = ScenarioRun(scn, start_ms=1_764_086_400_000)
    try:
        limits = run.world.asset_limits
        pressure = {s.sensor.sensor_id: s for s in run.world.sensors if s.ref[0] == "w_node"}
        assert len(pressure) == 30 and set(pressure) <= set(limits)
        for sid in pressure:
            low, high, why = limits[sid]["pressure"]
            assert low is not None and high is not None and low < high
            assert "network model" in why
        # bands differ per sensor (their own pressures), and the model's normal pressure at
        # the run's start lies inside each one
        assert len({limits[sid]["pressure"][:2] for sid in pressure}) > 20
        values, _base, _ = run.world.truth(0.0)
        for k, s in enumerate(run.world.sensors):
            if s.sensor.sensor_id in pressure:
                low, high, _ = limits[s.sensor.sensor_id]["pressure"]
                assert low < values[k]["pressure"] < high
    finally:
        run.close()
