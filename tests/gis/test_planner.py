"""Planners' questions on the demo city: spatial, attribute and alert-history filters, distances
in EPSG:4544, valve isolation, traces, gas-leak areas, multi-scale output and exports."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pyogrio
import pytest

from gis.analysis import NetworkCache, fetch_isolation, fetch_leak_area, fetch_trace
from gis.export import csv_safe, to_csv, write_gpkg
from gis.filters import (
    AlertHistory,
    NearLayer,
    PlannerQuery,
    QueryError,
    build_query,
    parse_filter,
)
from gis.layers import METRIC_SRID
from gis.multiscale import fetch_layer_for_zoom, fetch_sensor_state
from gis.planner import fetch_planner_query
from tests.gis.conftest import square

TIANFU = (104.0657, 30.6598)
EAST_STATION = (104.1410, 30.6302)


def _haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    r = 6_371_008.8  # mean Earth radius [m]
    p1, p2 = math.radians(a[1]), math.radians(b[1])
    dp, dl = p2 - p1, math.radians(b[0] - a[0])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(h))


def _distance_m(conn: psycopg.Connection, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Distance [m] between two lon/lat points, measured as the planner measures: EPSG:4544."""
    row = conn.execute(
        "SELECT ST_Distance(ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s),"
        " ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s))",
        (a[0], a[1], METRIC_SRID, b[0], b[1], METRIC_SRID),
    ).fetchone()
    return float(row[0])


def _geometry_size(fc: dict) -> int:
    """Bytes of the GeoJSON geometry (to check simplification helps)."""
    return sum(len(json.dumps(f["geometry"])) for f in fc["features"] if f.get("geometry"))


def test_distance_in_4544_matches_hand_calculation(gis_conn: psycopg.Connection) -> None:
    d = _distance_m(gis_conn, TIANFU, EAST_STATION)
    hand = _haversine_m(TIANFU, EAST_STATION)
    assert 7_000 < hand < 9_000
    assert abs(d - hand) / hand < 0.005
    # and through a planner question: facilities within that distance include only nearer ones
    fc = fetch_planner_query(
        gis_conn, PlannerQuery("facilities", point=TIANFU, radius_m=1500.0, limit=1000)
    )
    assert fc["features"]
    for f in fc["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert f["properties"]["distance_m"] <= 1500.0
        assert abs(f["properties"]["distance_m"] - _haversine_m(TIANFU, (lon, lat))) < 0.005 * 1500


def test_within_district_polygon_and_nearest(gis_conn: psycopg.Connection) -> None:
    in_jinjiang = fetch_planner_query(
        gis_conn,
        PlannerQuery(
            "water_nodes", district=510104, filters=(parse_filter("water_nodes", "kind=valve"),)
        ),
    )
    assert in_jinjiang["features"]
    assert all(f["properties"]["kind"] == "valve" for f in in_jinjiang["features"])
    assert all(f["properties"]["district_adcode"] == 510104 for f in in_jinjiang["features"])
    poly = fetch_planner_query(gis_conn, PlannerQuery("water_pipes", polygon=square(TIANFU, 0.01)))
    assert poly["features"]
    schools = (parse_filter("facilities", "kind=school"),)
    nearest = fetch_planner_query(
        gis_conn, PlannerQuery("facilities", point=TIANFU, nearest=3, filters=schools)
    )
    d = [f["properties"]["distance_m"] for f in nearest["features"]]
    assert len(d) == 3 and d == sorted(d)
    everyone = fetch_planner_query(
        gis_conn, PlannerQuery("facilities", point=TIANFU, radius_m=1e6, filters=schools)
    )
    assert d[0] == pytest.approx(min(f["properties"]["distance_m"] for f in everyone["features"]))


def test_old_mains_near_schools_with_repeated_low_pressure(gis_conn: psycopg.Connection) -> None:
    """Mains laid before 1990 within 500 m of a school with more than 3 low-pressure alerts in
    the last year."""
    q = PlannerQuery(
        "water_pipes",
        filters=(parse_filter("water_pipes", "install_year<1990"),),
        near=(NearLayer("facilities", 500.0, (parse_filter("facilities", "kind=school"),)),),
    )
    candidates = fetch_planner_query(gis_conn, q)["features"]
    assert len(candidates) >= 2
    hot, warm = candidates[0]["properties"], candidates[1]["properties"]
    now = datetime.now(UTC)
    for sid, node, n_alerts in (("wp-hot", hot["to_node"], 4), ("wp-warm", warm["from_node"], 3)):
        gis_conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, asset_id, geom)"
            " SELECT %s, 'water', 'water_pressure', %s, node_id, geom FROM water_nodes WHERE node_id = %s",
            (sid, sid, node),
        )
        for k in range(n_alerts):
            gis_conn.execute(
                "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state, raised_at,"
                " cleared_at, value, message_zh, message_en) VALUES (%s, 'water', 'pressure',"
                " 'threshold_low', 'major', 'closed', %s, %s, 150, '低压', 'low')",
                (
                    sid,
                    now - timedelta(days=30 * (k + 1)),
                    now - timedelta(days=30 * (k + 1), hours=-1),
                ),
            )
    # an old alert (more than a year ago) does not count
    gis_conn.execute(
        "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, state, raised_at,"
        " cleared_at, value, message_zh, message_en) VALUES ('wp-warm', 'water', 'pressure',"
        " 'threshold_low', 'major', 'closed', %s, %s, 150, '低压', 'low')",
        (now - timedelta(days=400), now - timedelta(days=399)),
    )
    full = PlannerQuery(q.layer, filters=q.filters, near=q.near, alerts=AlertHistory(more_than=3))
    got = fetch_planner_query(gis_conn, full)["features"]
    assert [f["id"] for f in got] == [hot["pipe_id"]]
    assert got[0]["properties"]["alert_count"] == 4
    assert got[0]["properties"]["install_year"] < 1990
    # sensors matched by distance instead: every old main within 30 m of the hot sensor counts
    by_distance = PlannerQuery(
        q.layer, filters=q.filters, near=q.near, alerts=AlertHistory(more_than=3, radius_m=30.0)
    )
    near_hot = fetch_planner_query(gis_conn, by_distance)["features"]
    assert hot["pipe_id"] in {f["id"] for f in near_hot}
    assert all(f["properties"]["alert_count"] == 4 for f in near_hot)
    touching = {
        r[0]
        for r in gis_conn.execute(
            "SELECT p.pipe_id FROM water_pipes p, sensors s WHERE s.sensor_id = 'wp-hot'"
            " AND ST_DWithin(p.geom_m, ST_Transform(s.geom, 4544), 30) AND p.install_year < 1990"
        )
    }
    assert {f["id"] for f in near_hot} <= touching


