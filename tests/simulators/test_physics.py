"""Physics sanity of the water, power and gas models (pure: no broker, no database)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandapower.topology as top
import pytest

from simulators import gas as gasmod
from simulators import power as powermod
from simulators import water as watermod


@pytest.fixture(scope="module")
def net3():
    return watermod.load_network("Net3")


def _pair(net3, incidents, *, duration_s=4 * 3600, step_s=60):
    wn = watermod.prepare_network(copy.deepcopy(net3), list(incidents))
    with_inc = watermod.WaterSim(
        copy.deepcopy(wn), step_s=step_s, duration_s=duration_s, incidents=tuple(incidents)
    )
    base = watermod.WaterSim(copy.deepcopy(wn), step_s=step_s, duration_s=duration_s)
    return wn, with_inc, base


def test_burst_lowers_neighbouring_pressure_and_raises_inlet_flow(net3) -> None:
    burst = watermod.WaterIncident("burst", "101", start_s=3600, end_s=7200, area_cm2=30)
    wn, sim, base = _pair(net3, [burst])
    try:
        leak = watermod.leak_node_name("101")
        # the junctions around the burst: the pipe's ends and their neighbours
        ends = {wn.get_link("101").start_node_name, wn.get_link("101-b").end_node_name}
        neighbours = sorted(
            {
                n
                for link in wn.link_name_list
                for n in (wn.get_link(link).start_node_name, wn.get_link(link).end_node_name)
                if {wn.get_link(link).start_node_name, wn.get_link(link).end_node_name} & ends
            }
            & set(wn.junction_name_list) - {leak}
        )
        sim.advance_to(3540)
        base.advance_to(3540)
        # service junctions (not the pump's suction node)
        neighbours = [n for n in neighbours if base.pressures_kpa([base.node_index(n)])[0] > 100]
        assert len(neighbours) >= 3
        idx = [sim.node_index(n) for n in neighbours]
        assert np.allclose(sim.pressures_kpa(idx), base.pressures_kpa(idx), atol=0.05)
        sim.advance_to(3600)
        base.advance_to(3600)
        drop = base.pressures_kpa(idx) - sim.pressures_kpa(idx)
        leak_lps = sim.demand_lps(sim.node_index(leak))
        assert leak_lps > 30  # a 30 cm2 hole at ~45 m of head
        assert np.all(drop > 5.0), dict(zip(neighbours, drop, strict=True))
        extra = sim.supply_lps() - base.supply_lps()
        assert extra == pytest.approx(leak_lps, rel=0.25)  # the inlets supply the lost water
        sim.advance_to(7800)  # repaired at 7200 s: the leak stops within minutes
        assert sim.demand_lps(sim.node_index(leak)) < 0.01
    finally:
        sim.close()
        base.close()


def test_incipient_leak_grows_with_its_area(net3) -> None:
    leak = watermod.WaterIncident("leak", "121", start_s=600, area_cm2=5, ramp_s=3600)
    wn, sim, base = _pair(net3, [leak], duration_s=3 * 3600)
    try:
        node = sim.node_index(watermod.leak_node_name("121"))
        flows = []
        for t in (600, 1200, 2400, 4200, 6000):
            sim.advance_to(t)
            flows.append(
                sim.demand_lps(node) - wn.get_node(watermod.leak_node_name("121")).base_demand
            )
        assert flows[0] == pytest.approx(0.0, abs=0.01)
        assert flows[1] < flows[2] < flows[3]
        assert flows[3] == pytest.approx(flows[4], rel=0.1)  # fully grown after the ramp
        # Torricelli: 5 cm2 at about 40-60 m of head gives roughly 8-13 L/s
        assert 5 < flows[3] < 16
        assert watermod.emitter_coefficient(5) == pytest.approx(
            0.75 * 5e-4 * math.sqrt(2 * 9.80665) * 1000
        )
    finally:
        sim.close()
        base.close()


def test_valve_closure_stops_flow_and_pump_trip_overrides_controls(net3) -> None:
    incidents = [
        watermod.WaterIncident("valve_closure", "189", start_s=1800, end_s=3600),
        # the Lake pump runs on a timer from hour 1 to 15: a trip at 2 h keeps it off
        watermod.WaterIncident("pump_trip", "10", start_s=7200, end_s=5 * 3600),
    ]
    _wn, sim, base = _pair(net3, incidents, duration_s=6 * 3600)
    try:
        pipe, pump = sim.link_index("189"), sim.link_index("10")
        sim.advance_to(1740)
        assert abs(sim.flows_lps([pipe])[0]) > 50
        sim.advance_to(1800)
        assert sim.flows_lps([pipe])[0] == pytest.approx(0.0, abs=1e-3)
        sim.advance_to(3600)
        assert abs(sim.flows_lps([pipe])[0]) > 50
        sim.advance_to(7140)
        assert sim.flows_lps([pump])[0] > 50
        for t in (7200, 10_800, 5 * 3600 - 60):
            sim.advance_to(t)
            base.advance_to(t)
            assert sim.flows_lps([pump])[0] == pytest.approx(0.0, abs=1e-3)
            assert base.flows_lps([base.link_index("10")])[0] > 50
        sim.advance_to(5 * 3600 + 60)
        assert sim.flows_lps([pump])[0] > 50  # restarted, its timer controls back
    finally:
        sim.close()
        base.close()


@pytest.fixture(scope="module")
def oberrhein():
    return powermod.load_network("mv_oberrhein")


def test_line_outage_leaves_exactly_the_topologically_unsupplied_buses(oberrhein) -> None:
    net = copy.deepcopy(oberrhein)
    incidents = (
        powermod.PowerIncident("line_outage", "5", start_s=100),
        powermod.PowerIncident("switch_close", "14", start_s=200),
    )
    sim = powermod.PowerSim(net, incidents)
    normal = sim.solve(0, 1.0)
    assert not normal.unsupplied and np.all(normal.bus_voltage_v > 9_300)
    out = sim.solve(150, 1.0)
    expected_net = copy.deepcopy(oberrhein)
    expected_net.line.at[5, "in_service"] = False
    expected = {int(b) for b in top.unsupplied_buses(expected_net)}
    assert len(expected) == 21
    dark = {int(net.bus.index[i]) for i in np.flatnonzero(out.bus_voltage_v == 0.0)}
    assert dark == expected == set(out.unsupplied)
    assert all(out.bus_current_a[sim.bus_position(b)] == 0.0 for b in expected)
    lit = np.delete(out.bus_voltage_v, [sim.bus_position(b) for b in expected])
    assert np.all(lit > 9_300)
    restored = sim.solve(250, 1.0)  # the tie switch closes: every bus supplied again
    assert not restored.unsupplied and np.all(restored.bus_voltage_v > 9_300)
    assert powermod.downstream_buses(copy.deepcopy(oberrhein), 5) == expected


def test_overload_and_voltage_sag(oberrhein) -> None:
    net = copy.deepcopy(oberrhein)
    line = 27
    incidents = (
        powermod.PowerIncident("overload", str(line), start_s=100, end_s=200, factor=3.0),
        powermod.PowerIncident("voltage_sag", "grid", start_s=300, end_s=400, vm_pu=0.9),
    )
    sim = powermod.PowerSim(net, incidents)
    pos = sim.line_position(line)
    normal, over, sag = sim.solve(0, 1.0), sim.solve(150, 1.0), sim.solve(350, 1.0)
    assert over.line_loading_pct[pos] > 2.0 * normal.line_loading_pct[pos]
    assert over.frequency_hz < normal.frequency_hz  # more load, lower frequency (droop)
    assert np.all(sag.bus_voltage_v < normal.bus_voltage_v)
    assert sag.bus_voltage_v.min() < 9_300  # the sag crosses the 10 kV alarm limit
    assert 49.8 < normal.frequency_hz < 50.2


@pytest.fixture(scope="module")
def schutterwald():
    return gasmod.load_network("schutterwald")


def test_gas_leak_lowers_nearby_pressure_and_gas_rises_downwind(schutterwald) -> None:
    net = copy.deepcopy(schutterwald)
    leak = gasmod.GasIncident("leak", "K1220", start_s=100, area_cm2=2.0)
    sim = gasmod.GasSim(net, (leak,))
    before, during = sim.solve(0, 1.0), sim.solve(200, 1.0)
    j = sim.position(sim.junction_by_name("K1220"))
    xy = gasmod.junction_xy(net)
    dist = np.hypot(*(xy - xy[j]).T)
    assert 170 < before.junction_p_kpa[j] < 181  # 1.8 bar supply, medium-pressure B
    drop = before.junction_p_kpa - during.junction_p_kpa
    assert drop[j] > 2.0  # kPa
    near, far = drop[dist < 100].mean(), drop[dist > 800].mean()
    assert near > far >= 0
    (q,) = during.leak_kg_s
    assert q == pytest.approx(
        gasmod.orifice_mass_flow(during.junction_p_kpa[j] / 100, 2.0), rel=0.02
    )
    assert during.supply_kg_s == pytest.approx(before.supply_kg_s + q, rel=0.02)
    # detectors 10 and 40 m downwind (wind from the west blows east), 10 m upwind
    dets = xy[j] + np.array([[10.0, 0], [40.0, 0], [-10.0, 0]])
    c = gasmod.concentration_lel(
        xy[j][None], np.array([q]), dets, wind_speed_m_s=2.0, wind_from_deg=270.0
    )
    assert c[0] > c[1] > 0 and c[0] > c[2] > 0
    stronger = gasmod.concentration_lel(
        xy[j][None], np.array([q]), dets, wind_speed_m_s=6.0, wind_from_deg=270.0
    )
    assert stronger[0] < c[0]  # more wind, more dilution


def test_orifice_flow_is_choked_at_distribution_pressure() -> None:
    # choked: proportional to absolute pressure
    a = gasmod.orifice_mass_flow(1.8, 1.0)
    b = gasmod.orifice_mass_flow(3.6, 1.0)
    assert b / a == pytest.approx((3.6e5 + 101_325) / (1.8e5 + 101_325), rel=1e-6)
    assert 0.02 < a < 0.04  # kg/s through 1 cm2
    assert gasmod.orifice_mass_flow(0.2, 1.0) < a  # subsonic below the critical ratio
    assert gasmod.orifice_mass_flow(0.0, 1.0) == 0.0


def test_gas_pipe_break_is_limited_by_the_network_and_regulator_fault_lowers_supply(
    schutterwald,
) -> None:
    net = copy.deepcopy(schutterwald)
    incidents = (
        gasmod.GasIncident("pipe_break", "128", start_s=100),
        gasmod.GasIncident("regulator_fault", "supply", start_s=300, p_bar=1.0),
    )
    sim = gasmod.GasSim(net, incidents)
    normal, broken, low = sim.solve(0, 1.0), sim.solve(200, 1.0), sim.solve(400, 1.0)
    (q,) = broken.leak_kg_s
    full_bore = gasmod.orifice_mass_flow(1.8, math.pi * (102.2 / 20) ** 2)
    assert 0.1 < q < full_bore  # the pipes feeding the break cannot carry its full-bore flow
    (j,) = broken.leak_junctions
    assert 0 <= broken.junction_p_kpa[j] < 100  # the break empties its neighbourhood
    assert q == pytest.approx(
        gasmod.orifice_mass_flow(broken.junction_p_kpa[j] / 100, math.pi * (102.2 / 20) ** 2),
        rel=0.02,
    )
    assert broken.supply_kg_s == pytest.approx(normal.supply_kg_s + q, rel=0.02)
    assert low.junction_p_kpa.max() == pytest.approx(100.0)  # the regulator now gives 1 bar
    assert low.leak_kg_s[0] < q  # less pressure, less gas out of the break
