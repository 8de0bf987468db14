"""EPANET import of wntr's example network Net3 into the water layers."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import wntr

from gis.analysis import fetch_isolation
from gis.epanet import import_epanet

NET3 = Path(wntr.__file__).parent / "library" / "networks" / "Net3.inp"


def test_import_net3_counts_and_length_match(gis_conn: psycopg.Connection) -> None:
    wn = wntr.network.WaterNetworkModel(str(NET3))
    counts = import_epanet(gis_conn, NET3, crs="EPSG:4544", origin=(104.06, 30.66))
    assert counts == {"water_nodes": wn.num_nodes, "water_pipes": wn.num_links}
    row = gis_conn.execute(
        "SELECT count(*), sum(length_m) FROM water_pipes WHERE link_kind = 'pipe'"
    ).fetchone()
    assert row[0] == wn.num_pipes
    assert row[1] == pytest.approx(sum(p.length for _, p in wn.pipes()), rel=1e-9)
    kinds = dict(
        gis_conn.execute("SELECT kind, count(*) FROM water_nodes GROUP BY kind").fetchall()
    )
    assert kinds == {
        "junction": wn.num_junctions,
        "tank": wn.num_tanks,
        "reservoir": wn.num_reservoirs,
    }
    # every link end is a node: the topology connects
    dangling = gis_conn.execute(
        "SELECT count(*) FROM water_pipes p WHERE NOT EXISTS (SELECT 1 FROM water_nodes n"
        " WHERE n.node_id = p.from_node) OR NOT EXISTS (SELECT 1 FROM water_nodes n"
        " WHERE n.node_id = p.to_node)"
    ).fetchone()[0]
    assert dangling == 0
    # auto-scaled layout: drawn lengths in EPSG:4544 are of the model's order (median ratio ~1)
    ratio = gis_conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ST_Length(geom_m) / length_m)"
        " FROM water_pipes WHERE link_kind = 'pipe' AND length_m > 0"
    ).fetchone()[0]
    assert ratio == pytest.approx(1.0, abs=0.05)
    # centred on the origin (the extent's centre)
    cx, cy = gis_conn.execute(
        "SELECT (ST_XMin(e) + ST_XMax(e)) / 2, (ST_YMin(e) + ST_YMax(e)) / 2"
        " FROM (SELECT ST_Extent(geom)::geometry AS e FROM water_nodes) x"
    ).fetchone()
    assert (cx, cy) == (pytest.approx(104.06, abs=1e-4), pytest.approx(30.66, abs=1e-4))
    meta = gis_conn.execute(
        "SELECT feature_count, demo, source FROM gis_layers WHERE name = 'water_pipes'"
    ).fetchone()
    assert meta[0] == wn.num_links and meta[1] is False and "Net3.inp" in meta[2]
    # Net3 has no isolation valves: isolating a pipe shuts everything reachable from it
    iso = fetch_isolation(gis_conn, "water", "101", with_geometry=False)["isolation"]
    assert iso["valves_to_close"] == []
    assert iso["customers_without_supply"] > 0


def test_water_layers_back_to_epanet_run_with_plausible_pressures(
    gis_conn: psycopg.Connection, tmp_path: Path
) -> None:
    from gis.epanet import fetch_water_model

    # the demo network from the database: a model EPANET solves, pressures in the service range
    wn = fetch_water_model(gis_conn)
    n_nodes, n_pipes = gis_conn.execute(
        "SELECT (SELECT count(*) FROM water_nodes), (SELECT count(*) FROM water_pipes)"
    ).fetchone()
    assert (wn.num_nodes, wn.num_links) == (n_nodes, n_pipes)
    wn.options.time.duration = 3600
    res = wntr.sim.EpanetSimulator(wn).run_sim(file_prefix=str(tmp_path / "demo"))
    pressure_kpa = res.node["pressure"][wn.junction_name_list] * 9.80665  # m of water -> kPa
    assert pressure_kpa.min().min() > 200 and pressure_kpa.max().max() < 700

    # an EPANET model round trip keeps counts and pipe lengths
    net1 = NET3.parent / "Net1.inp"
    import_epanet(gis_conn, net1, origin=(104.06, 30.66))
    back = fetch_water_model(gis_conn)
    orig = wntr.network.WaterNetworkModel(str(net1))
    assert (back.num_nodes, back.num_links) == (orig.num_nodes, orig.num_links)
    pipes = set(orig.pipe_name_list)
    assert sum(p.length for n, p in back.pipes() if n in pipes) == pytest.approx(
        sum(p.length for _, p in orig.pipes()), rel=1e-9
    )
    wntr.network.write_inpfile(back, str(tmp_path / "net1_back.inp"))
    assert (tmp_path / "net1_back.inp").stat().st_size > 0


def test_the_imported_model_itself_is_the_hydraulic_model_while_the_layers_are_its_own(
    gis_conn: psycopg.Connection,
) -> None:
    """The layers keep no pump curves, valve settings, tank shapes, patterns or controls: the
    EPANET text that `gis import-epanet` read is the hydraulic model (limits from the model,
    localisation) until a water layer is reloaded another way."""
    from gis.epanet import fetch_water_model, simulate_day
    from gis.postgis import mark_layer_loaded
    from simulators.profiles import WATER_DEMAND_PATTERN

    import_epanet(gis_conn, NET3, crs="EPSG:4544", origin=(104.06, 30.66))
    wn = fetch_water_model(gis_conn)
    original = wntr.network.WaterNetworkModel(str(NET3))
    assert sorted(wn.pump_name_list) == sorted(original.pump_name_list) == ["10", "335"]
    assert len(wn.control_name_list) == len(original.control_name_list) > 0
    assert wn.get_node("1").diameter == pytest.approx(original.get_node("1").diameter)  # tank
    # placed where the layers put it (EPSG:4544 metres round the origin), not in model units
    x, y = wn.get_node("10").coordinates
    row = gis_conn.execute(
        "SELECT ST_X(geom_m), ST_Y(geom_m) FROM water_nodes WHERE node_id = '10'"
    ).fetchone()
    assert (x, y) == pytest.approx(row)
    pressure, _ = simulate_day(wn, WATER_DEMAND_PATTERN)
    assert pressure[original.junction_name_list].min().min() > -1.0  # no vacuum: pumps run
    # a water layer reloaded otherwise: the text no longer describes it, the layers do
    mark_layer_loaded(gis_conn, "water_pipes", 1)
    rebuilt = fetch_water_model(gis_conn)
    assert rebuilt.pump_name_list == [] and rebuilt.control_name_list == []


def test_a_meter_on_a_link_that_fills_and_empties_a_tank_gets_a_two_way_band() -> None:
    """Its flow reverses over the day: a band from 0 up would alarm every time the tank
    drains. A one-way link's band is signed as EPANET signs its flow (start node to end node),
    and may go below zero by its margin: an idle link's meter reads noise of both signs."""
    import pandas as pd

    from gis.epanet import model_band, modelled_range

    wn = wntr.network.WaterNetworkModel(str(NET3))
    flows = pd.DataFrame({"40": [0.02, -0.015, 0.01], "20": [0.05, 0.06, 0.04]})  # m3/s
    lo, hi = modelled_range(None, flows, wn, "flow", "40")
    assert (lo, hi) == pytest.approx((-20.0, 20.0))
    low, high, _ = model_band("flow", lo, hi)
    assert low < -20.0 and high > 20.0
    lo1, hi1 = modelled_range(None, flows, wn, "flow", "20")
    assert (lo1, hi1) == pytest.approx((40.0, 60.0))
    assert model_band("flow", lo1, hi1)[0] == pytest.approx(35.0)  # 40 - 0.25 x 20
    assert model_band("flow", 0.0, 0.0)[:2] == (-0.5, 0.5)  # an idle link: noise both ways
    flows_back = pd.DataFrame({"20": [-0.05, -0.06, -0.04]})  # the link drawn against the flow
    assert modelled_range(None, flows_back, wn, "flow", "20") == pytest.approx((-60.0, -40.0))


