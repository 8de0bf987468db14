"""Metered areas as data (issue 15 item 2): `cityops gis areas import | derive | list | show` on
the real database, Net3 imported through the EPANET import, sensors through the catalogue's
upsert; the alert engine's own read of the areas sees what was written."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
import typer
import wntr
from typer.testing import CliRunner

import alerts.api
from alerts.stores.catalogue import read_metered_areas
from cityops.shell.stack import LocalStack
from gis.areas import AreaError, derive_areas, parse_area_features
from gis.cli import register
from gis.epanet import import_epanet
from gis.network import Link, Network, Node
from gis.postgis import fetch_asset_positions, write_sensors
from sensors.catalogue import Sensor, Utility
from tests.conftest import run_cityops, stack_settings
from tests.gis.conftest import square

NET3 = Path(wntr.__file__).parent / "library" / "networks" / "Net3.inp"
ORIGIN = (104.06, 30.66)
# Net3: River feeds node 60 through pipe 60, Lake through pump 10; tanks 1, 2, 3 through pipes
# 40, 50, 20; pipe 238 (207 -> 206) is the only way into the part round tank 2
METERS = {"wf-60": "60", "wf-10": "10", "wf-40": "40", "wf-50": "50", "wf-20": "20"}


def _cli() -> typer.Typer:
    root, gis = typer.Typer(), typer.Typer()
    register(gis, alerts_api=alerts.api)
    root.add_typer(gis, name="gis")
    return root


def cityops(db: str, *args: str):
    r = CliRunner().invoke(_cli(), ["gis", "areas", *args], env={"CITYOPS_DATABASE_URL": db})
    return r


def _place(conn: psycopg.Connection, sensors: dict[str, tuple[str, str]]) -> None:
    """Sensors (id -> (type, asset id)) at their assets, through the catalogue's upsert."""
    where = fetch_asset_positions(conn, "water", [a for _, a in sensors.values()])
    rows = []
    for sid, (stype, asset) in sensors.items():
        lon, lat = where["link"].get(asset) or where["node"][asset]
        rows.append(Sensor(sid, Utility.WATER, stype, sid, lon, lat, asset_id=asset))
    write_sensors(conn, rows)


@pytest.fixture
def net3(gis_db: str, gis_conn: psycopg.Connection) -> str:
    import_epanet(gis_conn, NET3, crs="EPSG:4544", origin=ORIGIN)
    _place(
        gis_conn,
        {sid: ("water_flow", pipe) for sid, pipe in METERS.items()}
        | {"wf-238": ("water_flow", "238"), "wp-206": ("water_pressure", "206")}
        | {"wp-101": ("water_pressure", "101"), "wp-x": ("water_pressure", "123")},
    )
    return gis_db


def _areas(db: str) -> list[tuple]:
    with psycopg.connect(db) as conn:
        return conn.execute(
            "SELECT a.area_id, a.name, a.origin, ST_GeometryType(a.boundary),"
            " array_agg(m.sensor_id || ':' || m.sign || ':' || m.storage ORDER BY m.sensor_id)"
            " FROM metered_areas a JOIN metered_area_meters m USING (area_id)"
            " GROUP BY a.area_id ORDER BY a.area_id"
        ).fetchall()


# -- derive ---------------------------------------------------------------------------------------