def test_unknown_reference_feature_is_an_error(gis_conn: psycopg.Connection) -> None:
    with pytest.raises(QueryError, match="no feature"):
        fetch_planner_query(
            gis_conn, PlannerQuery("water_pipes", feature=("facilities", "nope"), radius_m=100.0)
        )


def test_bad_questions_are_refused() -> None:
    with pytest.raises(QueryError):
        parse_filter("water_pipes", "no_such_field=1")
    with pytest.raises(QueryError):
        parse_filter("water_pipes", "install_year<old")
    with pytest.raises(QueryError):
        PlannerQuery("facilities", radius_m=10).check()
    with pytest.raises(KeyError):
        PlannerQuery("nope").check()


def test_valve_isolation_on_the_demo_network(gis_conn: psycopg.Connection) -> None:
    # a pipe between a junction and a valve: isolation needs that valve and others round it
    pipe = gis_conn.execute(
        "SELECT pipe_id FROM water_pipes p JOIN water_nodes n ON n.node_id = p.to_node"
        " WHERE n.kind = 'valve' ORDER BY pipe_id LIMIT 1"
    ).fetchone()[0]
    fc = fetch_isolation(gis_conn, "water", pipe, cache=NetworkCache())
    iso = fc["isolation"]
    assert iso["valves_to_close"]
    assert pipe in iso["segment_links"]
    roles = {f["properties"]["role"] for f in fc["features"]}
    assert {"valve_to_close", "segment"} <= roles
    kinds = gis_conn.execute(
        "SELECT DISTINCT kind FROM water_nodes WHERE node_id = ANY(%s)", (iso["valves_to_close"],)
    ).fetchall()
    assert kinds == [("valve",)]
    assert iso["population_without_supply"] == round(iso["customers_without_supply"] * 2.62)
    # the main from the treatment works: closing it leaves the tank feeding the grid
    trunk = gis_conn.execute(
        "SELECT pipe_id FROM water_pipes WHERE from_node = 'WR001'"
    ).fetchone()[0]
    iso2 = fetch_isolation(gis_conn, "water", trunk, with_geometry=False)["isolation"]
    assert iso2["customers_without_supply"] < 1000


