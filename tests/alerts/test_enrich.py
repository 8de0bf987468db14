"""Incidents put in their network (alerts/enrich.py) on the GIS part's demo city in PostGIS."""

from __future__ import annotations

import threading
import time

import psycopg

from alerts.dispatch import run_enricher
from alerts.engine import AlertChange, Evaluation
from alerts.enrich import ENRICHER_LOCK, enrich_incidents, take_enricher_role
from alerts.stores.batch import write_evaluation
from alerts.stores.incidents import read_open_incidents
from gis.analysis import NetworkCache
from tests.gis.conftest import gis_db, gis_template  # noqa: F401 (fixtures)
from tests.waiting import wait_for

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
    write_evaluation(conn, Evaluation((ch,), {}))


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
        listed = {i.utility: i for i in read_open_incidents(conn)}
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


def test_an_incident_whose_enrichment_raises_does_not_hold_up_the_others(db_url: str) -> None:
    """Whatever one incident's analysis raises, or a result that cannot be stored, is recorded
    as that incident's error (once: it is not retried until the incident grows); the incidents
    after it are enriched in the same round."""
    now_us = time.time_ns() // 1000
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(3):  # 10 km apart: three incidents, in this order
            _sensor_and_alert(
                conn,
                f"wp-odd-{i}",
                "water",
                "water_pressure",
                "pressure",
                "threshold_low",
                104.0 + 0.1 * i,
                30.66,
                now_us,
            )
        calls: list[float] = []

        def analysis(
            conn: psycopg.Connection,
            utility: str,
            lon: float,
            lat: float,
            radius_m: float,
            cache: object,
        ) -> tuple[str | None, dict[str, object]]:
            calls.append(lon)
            if lon < 104.05:
                raise ZeroDivisionError("a bug in the analysis")
            if lon < 104.15:
                return "p-1", {"valves_to_close": {"not", "json"}}  # a set: not storable
            return "p-2", {"valves_to_close": ["v-1"]}

        assert enrich_incidents(conn, compute=analysis) == 3
        assert enrich_incidents(conn, compute=analysis) == 0  # not retried for ever
        rows = conn.execute(
            "SELECT likely_location, affected, enriched_at IS NOT NULL FROM incidents"
            " ORDER BY ST_X(centre)"
        ).fetchall()
    assert len(calls) == 3
    assert rows[0] == (None, {"error": "ZeroDivisionError: a bug in the analysis"}, True)
    assert rows[1][0] is None and rows[1][1]["error"].startswith("TypeError") and rows[1][2]
    assert rows[2] == ("p-2", {"valves_to_close": ["v-1"]}, True)


def test_only_one_worker_holds_the_enricher_role(db_url: str) -> None:
    """Every engine worker runs the enricher loop; one advisory lock makes only one of them
    enrich, and another takes over when its connection goes."""
    with psycopg.connect(db_url, autocommit=True) as first:
        with psycopg.connect(db_url, autocommit=True) as second:
            assert take_enricher_role(first)
            assert not take_enricher_role(second)
            assert not take_enricher_role(second)
        with psycopg.connect(db_url, autocommit=True) as third:
            assert not take_enricher_role(third)
            first.close()  # the enricher's worker is gone
            # its backend lets go of the lock when it has finished exiting: a moment, under load
            wait_for(lambda: take_enricher_role(third), 10, what="the role to be released")


def test_of_two_enricher_loops_one_enriches(db_url: str) -> None:
    """Two workers' enricher loops (alerts.dispatch.run_enricher) on one database: the incident
    is enriched, and exactly one of the two sessions holds the enricher role."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        _sensor_and_alert(
            conn,
            "wp-two",
            "water",
            "water_pressure",
            "pressure",
            "threshold_low",
            104.06,
            30.66,
            time.time_ns() // 1000,
        )
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=run_enricher,
            args=(
                lambda name=name: psycopg.connect(db_url, autocommit=True, application_name=name),
                stop,
            ),
            kwargs={"interval_s": 0.05},
            daemon=True,
        )
        for name in ("enricher-a", "enricher-b")
    ]
    for t in threads:
        t.start()
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            wait_for(
                lambda: (
                    conn.execute("SELECT enriched_at IS NOT NULL FROM incidents").fetchone()
                    == (True,)
                ),
                15,
            )
            holders = conn.execute(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted",
                (ENRICHER_LOCK,),
            ).fetchall()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert len(holders) == 1 and holders[0][0] in ("enricher-a", "enricher-b")


def test_an_incident_that_ended_before_it_was_placed_is_placed_all_the_same(
    db_url: str,
) -> None:
    """A burst isolated within seconds of a replay (or while the enricher was down) is resolved
    before its first round: the record still says where it was. Open incidents go first."""
    now_us = time.time_ns() // 1000
    with psycopg.connect(db_url, autocommit=True) as conn:
        for sid in ("wp-ended", "wp-open"):
            _sensor_and_alert(
                conn, sid, "water", "water_pressure", "pressure", "threshold_low", 104.06,
                30.66 if sid == "wp-ended" else 30.70, now_us,
            )  # fmt: skip
        conn.execute(
            "UPDATE incidents SET state = 'resolved', resolved_at = now() WHERE incident_id ="
            " (SELECT incident_id FROM alerts WHERE sensor_id = 'wp-ended')"
        )
        seen: list[int] = []

        def compute(conn, utility, lon, lat, radius_m, cache):  # type: ignore[no-untyped-def]
            seen.append(round(lat * 100))
            return None, {"where": [lon, lat]}

        assert enrich_incidents(conn, limit=1, compute=compute) == 1
        assert enrich_incidents(conn, compute=compute) == 1
        assert enrich_incidents(conn, compute=compute) == 0  # once each
        rows = conn.execute(
            "SELECT state, affected->'where' IS NOT NULL FROM incidents ORDER BY incident_id"
        ).fetchall()
    assert seen == [3070, 3066]  # the open one first
    assert rows == [("resolved", True), ("open", True)]
