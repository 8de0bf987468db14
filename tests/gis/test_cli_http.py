"""The `gis` CLI sub-app and the planners' HTTP API, on the demo city."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyogrio
import pytest
import wntr
from flask.testing import FlaskClient
from typer.testing import CliRunner

from gis.cli import app
from gis.http import create_gis_app
from gis.ogc import close_pools
from tests.gis.conftest import square

NET1 = Path(wntr.__file__).parent / "library" / "networks" / "Net1.inp"


@pytest.fixture
def cli_env(gis_db: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CITYOPS_DATABASE_URL", gis_db)
    return gis_db


def test_cli_query_isolate_load_and_epanet(cli_env: str, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["query", "facilities", "--point", "104.0657,30.6598", "--nearest", "2"])
    assert r.exit_code == 0, r.output
    fc = json.loads(r.stdout)
    assert len(fc["features"]) == 2

    out = tmp_path / "old.csv"
    r = runner.invoke(
        app,
        [
            "query",
            "water_pipes",
            "--where",
            "install_year<1990",
            "--near",
            "facilities:500:kind=school",
            "--output",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert rows and all(int(x["install_year"]) < 1990 for x in rows)

    r = runner.invoke(app, ["query", "water_pipes", "--where", "colour=red"])
    assert r.exit_code == 2 and "no column" in r.output

    r = runner.invoke(app, ["isolate", "water", "WP000001", "--output", str(tmp_path / "iso.gpkg")])
    assert r.exit_code == 0, r.output
    assert "close" in r.output
    assert len(pyogrio.list_layers(tmp_path / "iso.gpkg")) >= 1

    bad = tmp_path / "broken.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [', encoding="utf-8")
    r = runner.invoke(app, ["load", str(bad), "--layer", "facilities"])
    assert r.exit_code == 2 and "cannot be read" in r.output

    r = runner.invoke(
        app, ["import-epanet", str(NET1), "--crs", "EPSG:4544", "--origin", "104.06,30.66"]
    )
    assert r.exit_code == 0, r.output
    assert "imported 11 nodes and 13 links" in r.output


@pytest.fixture
def api(cli_env: str, admin_token: str) -> Iterator[FlaskClient]:
    """A test client of ``cityops gis serve``'s app: the planners' API and OGC API, sending an
    admin's API token with every request."""
    app_ = create_gis_app(cli_env, base_url="http://testserver")
    client = app_.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {admin_token}"
    try:
        yield client
    finally:
        close_pools()


def test_http_layers_zoom_state_and_ogc(api: FlaskClient) -> None:
    layers = api.get("/api/layers").get_json()
    assert {m["name"] for m in layers} >= {"water_pipes", "facilities", "grid_cells"}
    assert all("licence" in m and "source" in m for m in layers)
    r = api.get("/api/layers/water_pipes", query_string={"bbox": "1,2,3"})
    assert r.status_code == 400
    r = api.get("/api/layers/water_pipes", query_string={"zoom": 9})
    assert r.get_json()["zoom_band"] == "city"
    r = api.get("/api/state", query_string={"by": "district"})
    assert len(r.get_json()["features"]) == 20
    r = api.get("/ogc/collections")
    assert r.status_code == 200


def test_http_planner_questions(api: FlaskClient) -> None:
    r = api.get(
        "/api/query",
        query_string={"layer": "facilities", "point": "104.0657,30.6598", "radius_m": 2000},
    )
    assert r.status_code == 200
    assert all(f["properties"]["distance_m"] <= 2000 for f in r.get_json()["features"])

    csv_nearest = {
        "layer": "facilities",
        "nearest": 3,
        "point": "104.0657,30.6598",
        "format": "csv",
    }
    r = api.get("/api/query", query_string=csv_nearest)
    assert r.status_code == 200 and r.content_type.startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert len(rows) == 3  # and the export's watermark column on each row
    assert all(row["cityops_export"].startswith("by=gis-admin;") for row in rows)

    r = api.get("/api/query", query_string={"layer": "facilities", "radius_m": 10})
    assert r.status_code == 400 and "point or a feature" in r.get_json()["error"]

    for bad in (
        '{"type": "Polygon", "coordinates": [[1, 2]]}',
        "{not json",
        '{"type": "Point", "coordinates": [104, 30]}',
    ):
        r = api.get("/api/query", query_string={"layer": "facilities", "polygon": bad})
        assert r.status_code == 400, bad
    square_1km = square((104.0657, 30.6598), 0.01)
    r = api.post("/api/query?layer=water_pipes", json={"polygon": square_1km})
    assert r.status_code == 200 and r.get_json()["features"]