def test_trace_on_the_demo_feeders(gis_conn: psycopg.Connection) -> None:
    first = gis_conn.execute(
        "SELECT line_id, to_node FROM power_lines WHERE from_node = 'PS001' ORDER BY line_id LIMIT 1"
    ).fetchone()
    down = fetch_trace(gis_conn, "power", first[0], "downstream")
    up = fetch_trace(gis_conn, "power", first[1], "upstream")
    assert down["trace"]["customers"] > 0
    assert down["trace"]["links"] > 5
    assert up["trace"]["nodes"] == 2  # the junction and its substation
    feeder = gis_conn.execute(
        "SELECT feeder_id FROM power_lines WHERE line_id = %s", (first[0],)
    ).fetchone()[0]
    feeder_lines = {
        r[0]
        for r in gis_conn.execute("SELECT line_id FROM power_lines WHERE feeder_id = %s", (feeder,))
    }
    traced = {f["id"] for f in down["features"] if f["properties"].get("line_id")}
    # downstream of the first line is the whole radial feeder, stopping at its normally-open tie
    assert traced == feeder_lines | {
        r[0]
        for r in gis_conn.execute(
            "SELECT line_id FROM power_lines l JOIN power_nodes n"
            " ON n.node_id IN (l.from_node, l.to_node) AND n.normally_open"
            " JOIN power_nodes m ON m.node_id IN (l.from_node, l.to_node) AND m.feeder_id = %s",
            (feeder,),
        )
    }


def test_gas_leak_area_has_facilities_and_population(gis_conn: psycopg.Connection) -> None:
    school = gis_conn.execute(
        "SELECT facility_id, ST_X(geom), ST_Y(geom) FROM facilities WHERE kind = 'school' ORDER BY 1 LIMIT 1"
    ).fetchone()
    fc = fetch_leak_area(gis_conn, point=(school[1], school[2]), radius_m=300.0)
    leak = fc["leak"]
    assert school[0] in leak["facilities"]
    assert leak["area_m2"] == pytest.approx(math.pi * 300**2, rel=0.01)
    assert leak["population"] > 0
    pipe = gis_conn.execute("SELECT pipe_id FROM gas_pipes ORDER BY pipe_id LIMIT 1").fetchone()[0]
    along = fetch_leak_area(gis_conn, pipe_id=pipe, radius_m=200.0)
    assert along["leak"]["area_m2"] > math.pi * 200**2
    iso = along["leak"]["isolation"]
    assert iso["link_id"] == pipe and pipe in iso["segment_links"]
    assert iso["valves_to_close"] or iso["sources_to_shut"]


def test_zoom_bands_simplify_and_thin(gis_conn: psycopg.Connection) -> None:
    far = fetch_layer_for_zoom(gis_conn, "districts", 7)
    near = fetch_layer_for_zoom(gis_conn, "districts", 15)
    assert len(far["features"]) == len(near["features"]) == 20
    assert _geometry_size(far) < _geometry_size(near)
    pipes_far = fetch_layer_for_zoom(gis_conn, "water_pipes", 9)
    pipes_near = fetch_layer_for_zoom(gis_conn, "water_pipes", 15, bbox=(104.0, 30.6, 104.2, 30.8))
    assert 0 < len(pipes_far["features"]) < len(pipes_near["features"])
    assert all(f["properties"]["diameter_mm"] >= 500 for f in pipes_far["features"])


def test_sensor_state_per_district_and_cell(gis_conn: psycopg.Connection) -> None:
    gis_conn.execute(
        "INSERT INTO sensors (sensor_id, utility, sensor_type, name, district_adcode, geom) VALUES"
        " ('s1', 'water', 'water_pressure', 's1', 510104, ST_SetSRID(ST_MakePoint(104.09, 30.64), 4326)),"
        " ('s2', 'gas', 'gas_pressure', 's2', 510104, ST_SetSRID(ST_MakePoint(104.091, 30.641), 4326))"
    )
    gis_conn.execute("INSERT INTO sensor_latest VALUES ('s1', 'pressure', now(), 300, 1, now())")
    gis_conn.execute(
        "INSERT INTO alerts (sensor_id, utility, quantity, kind, severity, raised_at, value,"
        " message_zh, message_en) VALUES ('s2', 'gas', 'pressure', 'threshold_low', 'critical',"
        " now(), 1, 'x', 'x')"
    )
    by_d = {f["id"]: f["properties"] for f in fetch_sensor_state(gis_conn)["features"]}
    assert len(by_d) == 20
    j = by_d[510104]
    assert (j["sensors"], j["stale"], j["alerting_sensors"], j["worst_severity"]) == (
        2,
        1,
        1,
        "critical",
    )
    assert by_d[510105]["sensors"] == 0
    cells = fetch_sensor_state(gis_conn, by="grid", resolution=8)["features"]
    assert sum(c["properties"]["sensors"] for c in cells) == 2


