"""Load mode catalogue, the synthetic benchmark grid and long steps on stateless networks."""

from __future__ import annotations

import numpy as np
import pytest

from sensors.payload import TimeWindow, decode_message
from simulators.load import build_load_catalogue
from simulators.profiles import DemoGenerator
from simulators.spec import ScenarioError, parse_scenario
from simulators.water import WaterSim, grid_network


def test_load_catalogue_is_deterministic_unique_and_in_chengdu() -> None:
    a = build_load_catalogue(3000, seed=2)
    assert a == build_load_catalogue(3000, seed=2)
    assert len({s.sensor_id for s in a}) == 3000
    assert all(103.9 < s.lon < 104.25 and 30.5 < s.lat < 30.8 for s in a)
    kinds = {s.sensor_type for s in a}
    assert kinds == {"water_pressure", "water_flow", "power_bus", "gas_pressure", "gas_detector"}
    gen = DemoGenerator(a, seed=2, start_ms=1_764_115_200_000, interval_s=60)
    msgs = gen.messages(0)
    assert len(msgs) == 3000
    wide = TimeWindow(1e10, 1e10)
    assert all(decode_message(m.payload, m.sensor_id, 0, wide) for m in msgs[:50])


def test_grid_network_size_and_hydraulics() -> None:
    wn = grid_network(8, 9)
    assert wn.num_junctions == 72 and wn.num_pipes == 2 * 72 - 8 - 9 + 2
    sim = WaterSim(wn, step_s=300, duration_s=6 * 3600)
    try:
        sim.advance_to(3600)
        p = sim.pressures_kpa([sim.node_index(n) for n in wn.junction_name_list])
        assert np.all(p > 400) and np.all(p < 700)  # 70 m of head over 0-10 m of ground
        assert sim.stateless
    finally:
        sim.close()


def test_a_long_step_on_a_network_without_tanks_gives_the_same_state() -> None:
    wn = grid_network(6, 6)
    a = WaterSim(wn, step_s=300, duration_s=12 * 3600)
    b = WaterSim(wn, step_s=300, duration_s=12 * 3600)
    try:
        idx = [a.node_index(n) for n in wn.junction_name_list]
        for t in range(0, 5 * 3600 + 1, 300):
            a.advance_to(t)
        b.advance_to(0)
        b.advance_to(5 * 3600, jump=True)
        assert a.t == b.t
        assert np.allclose(a.pressures_kpa(idx), b.pressures_kpa(idx), atol=1e-6)
        a.advance_to(5 * 3600 + 300)
        b.advance_to(5 * 3600 + 300)  # back to ordinary steps
        assert np.allclose(a.pressures_kpa(idx), b.pressures_kpa(idx), atol=1e-6)
    finally:
        a.close()
        b.close()


def test_truth_every_must_be_a_multiple_of_the_step() -> None:
    text = (
        "name: t\nduration: 1h\nstep: 5m\ntruth_every: 7m\n"
        "networks:\n  water: {model: Net3, anchor: [104.08, 30.64]}\n"
    )
    with pytest.raises(ScenarioError, match="line 4: truth_every: must be a multiple of step"):
        parse_scenario(text, "t")
    assert parse_scenario(text.replace("7m", "15m"), "t").truth_every_s == 900


def test_a_utility_model_in_projected_coordinates_is_used_as_it_is(tmp_path) -> None:
    """An .inp file whose coordinates are EPSG:4544 metres keeps its place (no anchor)."""
    import re

    from simulators.geo import lonlat_to_metric
    from simulators.run import ScenarioRun
    from simulators.water import grid_inp

    x0, y0 = lonlat_to_metric(104.0657, 30.6598)
    text = grid_inp(4, 4)

    def shift(m: re.Match) -> str:
        return f"{m.group(1)} {float(m.group(2)) + x0:.2f} {float(m.group(3)) + y0:.2f}"

    head, coords = text.split("[COORDINATES]")
    body, _end = coords.split("[END]")
    body = re.sub(r"(?m)^(\S+) (-?[\d.]+) (-?[\d.]+)$", shift, body)
    inp = tmp_path / "utility.inp"
    inp.write_text(head + "[COORDINATES]" + body + "[END]\n")
    scn = parse_scenario(
        f"name: u\nduration: 10m\nstep: 5m\nnetworks:\n  water: {{model: {inp}, crs: EPSG:4544}}\n"
        "sensors:\n  water: {pressure: [j0-0, j3-3]}\n",
        "u.yaml",
    )
    run = ScenarioRun(scn, start_ms=1_764_115_200_000)
    try:
        first, last = run.sensors
        assert first.lon == pytest.approx(104.0657, abs=1e-5)
        assert first.lat == pytest.approx(30.6598, abs=1e-5)
        assert last.lon > first.lon and last.lat > first.lat  # 450 m north-east
        assert len(run.messages(0)) == 2
    finally:
        run.close()
    with pytest.raises(ScenarioError, match="crs: expected a projected CRS"):
        parse_scenario(
            "name: u\nduration: 10m\nstep: 5m\nnetworks:\n  water: {model: x.inp, crs: EPSG:4326}\n",
            "u.yaml",
        )