def test_derive_on_net3_cuts_at_meters_with_signs_storage_members_and_polygons(net3: str) -> None:
    r = cityops(net3, "derive", "--prefix", "net3", "--name", "Net3 DMA {n}")
    assert r.exit_code == 0, r.output
    assert "derived 2 metered areas" in r.output
    rows = _areas(net3)
    assert rows == [
        (
            "net3-01",
            "Net3 DMA 1",
            "derived",
            "ST_MultiPolygon",
            # 238 runs 207 -> 206, out of the big part: its positive flow leaves it
            ["wf-10:1:false", "wf-20:1:true", "wf-238:-1:false", "wf-40:1:true", "wf-60:1:false"],
        ),
        ("net3-02", "Net3 DMA 2", "derived", "ST_MultiPolygon", ["wf-238:1:false", "wf-50:1:true"]),
    ]
    with psycopg.connect(net3) as conn:
        members = dict(
            conn.execute(
                "SELECT area_id, array_agg(sensor_id ORDER BY sensor_id) FROM metered_area_sensors"
                " GROUP BY area_id"
            ).fetchall()
        )
        # the small part's polygon holds its pressure sensor and not the big part's
        inside = conn.execute(
            "SELECT a.area_id, s.sensor_id FROM metered_areas a JOIN sensors s"
            " ON ST_Contains(a.boundary, s.geom) WHERE s.sensor_id IN ('wp-206', 'wp-101')"
            " ORDER BY 1, 2"
        ).fetchall()
    assert "wp-206" in members["net3-02"] and "wp-206" not in members["net3-01"]
    assert {"wp-101", "wp-x"} <= set(members["net3-01"])
    assert ("net3-02", "wp-206") in inside and ("net3-02", "wp-101") not in inside


def test_derive_dry_run_prints_and_writes_nothing(net3: str) -> None:
    r = cityops(net3, "derive", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "dma-01\t计量分区 1\tmeters: wf-10(+), wf-20(+, tank)" in r.output
    assert "dma-02" in r.output
    assert _areas(net3) == []


def test_derive_cuts_at_a_closed_valve_and_leaves_unmetered_sources_out(net3: str) -> None:
    with psycopg.connect(net3, autocommit=True) as conn:
        conn.execute("UPDATE sensors SET status = 'retired' WHERE sensor_id IN ('wf-238', 'wf-60')")
        conn.execute("UPDATE water_pipes SET status = 'closed' WHERE pipe_id = '238'")
    r = cityops(net3, "derive", "--min-links", "5")
    assert r.exit_code == 0, r.output
    # without the meter on pipe 60 the River's inflow is not measured: the big part is no area
    assert "fed from a source through an unmetered link" in r.output
    assert [(a[0], a[4]) for a in _areas(net3)] == [("dma-01", ["wf-50:1:true"])]


def test_rederive_replaces_derived_areas_and_keeps_declared_ones(net3: str) -> None:
    with psycopg.connect(net3, autocommit=True) as conn:
        alerts.api.write_metered_area(conn, "sim", "declared", "Declared", [("wf-60", 1)])
    assert cityops(net3, "derive").exit_code == 0
    with psycopg.connect(net3, autocommit=True) as conn:
        conn.execute("UPDATE sensors SET status = 'retired' WHERE sensor_id = 'wf-238'")
    r = cityops(net3, "derive")
    assert r.exit_code == 0, r.output
    assert "1 earlier derived areas removed" in r.output
    assert [(a[0], a[2]) for a in _areas(net3)] == [("declared", "api"), ("dma-01", "derived")]


def test_engine_reads_a_derived_area_as_a_balance_spec(net3: str) -> None:
    assert cityops(net3, "derive").exit_code == 0
    with psycopg.connect(net3) as conn:
        specs = read_metered_areas(conn)
    assert specs["dma-02"].meters == (("wf-238", 1), ("wf-50", 1))
    assert specs["dma-02"].storage == frozenset({"wf-50"})
    assert specs["dma-01"].storage == frozenset({"wf-20", "wf-40"})
    assert ("wf-238", -1) in specs["dma-01"].meters


def test_derive_without_flow_meters_fails_clearly(gis_db: str) -> None:
    r = cityops(gis_db, "derive")
    assert r.exit_code == 2
    assert "no flow meters on water pipes" in r.output


# -- import ---------------------------------------------------------------------------------------


def _fc(*features: dict) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def _poly(props: dict, centre=(104.06, 30.66)) -> dict:
    return {"type": "Feature", "geometry": square(centre, 0.005), "properties": props}


def _point(props: dict) -> dict:
    return {"type": "Feature", "geometry": {"type": "Point", "coordinates": [104.06, 30.66]},
            "properties": props}  # fmt: skip


def _write(tmp_path: Path, doc: dict, name: str = "areas.geojson") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc), encoding="utf-8")
    return p


