"""The demo city: deterministic, topologically connected, marked demo, sensors on real assets."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from gis.cli import app
from gis.demo import DemoConfig, build_demo_city, build_demo_sensors
from gis.postgis import write_districts

ROOT = Path(__file__).resolve().parents[2]


def test_same_config_same_city() -> None:
    a = build_demo_city(DemoConfig(grid_n=6))
    b = build_demo_city(DemoConfig(grid_n=6))
    for name in a:
        assert a[name].to_json() == b[name].to_json(), name
    c = build_demo_city(DemoConfig(grid_n=6, seed=5))
    assert a["water_pipes"].to_json() != c["water_pipes"].to_json()
    s1 = build_demo_sensors(a, per_kind=4)
    assert s1 == build_demo_sensors(a, per_kind=4)


def test_demo_command_loads_connected_layers_with_sensors_on_assets(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", db_url)
    runner = CliRunner()
    r = runner.invoke(app, ["demo", "--grid-n", "8", "--resolutions", "7"])
    assert r.exit_code == 2 and "load-districts" in r.output
    with psycopg.connect(db_url) as conn:
        write_districts(
            conn,
            json.loads((ROOT / "data" / "chengdu_districts.geojson").read_text(encoding="utf-8")),
        )
    r = runner.invoke(app, ["demo", "--grid-n", "8", "--resolutions", "7", "--sensors", "3"])
    assert r.exit_code == 0, r.output
    with psycopg.connect(db_url) as conn:
        for nodes, links in (
            ("water_nodes", "water_pipes"),
            ("gas_nodes", "gas_pipes"),
            ("power_nodes", "power_lines"),
        ):
            dangling = conn.execute(
                f"SELECT count(*) FROM {links} l WHERE NOT EXISTS (SELECT 1 FROM {nodes} n"  # noqa: S608
                " WHERE n.node_id = l.from_node) OR NOT EXISTS (SELECT 1 FROM {nodes} n"
                " WHERE n.node_id = l.to_node)".replace("{nodes}", nodes)
            ).fetchone()[0]
            assert dangling == 0, links
        demo = dict(conn.execute("SELECT name, demo FROM gis_layers").fetchall())
        assert demo["water_pipes"] and demo["grid_cells"] and demo["facilities"]
        assert demo["districts"] is False
        n_sensors, on_assets = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE asset_id IN (SELECT node_id FROM water_nodes"
            " UNION ALL SELECT node_id FROM gas_nodes UNION ALL SELECT node_id FROM power_nodes))"
            " FROM sensors"
        ).fetchone()
        assert n_sensors >= 15 and on_assets == n_sensors
        pop = conn.execute("SELECT sum(population) FROM grid_cells").fetchone()[0]
        assert pop == pytest.approx(20_937_757, rel=1e-4)
        assert conn.execute("SELECT count(*) FROM power_feeders").fetchone()[0] == 3 * 6
