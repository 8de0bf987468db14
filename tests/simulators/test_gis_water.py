"""Simulating the GIS water layers: the network the operations center draws is the one whose
physics the simulator runs, and the sensors sit on its nodes."""

from __future__ import annotations

import psycopg
import pytest

from gis.demo import DemoConfig, build_water
from sensors.payload import TimeWindow, decode_message
from simulators.gisnet import water_layers_to_inp
from simulators.scenario import prepare_run
from simulators.spec import ScenarioError, parse_scenario

WIDE = TimeWindow(1e10, 1e10)


@pytest.fixture(scope="module")
def demo_water():
    return build_water(DemoConfig(grid_n=8))


def _write_layers(db_url: str, nodes, pipes) -> None:
    with psycopg.connect(db_url) as conn:
        for r in nodes.itertuples():
            conn.execute(
                "INSERT INTO water_nodes (node_id, kind, elevation_m, base_demand_lps, status, geom)"
                " VALUES (%s, %s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
                (
                    r.node_id,
                    r.kind,
                    None if r.elevation_m != r.elevation_m else r.elevation_m,
                    None if r.base_demand_lps != r.base_demand_lps else r.base_demand_lps,
                    r.status,
                    r.geometry.x,
                    r.geometry.y,
                ),
            )
        for r in pipes.itertuples():
            conn.execute(
                "INSERT INTO water_pipes (pipe_id, from_node, to_node, diameter_mm, length_m,"
                " roughness, status, geom) VALUES (%s, %s, %s, %s, %s, %s, %s,"
                " ST_SetSRID(ST_GeomFromText(%s), 4326))",
                (
                    r.pipe_id,
                    r.from_node,
                    r.to_node,
                    r.diameter_mm,
                    r.length_m,
                    r.roughness,
                    r.status,
                    r.geometry.wkt,
                ),
            )


def test_layers_become_an_epanet_model() -> None:
    nodes = [
        {"node_id": "R", "kind": "reservoir", "elevation_m": 540.0, "x_m": 0.0, "y_m": 0.0},
        {
            "node_id": "A",
            "kind": "junction",
            "elevation_m": 500.0,
            "base_demand_lps": 2.0,
            "x_m": 100.0,
            "y_m": 0.0,
        },
        {"node_id": "V", "kind": "valve", "elevation_m": float("nan"), "x_m": 200.0, "y_m": 0.0},
    ]
    pipes = [
        {
            "pipe_id": "P1",
            "from_node": "R",
            "to_node": "A",
            "diameter_mm": 300.0,
            "length_m": 100.0,
        },
        {"pipe_id": "P2", "from_node": "A", "to_node": "V", "status": "closed"},
    ]
    text = water_layers_to_inp(nodes, pipes)
    assert "R 540.000" in text and "A 500.000 2.00000 diurnal" in text
    assert "V 500.000 0.00000 diurnal" in text  # a missing elevation takes the default
    assert "P2 A V 1.00 150.0 120.0 0 Closed" in text
    with pytest.raises(ValueError, match="not in the layer"):
        water_layers_to_inp(nodes, [{"pipe_id": "P9", "from_node": "A", "to_node": "Z"}])


def test_a_scenario_on_the_gis_water_layers(db_url: str, demo_water) -> None:
    nodes, pipes = demo_water
    _write_layers(db_url, nodes, pipes)
    trunk = pipes.loc[pipes.diameter_mm >= 300].iloc[3]
    ends = [trunk.from_node, trunk.to_node]
    junctions = sorted(nodes.loc[nodes.kind == "junction", "node_id"])[:6] + ends
    trunk = trunk.pipe_id
    text = f"""
name: gis
start: "2026-11-26T02:00:00+08:00"
duration: 2h
step: 5m
networks:
  water: {{model: gis}}
sensors:
  water: {{pressure: {junctions}, tanks: all}}
incidents:
  - {{network: water, type: burst, element: "{trunk}", at: 1h, area_cm2: 150}}
"""
    run = prepare_run(parse_scenario(text, "gis.yaml"), database_url=db_url)
    try:
        by_id = nodes.set_index("node_id").geometry
        for s in run.sensors:
            if s.sensor_type == "water_pressure":
                node = s.asset_id.split(":")[-1]
                assert s.lon == pytest.approx(by_id[node].x, abs=1e-6)
                assert s.lat == pytest.approx(by_id[node].y, abs=1e-6)
        values = []
        for k in range(run.steps):
            for m in run.messages(k):
                if m.sensor_id.startswith("sim-wp-"):
                    (r,) = decode_message(m.payload, m.sensor_id, 0, WIDE)
                    values.append(r.value)
        assert min(values) > 250 and max(values) < 650  # 40 m of head over the town
        (burst,) = run.ground_truth(run_id="g")["events"]
        near = {f"sim-wp-{n.lower()}" for n in ends}
        assert near <= set(burst["affected_sensors"])  # the burst pipe's own ends see it
    finally:
        run.close()
    with pytest.raises(ScenarioError, match="gis needs a database"):
        prepare_run(parse_scenario(text, "gis.yaml"))