GOOD = _fc(
    _poly({"area_id": "north", "name": "北区", "inlets": "wf-60,wf-10", "outlets": ["wf-238"]}),
    _poly({"area_id": "south", "name": "南区"}, centre=(104.07, 30.65)),
    _point({"area_id": "south", "sensor_id": "wf-238", "direction": "in"}),
    _point({"area_id": "south", "sensor_id": "wf-50", "direction": "in", "storage": True}),
)


def test_import_geojson_with_meter_points_then_reimport_replaces(net3: str, tmp_path: Path) -> None:
    r = cityops(net3, "import", str(_write(tmp_path, GOOD)))
    assert r.exit_code == 0, r.output
    assert _areas(net3) == [
        ("north", "北区", "import", "ST_MultiPolygon", ["wf-10:1:false", "wf-238:-1:false", "wf-60:1:false"]),
        ("south", "南区", "import", "ST_MultiPolygon", ["wf-238:1:false", "wf-50:1:true"]),
    ]  # fmt: skip
    again = _fc(_poly({"area_id": "whole", "name": "全网", "inlets": "wf-60 wf-10"}))
    r = cityops(net3, "import", str(_write(tmp_path, again, "b.geojson")))
    assert r.exit_code == 0, r.output
    assert "2 earlier imported areas removed" in r.output
    assert [a[0] for a in _areas(net3)] == ["whole"]


def test_import_geopackage_with_a_second_layer_of_meters(net3: str, tmp_path: Path) -> None:
    import geopandas as gpd

    polys = gpd.GeoDataFrame.from_features(GOOD["features"][:2], crs=4326)
    polys["inlets"] = polys["inlets"].astype(str).replace("nan", "")
    polys = polys.drop(columns=["outlets"])
    points = gpd.GeoDataFrame.from_features(GOOD["features"][2:], crs=4326)
    gpkg = tmp_path / "areas.gpkg"
    polys.to_crs(4544).to_file(gpkg, layer="areas", driver="GPKG")
    points.to_file(gpkg, layer="meters", driver="GPKG")
    r = cityops(net3, "import", str(gpkg), "--layer", "areas", "--meters-layer", "meters")
    assert r.exit_code == 0, r.output
    rows = _areas(net3)
    assert cityops(net3, "import", str(gpkg)).exit_code == 0  # a layer named meters is found
    assert _areas(net3) == rows
    assert [(a[0], a[4]) for a in rows] == [
        ("north", ["wf-10:1:false", "wf-60:1:false"]),
        ("south", ["wf-238:1:false", "wf-50:1:true"]),
    ]
    with psycopg.connect(net3) as conn:  # the 4544 polygons came back to the same place
        (x, y) = conn.execute(
            "SELECT ST_X(ST_Centroid(boundary)), ST_Y(ST_Centroid(boundary))"
            " FROM metered_areas WHERE area_id = 'north'"
        ).fetchone()  # type: ignore[misc]
    assert (x, y) == pytest.approx(ORIGIN, abs=1e-6)