def test_a_meter_fitted_against_the_link_gets_its_band_turned_round() -> None:
    """Its stored readings run the other way from the model's flow: the band follows them.
    Two-way bands, idle meters and meters with no history stay as they are."""
    from gis.epanet import flip_flow_band

    assert flip_flow_band(40.0, 60.0, -48.0) == (-60.0, -40.0, True)
    assert flip_flow_band(-60.0, -40.0, -48.0) == (-60.0, -40.0, False)
    assert flip_flow_band(40.0, 60.0, None) == (40.0, 60.0, False)
    assert flip_flow_band(-20.0, 20.0, -15.0) == (-20.0, 20.0, False)
    assert flip_flow_band(0.0, 0.3, -0.1) == (0.0, 0.3, False)  # noise round zero: no sign


def test_a_pump_at_one_speed_all_day_gets_a_band_of_a_few_per_cent() -> None:
    """Its simulated flow has no span; a band of the 0.5 L/s floor round 159 L/s alarmed on
    every reading of a real meter (1,500 alarms a week in the rehearsal)."""
    from gis.epanet import model_band

    low, high, _ = model_band("flow", 159.4, 159.4)
    assert low == pytest.approx(159.4 * 0.95) and high == pytest.approx(159.4 * 1.05)
    # the 2 m floor of a model's pressure (WRc's calibration criterion)
    assert model_band("pressure", 400.0, 400.0)[:2] == pytest.approx((380.39, 419.61), abs=0.01)
