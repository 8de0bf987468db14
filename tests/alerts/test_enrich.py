"""Incidents put in their network (alerts/enrich.py) on the GIS part's demo city in PostGIS."""

from __future__ import annotations

import time

import psycopg

from alerts import store
from alerts.engine import AlertChange, Evaluation
from alerts.enrich import enrich_incidents
from gis.analysis import NetworkCache
from tests.gis.conftest import gis_db, gis_template  # noqa: F401 (fixtures)

S = 1_000_000


def _midpoint(
    conn: psycopg.Connection, table: str, id_col: str, where: str = ""
) -> tuple[str, float, float]:
    row = conn.execute(
        f"SELECT {id_col}, ST_X(ST_LineInterpolatePoint(geom, 0.5)), ST_Y(ST_LineInterpolatePoint(geom, 0.5))"  # noqa: S608
        f" FROM {table} {where} ORDER BY {id_col} OFFSET 7 LIMIT 1"
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def _sensor_and_alert(
    conn: psycopg.Connection,
    sid: str,
    utility: str,
    stype: str,
    quantity: str,
    kind: str,
    lon: float,
    lat: float,
    ts_us: int,
) -> None:
    conn.execute(
        "INSERT INTO sensors (sensor_id, utility, sensor_type, name, geom)"
        " VALUES (%s, %s, %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
        (sid, utility, stype, sid, lon, lat),
    )
    ch = AlertChange("raised", sid, utility, quantity, kind, "major", 1.0, 2.0, ts_us, "z", "e")
    store.write_evaluation(conn, Evaluation((ch,), {}))


def test_water_and_gas_incidents_get_their_network_context(gis_db: str) -> None:  # noqa: F811
    now_us = time.time_ns() // 1000
    with psycopg.connect(gis_db, autocommit=True) as conn:
        pipe, plon, plat = _midpoint(conn, "water_pipes", "pipe_id", "WHERE link_kind = 'pipe'")
        _, glon, glat = _midpoint(conn, "gas_pipes", "pipe_id")
        _sensor_and_alert(
            conn,
            "wp-gis-1",
            "water",
            "water_pressure",
            "pressure",
            "threshold_low",
            plon,
            plat,
            now_us,
        )
        _sensor_and_alert(
            conn,
            "gd-gis-1",
            "gas",
            "gas_detector",
            "gas_concentration",
            "threshold_high",
            glon,
            glat,
            now_us,
        )
        cache = NetworkCache()
        assert enrich_incidents(conn, cache) == 2
        assert enrich_incidents(conn, cache) == 0  # nothing new
        rows = {
            r[0]: r[1:]
            for r in conn.execute("SELECT utility, likely_location, affected FROM incidents")
        }
        # the incident grows: its context is computed again
        _sensor_and_alert(
            conn,
            "wp-gis-2",
            "water",
            "water_pressure",
            "pressure",
            "threshold_low",
            plon + 0.0005,
            plat,
            now_us + 60 * S,
        )
        assert enrich_incidents(conn, cache) == 1
        listed = {i.utility: i for i in store.read_open_incidents(conn)}
    # the centre moved with the second sensor: the nearest pipe may be another one now
    assert listed["water"].likely_location and listed["water"].alert_count == 2
    assert listed["gas"].affected is not None and "population" in listed["gas"].affected
    location, water = rows["water"]
    assert location == pipe and water["link_distance_m"] < 1.0
    assert water["valves_to_close"] and "error" not in water
    assert water["customers_without_supply"] >= 0
    assert water["population_without_supply"] >= water["customers_without_supply"]
    gas_location, gas = rows["gas"]
    assert gas_location is None and "error" not in gas
    assert gas["radius_m"] == 150.0 and gas["population"] >= 0
    assert isinstance(gas["gas_valves_in_area"], list) and isinstance(gas["facilities"], list)


def test_a_city_without_network_layers_gets_an_error_once(db_url: str) -> None:
    now_us = time.time_ns() // 1000
    with psycopg.connect(db_url, autocommit=True) as conn:
        _sensor_and_alert(
            conn,
            "wp-nogis",
            "water",
            "water_pressure",
            "pressure",
            "threshold_low",
            104.06,
            30.66,
            now_us,
        )
        assert enrich_incidents(conn) == 1
        assert enrich_incidents(conn) == 0
        (affected,) = conn.execute("SELECT affected FROM incidents").fetchone()  # type: ignore[misc]
    assert "error" in affected