def test_exports_geojson_csv_gpkg(gis_conn: psycopg.Connection, tmp_path: Path) -> None:
    fc = fetch_planner_query(gis_conn, PlannerQuery("facilities", point=TIANFU, nearest=5))
    fc["features"][0]["properties"]["name_zh"] = '=HYPERLINK("http://evil")'
    text = to_csv(fc)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 5
    assert rows[0]["name_zh"].startswith("'=")
    assert rows[1]["wkt"].startswith("POINT")
    assert csv_safe("-1") == "'-1" and csv_safe(5) == 5 and csv_safe("ok") == "ok"
    path = write_gpkg(fc, tmp_path / "answer.gpkg")
    back = pyogrio.read_dataframe(path)
    assert len(back) == 5 and back.crs.to_epsg() == 4326
    json.dumps(fc)  # serialisable


def test_power_line_isolation_opens_breaker_and_switch(gis_conn: psycopg.Connection) -> None:
    """The first line of a radial feeder: open the feeder breaker at the substation and the
    first sectionalising switch; the whole feeder is dark (its tie switches are open)."""
    first = gis_conn.execute(
        "SELECT line_id, feeder_id FROM power_lines WHERE from_node = 'PS001' ORDER BY line_id LIMIT 1"
    ).fetchone()
    iso = fetch_isolation(gis_conn, "power", first[0], with_geometry=False)["isolation"]
    assert iso["sources_to_shut"] == ["PS001"]
    assert len(iso["valves_to_close"]) == 1
    kind = gis_conn.execute(
        "SELECT kind, feeder_id FROM power_nodes WHERE node_id = %s", (iso["valves_to_close"][0],)
    ).fetchone()
    assert kind == ("switch", first[1])
    feeder_customers = gis_conn.execute(
        "SELECT sum(customers) FROM power_nodes WHERE feeder_id = %s", (first[1],)
    ).fetchone()[0]
    assert iso["customers_without_supply"] == feeder_customers > 0


def test_power_restoration_through_the_feeder_tie(gis_conn: psycopg.Connection) -> None:
    line = gis_conn.execute(
        "SELECT line_id FROM power_lines WHERE from_node = 'PNF0101007' AND to_node = 'PNF0101008'"
    ).fetchone()[0]
    iso = fetch_isolation(gis_conn, "power", line, with_geometry=False)["isolation"]
    assert iso["valves_to_close"] == ["PNF0101006", "PNF0101012"]  # the two sectionalisers
    # the feeder's tail ends at two ties (to each neighbouring feeder): either restores it
    assert len(iso["restoration"]) == 2
    for r in iso["restoration"]:
        kind, normally_open = gis_conn.execute(
            "SELECT kind, normally_open FROM power_nodes WHERE node_id = %s", (r["device"],)
        ).fetchone()
        assert kind == "switch" and normally_open
        assert 0 < r["customers_restored"] < iso["customers_without_supply"]
    assert len({r["customers_restored"] for r in iso["restoration"]}) == 1


def test_a_district_by_its_name_returns_only_its_own_pipes(gis_conn: psycopg.Connection) -> None:
    """Planners say 锦江区 or Jinjiang, not 510104; a pipe belongs to the district its midpoint
    lies in (gis/postgis.py derives ``district_adcode`` so), not to every district it touches."""
    by_code = fetch_planner_query(gis_conn, PlannerQuery("water_pipes", district=510104))
    ids = sorted(f["id"] for f in by_code["features"])
    assert ids
    for name in ("锦江区", "锦江", "Jinjiang District", "jinjiang", "５１０１０４"):
        got = fetch_planner_query(gis_conn, build_query("water_pipes", district=name))
        assert sorted(f["id"] for f in got["features"]) == ids, name
    assert all(f["properties"]["district_adcode"] == 510104 for f in by_code["features"])
    # pipes that cross into Jinjiang from a neighbour stay with their own district
    crossing = {
        r[0]
        for r in gis_conn.execute(
            "SELECT p.pipe_id FROM water_pipes p, districts d WHERE d.adcode = 510104"
            " AND ST_Intersects(p.geom, d.geom) AND p.district_adcode <> 510104"
        )
    }
    assert crossing and not crossing & set(ids)
    with pytest.raises(QueryError, match=r"no district named '天府区'.*锦江区"):
        fetch_planner_query(gis_conn, build_query("water_pipes", district="天府区"))


def test_filters_typed_on_a_chinese_keyboard_are_read() -> None:
    assert parse_filter("water_pipes", "install_year＜１９９０") == parse_filter(
        "water_pipes", "install_year<1990"
    )
    assert parse_filter("facilities", "kind＝school") == parse_filter("facilities", "kind=school")
