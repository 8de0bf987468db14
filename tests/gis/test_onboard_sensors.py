"""A utility brings its own network and sensors through public commands (issue 15 item 4):
`cityops gis import-epanet` then `cityops sensors import` with its ids, its model's coordinates
or its asset names; the demo's water sensors retired with the demo layers."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import wntr

from cityops.shell.stack import LocalStack
from gis.demo import DemoConfig, build_demo_city, build_demo_sensors
from gis.epanet import MODEL_BAND_FLOOR, import_epanet_report
from gis.postgis import read_sensor_file, write_sensors
from tests.conftest import run_cityops, stack_settings

ROOT = Path(__file__).resolve().parents[2]
NET1 = Path(wntr.__file__).parent / "library" / "networks" / "Net1.inp"
ORIGIN = "104.06,30.66"


def _feature(props: dict, xy: tuple[float, float] | None = None) -> dict:
    geom = {"type": "Point", "coordinates": list(xy)} if xy else None
    return {"type": "Feature", "geometry": geom, "properties": props}


def _write(tmp_path: Path, name: str, features: list[dict]) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"type": "FeatureCollection", "features": features}), "utf-8")
    return p


@pytest.fixture
def net1(stack: LocalStack, gis_db: str):
    """Settings for a GIS database whose water layers are Net1, placed on ORIGIN by the CLI."""
    s = stack_settings(stack, gis_db)
    r = run_cityops(s, "gis", "import-epanet", str(NET1), "--origin", ORIGIN)
    assert r.returncode == 0, r.stderr
    return s


def _rows(db: str, sql: str, *params) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def test_at_asset_places_on_nodes_and_pipe_midpoints_with_utility_ids(net1, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "utility.geojson",
        [
            _feature({"sensor_id": "T1", "sensor_type": "water_tank", "node": "2"}),
            _feature({"sensor_id": "PS 22", "sensor_type": "water_pressure", "asset_id": "22"}),
            _feature({"sensor_id": "FM/110", "sensor_type": "water_flow", "link": "110"}),
        ],
    )
    r = run_cityops(net1, "sensors", "import", str(f), "--at-asset")
    assert r.returncode == 0, r.stderr
    assert "T1 -> t1" in r.stderr and "PS 22 -> ps-22" in r.stderr
    rows = _rows(
        net1.database_url,
        """
        SELECT s.sensor_id, s.external_id, s.asset_id,
               coalesce(ST_Distance(s.geom::geography, n.geom::geography),
                        ST_Distance(s.geom::geography,
                                    ST_LineInterpolatePoint(p.geom, 0.5)::geography))
        FROM sensors s
        LEFT JOIN water_nodes n ON n.node_id = s.asset_id AND s.sensor_type <> 'water_flow'
        LEFT JOIN water_pipes p ON p.pipe_id = s.asset_id AND s.sensor_type = 'water_flow'
        WHERE s.external_id IS NOT NULL ORDER BY 1
        """,
    )
    # the contract: asset_id is the GIS feature id exactly; the sensor sits on it
    assert [(a, b, c) for a, b, c, _ in rows] == [
        ("fm-110", "FM/110", "110"),
        ("ps-22", "PS 22", "22"),
        ("t1", "T1", "2"),
    ]
    assert all(d < 0.01 for *_, d in rows)


def test_an_unknown_asset_is_named_and_nothing_is_stored(net1, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "bad.geojson",
        [
            _feature({"sensor_id": "P1", "sensor_type": "water_pressure", "node": "22"}),
            _feature({"sensor_id": "P2", "sensor_type": "water_pressure", "node": "J-404"}),
        ],
    )
    r = run_cityops(net1, "sensors", "import", str(f), "--at-asset")
    assert r.returncode == 2
    assert "J-404" in r.stderr and "P2" in r.stderr
    # without --at-asset the asset is still checked against the loaded network
    g = _write(
        tmp_path,
        "bad2.geojson",
        [
            _feature(
                {"sensor_id": "P3", "sensor_type": "water_pressure", "node": "J-405"},
                (104.06, 30.66),
            )
        ],
    )
    r = run_cityops(net1, "sensors", "import", str(g))
    assert r.returncode == 2 and "J-405" in r.stderr
    assert _rows(
        net1.database_url, "SELECT count(*) FROM sensors WHERE sensor_id IN ('p1', 'p2', 'p3')"
    ) == [(0,)]


def test_ids_that_collide_after_mapping_are_refused(net1, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "clash.geojson",
        [
            _feature({"sensor_id": "A.1", "sensor_type": "water_pressure", "node": "22"}),
            _feature({"sensor_id": "A 1", "sensor_type": "water_pressure", "node": "23"}),
        ],
    )
    r = run_cityops(net1, "sensors", "import", str(f), "--at-asset")
    assert r.returncode == 2
    assert "'A.1' and 'A 1' both map to 'a-1'" in r.stderr
    assert _rows(net1.database_url, "SELECT count(*) FROM sensors WHERE sensor_id = 'a-1'") == [
        (0,)
    ]
    # across files too: a second utility id for a catalogue id already taken
    ok = _write(
        tmp_path,
        "a.geojson",
        [_feature({"sensor_id": "A.1", "sensor_type": "water_pressure", "node": "22"})],
    )
    assert run_cityops(net1, "sensors", "import", str(ok), "--at-asset").returncode == 0
    other = _write(
        tmp_path,
        "b.geojson",
        [_feature({"sensor_id": "A 1", "sensor_type": "water_pressure", "node": "23"})],
    )
    r = run_cityops(net1, "sensors", "import", str(other), "--at-asset")
    assert r.returncode == 2 and "'A.1'" in r.stderr
    assert _rows(
        net1.database_url, "SELECT asset_id, external_id FROM sensors WHERE sensor_id = 'a-1'"
    ) == [("22", "A.1")]


def test_model_coordinates_land_where_the_network_import_put_the_model(
    net1, tmp_path: Path
) -> None:
    wn = wntr.network.WaterNetworkModel(str(NET1))
    x, y = wn.get_node("31").coordinates
    f = _write(
        tmp_path,
        "model_xy.geojson",
        [_feature({"sensor_id": "p31", "sensor_type": "water_pressure", "node": "31"}, (x, y))],
    )
    r = run_cityops(net1, "sensors", "import", str(f), "--origin", ORIGIN)
    assert r.returncode == 2 and "--model" in r.stderr  # the model's centre is needed
    r = run_cityops(net1, "sensors", "import", str(f), "--origin", ORIGIN, "--model", str(NET1))
    assert r.returncode == 0, r.stderr
    [(d,)] = _rows(
        net1.database_url,
        "SELECT ST_Distance(s.geom::geography, n.geom::geography) FROM sensors s"
        " JOIN water_nodes n ON n.node_id = '31' WHERE s.sensor_id = 'p31'",
    )
    assert d < 0.01


def test_a_projected_crs_is_transformed(stack: LocalStack, gis_db: str, tmp_path: Path) -> None:
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 4544, always_xy=True).transform(104.07, 30.65)
    csv = tmp_path / "s.csv"
    csv.write_text(f"sensor_id,sensor_type,name,x,y\nGP-1,gas_pressure,gp,{x},{y}\n", "utf-8")
    s = stack_settings(stack, gis_db)
    r = run_cityops(s, "sensors", "import", str(csv), "--crs", "EPSG:4544")
    assert r.returncode == 0, r.stderr
    [(lon, lat, ext)] = _rows(
        gis_db, "SELECT ST_X(geom), ST_Y(geom), external_id FROM sensors WHERE sensor_id = 'gp-1'"
    )
    assert lon == pytest.approx(104.07, abs=1e-7) and lat == pytest.approx(30.65, abs=1e-7)
    assert ext == "GP-1"


def test_import_epanet_retires_the_demo_water_sensors(gis_conn: psycopg.Connection) -> None:
    demo = build_demo_sensors(build_demo_city(DemoConfig()), per_kind=3)
    catalogue = read_sensor_file(ROOT / "data" / "demo_sensors.geojson")
    write_sensors(gis_conn, [*demo, *catalogue])
    water = {s.sensor_id for s in [*demo, *catalogue] if s.utility.value == "water"}
    others = {s.sensor_id for s in [*demo, *catalogue]} - water
    counts, retired = import_epanet_report(gis_conn, NET1, origin=(104.06, 30.66))
    assert counts == {"water_nodes": 11, "water_pipes": 13}
    assert set(retired) == water
    active = {
        r[0] for r in gis_conn.execute("SELECT sensor_id FROM sensors WHERE status = 'active'")
    }
    assert active == others
    # a second import over the utility's own (not demo) layers retires nothing
    _, again = import_epanet_report(gis_conn, NET1, origin=(104.06, 30.66))
    assert again == []


def test_limits_from_the_model_replace_the_demo_defaults(net1, tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "utility.geojson",
        [
            _feature({"sensor_id": "P22", "sensor_type": "water_pressure", "node": "22"}),
            _feature({"sensor_id": "F10", "sensor_type": "water_flow", "link": "10"}),
            _feature({"sensor_id": "T2", "sensor_type": "water_tank", "node": "2"}),
        ],
    )
    assert run_cityops(net1, "sensors", "import", str(f), "--at-asset").returncode == 0
    overrides = "SELECT sensor_id, quantity, alarm_low, alarm_high, reason FROM sensor_limit_overrides ORDER BY 1, 2"
    r = run_cityops(net1, "sensors", "limits", "--from-model", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert _rows(net1.database_url, overrides) == []  # a dry run writes nothing
    r = run_cityops(net1, "sensors", "limits", "--from-model")
    assert r.returncode == 0, r.stderr
    rows = _rows(net1.database_url, overrides)
    # one band per modelled quantity: the flow meter also reads pressure (its pipe's two ends)
    assert [(s, q) for s, q, *_ in rows] == [
        ("f10", "flow"),
        ("f10", "pressure"),
        ("p22", "pressure"),
        ("t2", "level"),
    ]
    assert {reason for *_, reason in rows} == {"derived from the network model"}
    printed = {
        (line.split("\t")[0], line.split("\t")[1]): line.split("\t")[2]
        for line in r.stdout.splitlines()
    }
    for sid, q, low, high, _ in rows:
        lo, hi = (float(v) for v in printed[(sid, q)].removeprefix("simulated ").split(".."))
        # the band holds the model's whole day with at least the floor margin on each side
        floor = MODEL_BAND_FLOOR[q]
        assert high >= hi + floor * 0.999
        assert low <= lo - floor * 0.999 or (q == "level" and low == 0.0)
    # the pressure band is the model's, not the demo city's 200-700 kPa
    [(low, high)] = [(lo_, hi_) for s, q, lo_, hi_, _ in rows if (s, q) == ("p22", "pressure")]
    assert (low, high) != (200.0, 700.0) and high - low < 500.0
    # the meter turns out to be fitted against the link: its history runs the other way, and
    # the band follows it
    [(f_low, f_high)] = [(lo_, hi_) for s, q, lo_, hi_, _ in rows if (s, q) == ("f10", "flow")]
    sim_lo, sim_hi = (float(v) for v in printed[("f10", "flow")].split()[1].split(".."))
    assert sim_lo >= -0.5 and sim_hi > 5.0  # a one-way link (idle at times), in its direction
    history = tmp_path / "history.csv"
    mid = -(sim_lo + sim_hi) / 2
    history.write_text(
        "sensor_id,quantity,ts,value\n"
        + "".join(f"F10,flow,2026-11-0{d}T0{h}:00:00+08:00,{mid}\n" for d in (1, 2) for h in (1, 5))
    )
    r = run_cityops(net1, "readings", "import", str(history))
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_cityops(net1, "sensors", "limits", "--from-model")
    assert r.returncode == 0, r.stderr
    assert "turned round f10 flow" in r.stderr
    [(b_low, b_high)] = [
        (lo_, hi_)
        for s, q, lo_, hi_, _ in _rows(net1.database_url, overrides)
        if (s, q) == ("f10", "flow")
    ]
    assert (b_low, b_high) == pytest.approx((-f_high, -f_low))


def test_a_model_drawing_a_vacuum_gives_no_pressure_band() -> None:
    import pandas as pd

    from cityops.shell.sensors_cli import derive_model_limits

    wn = wntr.network.WaterNetworkModel(str(NET1))
    pressure = pd.DataFrame({"22": [30.0, -5.0], "23": [30.0, 40.0]})  # [m]
    flow = pd.DataFrame({"10": [0.01, 0.02]})  # [m³/s]
    limits, skipped, flipped = derive_model_limits(
        pressure,
        flow,
        wn,
        [("p22", "water_pressure", "22"), ("p23", "water_pressure", "23")],
        0.25,
    )
    assert [(x.sensor_id, x.quantity) for x in limits] == [("p23", "pressure")]
    assert limits[0].simulated == pytest.approx((30.0 * 9.80665, 40.0 * 9.80665))
    assert len(skipped) == 1 and skipped[0].startswith("p22 pressure") and "kPa" in skipped[0]
    assert flipped == []