def test_http_isolation_trace_and_leak(api: FlaskClient) -> None:
    r = api.get("/api/isolation/water/WP000001")
    assert r.status_code == 200 and r.get_json()["isolation"]["valves_to_close"]
    r = api.get("/api/isolation/water/nope")
    assert r.status_code == 400
    r = api.get("/api/isolation/sewage/WP000001")
    assert r.status_code == 404

    r = api.get("/api/trace/power/PL000001", query_string={"direction": "downstream"})
    assert r.status_code == 200 and r.get_json()["trace"]["links"] > 0

    r = api.get(
        "/api/leak",
        query_string={"point": "104.0657,30.6598", "radius_m": 300, "format": "gpkg"},
    )
    assert r.status_code == 200 and r.data[:16] == b"SQLite format 3\x00"


def test_a_planned_shutdown_by_http_and_cli(api: FlaskClient, cli_env: str) -> None:
    """Close the valves an isolation names, as planned works: the same places lose supply; the
    CLI records it in the works calendar, covering those valves. Bad devices are refused."""
    from cityops.shell.cli import app as cityops_app

    iso = api.get("/api/isolation/water/WP000001").get_json()["isolation"]
    valves = iso["valves_to_close"]
    r = api.get("/api/shutdown/water", query_string={"devices": ",".join(valves), "hours": 4})
    assert r.status_code == 200, r.get_json()
    fc = r.get_json()
    sd = fc["shutdown"]
    assert set(sd["nodes_without_supply"]) == set(iso["nodes_without_supply"])
    assert sd["customers_without_supply"] == iso["customers_without_supply"] > 0
    assert sd["customer_hours"] == round(4 * sd["customers_without_supply"], 1)
    roles = {(f["properties"]["role"], f["id"]) for f in fc["features"]}
    assert {("device_to_close", v) for v in valves} <= roles
    for query, status, words in (
        ({"devices": "WP000001"}, 400, "not a valve"),
        ({"devices": "WV999999"}, 400, "no 'WV999999'"),
        ({}, 400, "name the valves"),
        ({"devices": valves[0], "hours": "-1"}, 400, "hours"),
    ):
        r = api.get("/api/shutdown/water", query_string=query)
        assert r.status_code == status and words in r.get_json()["error"], (query, r.get_json())
    assert api.get("/api/shutdown/sewage?devices=WV000001").status_code == 404

    runner = CliRunner()
    args = ["works", "shutdown", "--device", ",".join(valves), "--until", "4h"]
    r = runner.invoke(cityops_app, [*args, "--lang", "en"])
    assert r.exit_code == 0, r.output
    assert f"{sd['customers_without_supply']} customers" in r.output
    r = runner.invoke(cityops_app, [*args, "--record", "--by", "planner-li", "--json"])
    assert r.exit_code == 0, r.output
    recorded = json.loads(r.stdout)
    assert recorded["work_id"] and recorded["hours"] == 4
    r = runner.invoke(cityops_app, ["works", "list", "--json"])
    work = next(w for w in json.loads(r.stdout) if w["work_id"] == recorded["work_id"])
    assert work["kind"] == "valve_operation" and work["asset_ids"] == sorted(valves)
    r = runner.invoke(cityops_app, ["works", "shutdown", "--device", "WP000001", "--until", "1h"])
    assert r.exit_code == 2 and "not a valve" in r.output
    r = runner.invoke(cityops_app, [*args, "--record"])  # who records it is required
    assert r.exit_code == 2 and "who recorded it" in r.output
    assert len(json.loads(runner.invoke(cityops_app, ["works", "list", "--json"]).stdout)) == 1


def test_cli_classify_and_load_with_a_class(cli_env: str, tmp_path: Path) -> None:
    import psycopg

    runner = CliRunner()
    r = runner.invoke(app, ["classify", "water_pipes", "restricted"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["classify", "water_pipes", "secret"])
    assert r.exit_code == 2
    r = runner.invoke(app, ["classify", "no_layer", "public"])
    assert r.exit_code == 2 and "no layer" in r.output
    src = tmp_path / "f.geojson"
    src.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [104.06, 30.66]},
                        "properties": {"facility_id": "X1", "kind": "school", "name_zh": "学校"},
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    r = runner.invoke(
        app, ["load", str(src), "--layer", "facilities", "--classification", "internal"]
    )
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["layers"])
    assert r.exit_code == 0 and "class" in r.stdout
    with psycopg.connect(cli_env) as conn:
        classes = dict(conn.execute("SELECT name, classification FROM gis_layers").fetchall())
    assert classes["water_pipes"] == "restricted" and classes["facilities"] == "internal"
    assert classes["districts"] == "public" and classes["gas_pipes"] == "internal"
