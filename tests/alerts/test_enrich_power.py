"""Power incidents placed by the feeder topology through the real database (alerts/enrich_power.py,
alerts/stores/power_faults.py, gis/faults.py): mv_oberrhein as the power layers, placed and
named as `cityops evaluate` installs it (gis/pandapower_layers.py), bus and transformer monitors
registered as the simulator registers them (``sim:power:<row>``), voltages from pandapower's
solution before and after a line outage or an overload, and the incident raised by an alert."""

from __future__ import annotations

import copy
from datetime import timedelta

import numpy as np
import psycopg
import pytest

from alerts.engine import AlertChange, Evaluation
from alerts.enrich_power import METHOD_FAULT, METHOD_OVERLOAD, localise_power
from alerts.pending import PendingReadings
from alerts.stores.batch import write_evaluation
from alerts.stores.power_faults import read_power_observations, read_sensor_nodes
from gis.analysis import fetch_isolation
from gis.pandapower_layers import import_pandapower
from simulators import power as powermod
from simulators.geo import place
from tests.alerts.onset import fixed_hour_onset

ONSET = fixed_hour_onset()  # the models follow the clock: tests/alerts/onset.py
ANCHOR = (104.13, 30.68)  # scenarios/feeder_outage.yaml


@pytest.fixture(scope="module")
def grid():
    """(net, bus lon/lat, bus row by index) of mv_oberrhein placed as the simulator places it."""
    net = powermod.load_network("mv_oberrhein")
    lon, lat, _ = place(
        powermod.bus_xy(net), scale_m=1.0, anchor_lon=ANCHOR[0], anchor_lat=ANCHOR[1]
    )
    return net, np.column_stack([lon, lat]), {int(b): i for i, b in enumerate(net.bus.index)}