BAD = {
    "unknown sensor": (
        _fc(_poly({"area_id": "a", "name": "A", "inlets": "wf-60,wf-nope"})),
        "unknown sensors: wf-nope",
    ),
    "not a flow meter": (
        _fc(_poly({"area_id": "a", "name": "A", "inlets": "wf-60,wp-206"})),
        "not water flow meters: wp-206",
    ),
    "bad id": (
        _fc(_poly({"area_id": "North Side", "name": "A", "inlets": "wf-60"})),
        "bad area id",
    ),
    "id twice": (
        _fc(
            _poly({"area_id": "a", "name": "A", "inlets": "wf-60"}),
            _poly({"area_id": "a", "name": "B", "inlets": "wf-10"}),
        ),
        "area id a appears twice",
    ),
    "id of a declared area": (
        _fc(_poly({"area_id": "declared", "name": "A", "inlets": "wf-60"})),
        "area ids already used by other areas: declared (api)",
    ),
    "no meter": (_fc(_poly({"area_id": "a", "name": "A"})), "area a has no inlet or outlet"),
    "in and out": (
        _fc(_poly({"area_id": "a", "name": "A", "inlets": "wf-60", "outlets": "wf-60"})),
        "both an inlet and an outlet",
    ),
    "point of no area": (
        _fc(
            _poly({"area_id": "a", "name": "A", "inlets": "wf-60"}),
            _point({"area_id": "b", "sensor_id": "wf-10", "direction": "in"}),
        ),
        "names area b, which has no polygon",
    ),
    "bad direction": (
        _fc(
            _poly({"area_id": "a", "name": "A", "inlets": "wf-60"}),
            _point({"area_id": "a", "sensor_id": "wf-10", "direction": "sideways"}),
        ),
        "is not in or out",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_import_refuses_bad_files_and_stores_nothing(net3: str, tmp_path: Path, case: str) -> None:
    assert cityops(net3, "import", str(_write(tmp_path, GOOD))).exit_code == 0
    with psycopg.connect(net3, autocommit=True) as conn:  # a simulator's area
        alerts.api.write_metered_area(conn, "sim", "declared", "Declared", [("wf-10", 1)])
    before = _areas(net3)
    doc, message = BAD[case]
    r = cityops(net3, "import", str(_write(tmp_path, doc, "bad.geojson")))
    assert r.exit_code == 2, r.output
    assert message in r.output
    assert _areas(net3) == before  # the earlier import is untouched


# -- list and show --------------------------------------------------------------------------------


def test_list_and_show_with_balance_state(net3: str, tmp_path: Path) -> None:
    assert cityops(net3, "import", str(_write(tmp_path, GOOD))).exit_code == 0
    with psycopg.connect(net3, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
            " message_zh, message_en) VALUES ('wf-238', 'water', 'flow', 'night_flow_rise',"
            " 'major', now(), 4.0, '夜间流量上升', 'night flow rise')"
        )
    r = cityops(net3, "list", "--json")
    assert r.exit_code == 0, r.output
    rows = {a["area_id"]: a for a in json.loads(r.stdout)}
    assert rows["south"]["alerting"] == ["night_flow_rise"]
    assert rows["north"]["alerting"] == ["night_flow_rise"]  # wf-238 meters both
    assert rows["south"]["meters"] == [
        {"sensor_id": "wf-238", "sign": 1, "storage": False},
        {"sensor_id": "wf-50", "sign": 1, "storage": True},
    ]
    assert rows["south"]["area_km2"] == pytest.approx(1.065, rel=0.02)  # 0.01 x 0.01 deg at 30.65 N
    table = cityops(net3, "list")
    assert table.exit_code == 0
    assert (
        "南区" in table.stdout and "-wf-238" in table.stdout and "night_flow_rise" in table.stdout
    )
    shown = cityops(net3, "show", "south")
    assert shown.exit_code == 0, shown.output
    f = json.loads(shown.stdout)["features"][0]
    assert f["geometry"]["type"] == "MultiPolygon"
    assert f["properties"]["members"] == ["wf-238", "wf-50"]
    # a file written by show is read back by import as the same area
    gpkg = tmp_path / "south.gpkg"
    assert cityops(net3, "show", "south", "--output", str(gpkg)).exit_code == 0
    with psycopg.connect(net3, autocommit=True) as conn:
        conn.execute("DELETE FROM metered_areas")
    r = cityops(net3, "import", str(gpkg))
    assert r.exit_code == 0, r.output
    assert [(a[0], a[4]) for a in _areas(net3)] == [("south", ["wf-238:1:false", "wf-50:1:true"])]
    missing = cityops(net3, "show", "nowhere")
    assert missing.exit_code == 2 and "no metered area 'nowhere'" in missing.output


# -- pure -----------------------------------------------------------------------------------------


def test_derive_pure_signs_follow_link_direction_and_tanks_are_storage() -> None:
    net = Network.build(
        "water",
        [Node("r", "reservoir"), Node("t", "tank"), *(Node(n, "junction") for n in "abcd")],
        [
            Link("in", "r", "a"),
            Link("ab", "a", "b"),
            Link("bc", "c", "b"),  # c -> b: positive flow enters the a-b part, leaves c-d
            Link("cd", "c", "d"),
            Link("td", "d", "t"),  # into the tank: positive flow leaves c-d
        ],
    )
    areas, skipped = derive_areas(net, {"m-in": "in", "m-bc": "bc", "m-t": "td"})
    assert skipped == []
    got = {a.area_id: [(m.sensor_id, m.sign, m.storage) for m in a.meters] for a in areas}
    assert got == {
        "dma-01": [("m-bc", 1, False), ("m-in", 1, False)],
        "dma-02": [("m-bc", -1, False), ("m-t", -1, True)],
    }
    with pytest.raises(AreaError, match="links the network does not have: m-x"):
        derive_areas(net, {"m-x": "nope"})


def test_parse_refuses_a_line_as_an_area() -> None:
    line = {"type": "LineString", "coordinates": [[104.0, 30.0], [104.1, 30.1]]}
    with pytest.raises(AreaError, match="must be a polygon"):
        parse_area_features(
            [{"geometry": line, "properties": {"area_id": "a", "name": "A", "inlets": "x"}}]
        )


def test_engine_raises_a_burst_on_a_derived_area(net3: str) -> None:
    """End to end: derive, then the engine built as the service builds it (alerts/service.py
    reads metered_areas) learns the small area's supply for a day and raises water_burst when
    the inflow through pipe 238 jumps by 60 L/s."""
    import numpy as np

    from alerts.engine import Engine
    from alerts.stores import catalogue
    from sensors.payload import Reading
    from tests.alerts.test_balance import MIN, T0, usual

    assert cityops(net3, "derive").exit_code == 0
    with psycopg.connect(net3) as conn:
        eng = Engine(catalogue.read_sensors(conn), None, catalogue.read_metered_areas(conn))
    raised = []
    for m in range(0, 2 * 1440, 5):
        t = T0 + m * MIN
        inflow = usual(t)[1] / 4 + (60.0 if m >= 1440 + 600 else 0.0)
        noise = float(np.random.default_rng([7, m]).normal(0, 0.005))
        ev = eng.evaluate(
            [Reading("wf-238", "flow", t, inflow * (1 + noise), None),
             Reading("wf-50", "flow", t, 2.0, None)]
        )  # fmt: skip
        eng.commit(ev)
        raised += [(c.sensor_id, c.kind, m) for c in ev.changes if c.event == "raised"]
    bursts = [r for r in raised if r[1] == "water_burst"]
    # on the area's first meter, within two 5-minute points of the jump; nothing before it
    assert bursts and bursts[0][0] == "wf-238" and 1440 + 600 <= bursts[0][2] <= 1440 + 610
    assert [r for r in raised if r[2] < 1440 + 600] == []


def test_the_cityops_command_derives_and_lists_areas(net3: str, stack: LocalStack) -> None:
    """The user's path: the installed `cityops` command (the shell hands the gis part its
    metered-area store), not typer's test runner."""
    settings = stack_settings(stack, net3)
    derived = run_cityops(settings, "gis", "areas", "derive")
    assert derived.returncode == 0, derived.stderr
    listed = run_cityops(settings, "gis", "areas", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    ids = sorted(a["area_id"] for a in json.loads(listed.stdout))
    assert ids == sorted(r[0] for r in _areas(net3)) and len(ids) == 2
