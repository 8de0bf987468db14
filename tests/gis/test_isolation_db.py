"""Valve isolation end to end: a hand-built looped network loaded from files into PostGIS."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import psycopg
from shapely.geometry import LineString, Point

from gis.analysis import NetworkCache, fetch_isolation
from gis.loading import load_layer_file

X0, Y0 = 104.0657, 30.6598
D = 0.002  # about 200 m


def _xy(name: str) -> tuple[float, float]:
    """R
    |
    A --V1-- B
    |        |
    V4       V2
    |        |
    D ------ C      (hospital next to C)
    """
    grid = {
        "R": (0, 1),
        "A": (0, 0),
        "B": (1, 0),
        "C": (1, -1),
        "D": (0, -1),
        "V1": (0.1, 0),
        "V2": (1, -0.1),
        "V4": (0, -0.9),
    }
    gx, gy = grid[name]
    return X0 + gx * D, Y0 + gy * D


def _write_network(tmp: Path) -> tuple[Path, Path, Path]:
    kinds = {"R": "reservoir", "V1": "valve", "V2": "valve", "V4": "valve"}
    customers = {"A": 10, "B": 20, "C": 30, "D": 40}
    nodes = gpd.GeoDataFrame(
        {"node_id": list(kinds.keys() | customers.keys())},
        geometry=[Point(_xy(n)) for n in (kinds.keys() | customers.keys())],
        crs=4326,
    )
    nodes["kind"] = [kinds.get(n, "junction") for n in nodes["node_id"]]
    nodes["customers"] = [customers.get(n, 0) for n in nodes["node_id"]]
    pipes = [
        ("PR", "R", "A"),
        ("PA1", "A", "V1"),
        ("PB1", "V1", "B"),
        ("PB2", "B", "V2"),
        ("PC2", "V2", "C"),
        ("PCD", "C", "D"),
        ("PD4", "D", "V4"),
        ("PA4", "V4", "A"),
    ]
    links = gpd.GeoDataFrame(
        {
            "pipe_id": [p[0] for p in pipes],
            "from_node": [p[1] for p in pipes],
            "to_node": [p[2] for p in pipes],
            "install_year": [1985] * len(pipes),
            "diameter_mm": [200.0] * len(pipes),
        },
        geometry=[LineString([_xy(p[1]), _xy(p[2])]) for p in pipes],
        crs=4326,
    ).to_crs(4544)  # a metric file: transformed on load
    cx, cy = _xy("C")
    hospital = gpd.GeoDataFrame(
        {"facility_id": ["H1"], "kind": ["hospital"], "name_zh": ["测试医院"]},
        geometry=[Point(cx + 0.0003, cy)],
        crs=4326,
    )
    paths = (tmp / "nodes.geojson", tmp / "pipes.gpkg", tmp / "hospital.geojson")
    nodes.to_file(paths[0], driver="GeoJSON")
    links.to_file(paths[1])
    hospital.to_file(paths[2], driver="GeoJSON")
    return paths


def test_loop_isolation_from_loaded_files(gis_conn: psycopg.Connection, tmp_path: Path) -> None:
    nodes, pipes, hospital = _write_network(tmp_path)
    load_layer_file(gis_conn, nodes, "water_nodes")
    load_layer_file(gis_conn, pipes, "water_pipes")
    load_layer_file(gis_conn, hospital, "facilities")
    assert gis_conn.execute("SELECT water_node_id FROM facilities").fetchone()[0] == "C"
    cache = NetworkCache()
    fc = fetch_isolation(gis_conn, "water", "PCD", cache=cache)
    iso = fc["isolation"]
    assert iso["valves_to_close"] == ["V2", "V4"]  # one valve is not enough on the loop
    assert set(iso["segment_links"]) == {"PC2", "PCD", "PD4"}
    assert set(iso["nodes_without_supply"]) == {"C", "D"}
    assert iso["customers_without_supply"] == 70
    assert iso["population_without_supply"] == round(70 * 2.62)
    assert iso["facilities_without_supply"] == ["H1"]
    roles = sorted((f["properties"]["role"], f["id"]) for f in fc["features"])
    assert ("valve_to_close", "V2") in roles and ("facility_without_supply", "H1") in roles
    # a seized valve: the segment grows to A and B is trapped between V1 and V2
    iso2 = fetch_isolation(gis_conn, "water", "PCD", unavailable=("V4",), cache=cache)["isolation"]
    assert iso2["valves_to_close"] == ["V1", "V2"]
    assert set(iso2["nodes_without_supply"]) == {"A", "B", "C", "D"}
    # a layer change (its version bumps on every load) invalidates the cached graph
    gis_conn.execute("UPDATE water_nodes SET status = 'closed' WHERE node_id = 'V2'")
    gis_conn.execute("UPDATE gis_layers SET version = version + 1 WHERE name = 'water_nodes'")
    iso3 = fetch_isolation(gis_conn, "water", "PCD", cache=cache)["isolation"]
    assert iso3["valves_to_close"] == ["V4"]  # V2 is already shut