def _voltages(net, incidents: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Bus voltages [V] without and with the incidents (active from t = 0)."""
    base = powermod.PowerSim(copy.deepcopy(net), ()).solve(0.0, 0.8)
    hit = powermod.PowerSim(copy.deepcopy(net), incidents).solve(0.0, 0.8)
    return base.bus_voltage_v, hit.bus_voltage_v


def _setup(conn: psycopg.Connection, grid, before: np.ndarray, after: np.ndarray) -> list[str]:
    """The grid as the power layers; a bus monitor on every third MV bus and a transformer
    monitor per HV/MV transformer; 15 min of voltages before ONSET and 6 after."""
    net, lonlat, row = grid
    import_pandapower(conn, net, lonlat, source="test", voltage_kv=powermod.REPORT_KV)
    mv = [int(b) for b in net.bus.index if net.bus.vn_kv.at[b] <= 30.0]
    buses = mv[::3]
    rows = []
    for b in buses:
        i = row[b]
        sid = f"pb-{b}"
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, asset_id, geom)"
            " VALUES (%s, 'power', 'power_bus', %s, %s, ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
            (sid, sid, f"sim:power:{i}", float(lonlat[i, 0]), float(lonlat[i, 1])),
        )
        for m in range(-15, 6):
            v = before[i] if m < 0 else after[i]
            rows.append((sid, "voltage", ONSET + timedelta(minutes=m), float(v)))
    for k, t in enumerate(net.trafo.index):  # the simulator numbers transformers like buses
        i = row[int(net.trafo.lv_bus.at[t])]
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, asset_id, geom)"
            " VALUES (%s, 'power', 'power_transformer', %s, %s,"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326))",
            (f"pt-{t}", f"pt-{t}", f"sim:power:{k}", float(lonlat[i, 0]), float(lonlat[i, 1])),
        )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (sensor_id, quantity, ts, value) VALUES (%s, %s, %s, %s)", rows
        )
    conn.execute(
        "INSERT INTO sensor_latest (sensor_id, quantity, ts, value, received_at)"
        " SELECT sensor_id, quantity, max(ts), 0, now() FROM readings GROUP BY 1, 2"
    )
    return [f"pb-{b}" for b in buses]


def _alert(conn: psycopg.Connection, sid: str, quantity: str, kind: str) -> int:
    ts_us = int(ONSET.timestamp() * 1e6)
    ch = AlertChange("raised", sid, "power", quantity, kind, "major", 0.0, 9300.0, ts_us, "z", "e")
    write_evaluation(conn, Evaluation((ch,), {}))
    row = conn.execute(
        "SELECT incident_id FROM alerts WHERE sensor_id = %s ORDER BY alert_id DESC LIMIT 1",
        (sid,),
    ).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def test_a_line_outage_is_placed_in_its_fault_section(db_url: str, grid) -> None:
    net, _, row = grid
    outage = powermod.PowerIncident("line_outage", "5", 0.0)
    before, after = _voltages(net, (outage,))
    with psycopg.connect(db_url, autocommit=True) as conn:
        sensors = _setup(conn, grid, before, after)
        dead = [s for s in sensors if after[row[int(s[3:])]] < 1.0]
        assert dead, "the outage must leave some monitored bus without supply"
        incident = _alert(conn, dead[0], "voltage", "threshold_low")
        obs = {o.sensor_id: o for o in read_power_observations(conn, ONSET)}
        placed = read_sensor_nodes(conn)
        got = localise_power(conn, incident)
        iso = fetch_isolation(conn, "power", "5", with_geometry=False)["isolation"]
    assert sorted(s for s, o in obs.items() if o.state == "dead") == sorted(dead)
    # the transformer monitors sit on the substations, not on the buses of the same number
    for t in net.trafo.index:
        assert placed[f"pt-{t}"] == str(row[int(net.trafo.lv_bus.at[t])])
    assert all(placed[s] == str(row[int(s[3:])]) for s in sensors)
    assert not isinstance(got, str), got
    ranked, used = got
    assert "5" in [c.line for c in ranked[:5]], ranked
    assert ranked[0].kind == "fault" and ranked[0].mismatches == 0
    assert "5" in used["fault_section"]
    assert used["method"] == METHOD_FAULT and used["dead"] == len(dead)
    # the layers carry the grid's switches: line 5 is isolated by the two at its ends, and the
    # tie switch 14 feeds again what it cut off (what the scenario's dispatcher does)
    assert len(iso["valves_to_close"]) == 2 and not iso["sources_to_shut"]
    assert all(v.startswith("sw") for v in iso["valves_to_close"])
    assert "sw14" in [r["device"] for r in iso["restoration"]]
    area = used["search_area"]
    assert area["type"] in ("Polygon", "MultiPolygon")
    ring = area["coordinates"][0] if area["type"] == "Polygon" else area["coordinates"][0][0]
    lon, lat = ring[0]
    assert 103.9 < lon < 104.4 and 30.5 < lat < 30.9  # lon/lat round the anchor


def test_an_overload_is_placed_on_the_line_its_overcurrent_monitor_watches(
    db_url: str, grid
) -> None:
    net, _, row = grid
    before, after = _voltages(net, ())
    with psycopg.connect(db_url, autocommit=True) as conn:
        sensors = _setup(conn, grid, before, after)
        # the monitor at the far end of line 27 reports the over-current
        sid = f"pb-{int(net.line.to_bus.at[27])}"
        if sid not in sensors:
            sid = sensors[len(sensors) // 2]
        incident = _alert(conn, sid, "current", "threshold_high")
        node = str(row[int(sid[3:])])
        got = localise_power(conn, incident)
        # the lines at the bus: past the switch bays (length 0) that join it to its switches
        at_bus = conn.execute(
            "SELECT l.line_id FROM power_lines b JOIN power_lines l"
            "  ON b.to_node IN (l.from_node, l.to_node) AND l.length_m > 0"
            " WHERE b.from_node = %s AND b.length_m = 0",
            (node,),
        ).fetchall()
    assert not isinstance(got, str), got
    ranked, used = got
    assert used["method"] == METHOD_OVERLOAD and used["overloaded"] == 1
    assert ranked[0].kind == "overload"
    assert ranked[0].line in {r[0] for r in at_bus}, (ranked[0], at_bus)


def test_no_lost_voltage_nor_overcurrent_says_why(db_url: str, grid) -> None:
    net, _, _ = grid
    before, after = _voltages(net, ())
    with psycopg.connect(db_url, autocommit=True) as conn:
        sensors = _setup(conn, grid, before, after)
        incident = _alert(conn, sensors[0], "voltage", "rate_of_change")
        got = localise_power(conn, incident)
    assert isinstance(got, str) and "no dead or over-current sensor" in got


def test_without_power_layers_or_readings(db_url: str, grid) -> None:
    net, lonlat, _ = grid
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO sensors (sensor_id, utility, sensor_type, name, asset_id, geom)"
            " VALUES ('pb-x', 'power', 'power_bus', 'x', 'sim:power:3',"
            " ST_SetSRID(ST_MakePoint(104.13, 30.68), 4326))"
        )
        incident = _alert(conn, "pb-x", "voltage", "threshold_low")
        assert localise_power(conn, incident) == "no power network loaded"
        import_pandapower(conn, net, lonlat, source="test")
        # ingestion has stored nothing after the onset yet: try again at the next round
        conn.execute(
            "INSERT INTO sensor_latest (sensor_id, quantity, ts, value, received_at)"
            " VALUES ('pb-x', 'voltage', %s, 0, now())",
            (ONSET - timedelta(minutes=1),),
        )
        with pytest.raises(PendingReadings):
            localise_power(conn, incident)
        assert localise_power(conn, 10**9) == "incident not found"


def test_the_enricher_places_a_power_incident_on_its_line_with_its_isolation(
    db_url: str, grid
) -> None:
    """Through alerts/enrich.py: the incident's likely location is the best line of its fault
    section, with its candidates, search area and the switching that isolates it."""
    from alerts.enrich import enrich_incidents

    net, _, row = grid
    before, after = _voltages(net, (powermod.PowerIncident("line_outage", "5", 0.0),))
    with psycopg.connect(db_url, autocommit=True) as conn:
        sensors = _setup(conn, grid, before, after)
        dead = [s for s in sensors if after[row[int(s[3:])]] < 1.0]
        incident = _alert(conn, dead[0], "voltage", "threshold_low")
        assert enrich_incidents(conn) == 1
        location, affected = conn.execute(
            "SELECT likely_location, affected FROM incidents WHERE incident_id = %s", (incident,)
        ).fetchone()
    assert affected["method"] == METHOD_FAULT
    lines = [c["pipe"] for c in affected["candidates"]]
    assert location == lines[0] and "5" in lines[:5]
    assert affected["search_area"]["type"] in ("Polygon", "MultiPolygon")
    assert affected["valves_to_close"] and all(
        v.startswith("sw") for v in affected["valves_to_close"]
    )
