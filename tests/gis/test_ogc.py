"""OGC API - Features (pygeoapi on PostGIS) read by OWSLib as a client."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from owslib.ogcapi.features import Features
from werkzeug.serving import make_server

from cityops.shell.stack import free_port
from gis.ogc import build_pygeoapi_config, close_pools, create_ogc_app
from gis.postgis import fetch_layer_metadata
from tests.gis.conftest import bearer


@pytest.fixture
def auth(admin_token: str) -> dict[str, str]:
    """The header OWSLib and requests send: an admin's API token."""
    return bearer(admin_token)


@pytest.fixture
def ogc_url(gis_db: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with psycopg.connect(gis_db) as conn:
        meta = {m["name"]: m for m in fetch_layer_metadata(conn)}
    app = create_ogc_app(build_pygeoapi_config(gis_db, base_url=base, port=port, layer_meta=meta))
    server = make_server("127.0.0.1", port, app, threaded=True)
    t = threading.Thread(target=server.serve_forever, name="ogc-test", daemon=True)
    t.start()
    yield base
    server.shutdown()
    t.join(5)
    close_pools()


def test_owslib_lists_collections_and_pages_a_bbox(
    ogc_url: str, gis_db: str, auth: dict[str, str]
) -> None:
    w = Features(ogc_url, timeout=30, headers=auth)
    ids = {c["id"] for c in w.collections()["collections"]}
    assert {
        "districts",
        "water_pipes",
        "water_nodes",
        "gas_pipes",
        "power_lines",
        "facilities",
        "grid_cells",
        "sensors",
        "alert_locations",
    } <= ids
    desc = w.collection("water_pipes")
    assert "DEMO" in desc["description"]

    bbox = [104.03, 30.63, 104.08, 30.68]
    got = w.collection_items("water_pipes", bbox=bbox, limit=50)
    assert 0 < got["numberReturned"] <= 50
    with psycopg.connect(gis_db) as conn:
        expected = conn.execute(
            "SELECT count(*) FROM water_pipes WHERE geom && ST_MakeEnvelope(%s, %s, %s, %s, 4326)",
            bbox,
        ).fetchone()[0]
    assert got["numberMatched"] == expected
    for f in got["features"]:
        xs = [p[0] for p in f["geometry"]["coordinates"]]
        ys = [p[1] for p in f["geometry"]["coordinates"]]
        assert (
            min(xs) <= bbox[2] and max(xs) >= bbox[0] and min(ys) <= bbox[3] and max(ys) >= bbox[1]
        )

    # paging: two pages of 20 do not overlap and follow the id order
    p1 = w.collection_items("water_pipes", bbox=bbox, limit=20, offset=0)
    p2 = w.collection_items("water_pipes", bbox=bbox, limit=20, offset=20)
    a = [f["id"] for f in p1["features"]]
    b = [f["id"] for f in p2["features"]]
    assert not set(a) & set(b) and a == sorted(a) and a[-1] < b[0]


def test_owslib_filters_with_cql2_and_reads_items(
    ogc_url: str, gis_db: str, auth: dict[str, str]
) -> None:
    w = Features(ogc_url, timeout=30, headers=auth)
    with psycopg.connect(gis_db) as conn:
        old_cast_iron = conn.execute(
            "SELECT count(*) FROM water_pipes WHERE install_year < 1990 AND material = 'cast_iron'"
            " AND ST_Intersects(geom, ST_MakeEnvelope(104.03, 30.63, 104.08, 30.68, 4326))"
        ).fetchone()[0]
    # CQL2 text: attributes and a spatial predicate together
    cql = (
        "install_year < 1990 AND material = 'cast_iron' AND "
        "INTERSECTS(geometry, POLYGON((104.03 30.63, 104.08 30.63, 104.08 30.68, 104.03 30.68, 104.03 30.63)))"
    )
    filtered = w.collection_items("water_pipes", filter=cql, limit=1000)
    assert filtered["numberMatched"] == old_cast_iron > 0
    assert all(
        f["properties"]["install_year"] < 1990 and f["properties"]["material"] == "cast_iron"
        for f in filtered["features"]
    )
    schools = w.collection_items(
        "facilities", filter="kind = 'school' AND capacity > 1000", limit=100
    )
    assert schools["features"] and all(
        f["properties"]["kind"] == "school" and f["properties"]["capacity"] > 1000
        for f in schools["features"]
    )
    one = w.collection_item("facilities", schools["features"][0]["id"])
    assert one["id"] == schools["features"][0]["id"]
    # metric columns are not exposed; queryables list the attributes
    assert "geom_m" not in filtered["features"][0]["properties"]
    cells = w.collection_items("grid_cells", limit=5)
    assert all(":" in f["id"] for f in cells["features"])  # h3:adcode, unique per piece
    assert (
        w.collection_item("grid_cells", cells["features"][0]["id"])["id"]
        == cells["features"][0]["id"]
    )
    q = w.collection_queryables("water_pipes")
    assert "install_year" in q["properties"]


def test_datetime_and_bad_filter(ogc_url: str, gis_db: str, auth: dict[str, str]) -> None:
    with psycopg.connect(gis_db) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom, updated_at) VALUES"
            " ('old', 'water', 'water_pressure', 'old', ST_SetSRID(ST_MakePoint(104.06, 30.66), 4326),"
            " '2020-01-01T00:00:00Z'),"
            " ('new', 'water', 'water_pressure', 'new', ST_SetSRID(ST_MakePoint(104.07, 30.66), 4326),"
            " '2026-01-01T00:00:00Z')"
        )
    w = Features(ogc_url, timeout=30, headers=auth)
    got = w.collection_items("sensors", datetime_="2025-01-01T00:00:00Z/..")
    assert [f["id"] for f in got["features"]] == ["new"]
    import requests

    r = requests.get(
        f"{ogc_url}/collections/water_pipes/items",
        params={"filter": "no_such_column = 1"},
        timeout=10,
        headers=auth,
    )
    assert r.status_code == 400
    r = requests.get(
        f"{ogc_url}/collections/sensors/items",
        params={"datetime": "not-a-time"},
        timeout=10,
        headers=auth,
    )
    assert r.status_code == 400
    r = requests.get(
        f"{ogc_url}/collections/water_pipes/items",
        params={"datetime": "2020-01-01T00:00:00Z"},
        timeout=10,
        headers=auth,
    )
    assert r.status_code == 400  # no time field on pipes
    # CQL2-JSON in a POST body
    body = {
        "op": "and",
        "args": [
            {"op": "<", "args": [{"property": "install_year"}, 1990]},
            {"op": "=", "args": [{"property": "material"}, "cast_iron"]},
        ],
    }
    r = requests.post(
        f"{ogc_url}/collections/water_pipes/items",
        params={"limit": 5},
        json=body,
        headers={"Content-Type": "application/query-cql-json", **auth},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["numberMatched"] > 0 and all(
        f["properties"]["install_year"] < 1990 for f in got["features"]
    )
