"""Isolation advice proportionate to the event (issue 15 item 4): a small leak is not "shut the
reservoir"; a burst still gets the full isolation. Pure on hand-built networks, then on a
utility's EPANET model and the demo city in the database."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import wntr

from gis.analysis import fetch_isolation
from gis.epanet import import_epanet
from gis.network import Link, Network, Node, advise_isolation, compute_isolation

NET1 = Path(wntr.__file__).parent / "library" / "networks" / "Net1.inp"


def _network(customers: int = 10) -> Network:
    """R - P0 - J1 -V1- J2 -V2- J3: the pipe P0 next to the reservoir has no valve before it."""
    nodes = [
        Node("R", "reservoir"),
        Node("J1", "junction", customers=customers),
        Node("V1", "valve"),
        Node("J2", "junction", customers=customers),
        Node("V2", "valve"),
        Node("J3", "junction", customers=customers),
    ]
    links = [
        Link("P0", "R", "J1", length_m=100),
        Link("P1a", "J1", "V1"),
        Link("P1b", "V1", "J2"),
        Link("P2a", "J2", "V2"),
        Link("P2b", "V2", "J3"),
        Link("P3", "J3", "R2"),
    ]
    return Network.build("water", nodes, links)


def test_a_small_leak_next_to_the_reservoir_is_repaired_under_pressure() -> None:
    iso = compute_isolation(_network(), "P0")
    assert iso.sources_to_shut == ("R",)  # the full isolation shuts the reservoir
    a = advise_isolation(iso, leak_lps=3.0)
    assert (a.kind, a.event) == ("repair_under_pressure", "small_leak")
    assert a.valves_to_close == () and a.sources_to_shut == () and a.customers_without_supply == 0
    assert "R" in a.reason_en and "repair under pressure" in a.reason_en
    assert "带压抢修" in a.reason_zh and "水源 R" in a.reason_zh
    # a larger leak, still below a burst: bring the pressure down instead
    b = advise_isolation(iso, leak_lps=7.0)
    assert b.kind == "reduce_pressure" and "reduce the supply pressure" in b.reason_en
    assert "降低" in b.reason_zh


def test_a_burst_or_an_unsized_event_still_gets_the_full_isolation() -> None:
    iso = compute_isolation(_network(), "P0")
    for kw in ({"leak_lps": 40.0}, {"severity": "critical"}, {}):
        a = advise_isolation(iso, **kw)
        assert a.kind == "isolate"
        assert a.valves_to_close == iso.valves_to_close and a.sources_to_shut == ("R",)
        assert a.customers_without_supply == iso.customers_without_supply
    assert advise_isolation(iso, leak_lps=40.0).event == "burst"
    assert advise_isolation(iso).event == "unknown"
    assert "爆管" in advise_isolation(iso, severity="critical").reason_zh


def test_a_large_leak_found_by_the_night_flow_is_weighed_not_isolated_at_once() -> None:
    """16 L/s that rose over hours (the night flow found it, not the burst rule) floods no
    street within the hour: no reservoir is shut for it; between valves it is isolated."""
    at_source = compute_isolation(_network(), "P0")
    a = advise_isolation(at_source, leak_lps=16.0, severity="major", sudden=False)
    assert (a.kind, a.event) == ("reduce_pressure", "large_leak")
    assert a.sources_to_shut == () and a.valves_to_close == ()
    assert "Burst" not in a.reason_en and "爆管" not in a.reason_zh
    between = advise_isolation(compute_isolation(_network(), "P1b"), leak_lps=16.0, sudden=False)
    assert between.kind == "isolate" and between.valves_to_close == ("V1", "V2")
    assert between.reason_en.startswith("Large 16.0 L/s leak") and "较大漏损" in between.reason_zh
    # the same size as a sudden rise is a burst
    assert advise_isolation(at_source, leak_lps=16.0, sudden=True).event == "burst"


def test_a_small_leak_between_valves_is_isolated_by_those_valves() -> None:
    iso = compute_isolation(_network(), "P1b")
    a = advise_isolation(iso, leak_lps=3.0)
    assert a.kind == "isolate" and a.valves_to_close == ("V1", "V2") and a.sources_to_shut == ()
    assert "no source shut" in a.reason_en
    # the same segment feeding too many customers for a small leak: repair under pressure
    big = compute_isolation(_network(customers=2000), "P1b")
    assert big.customers_without_supply > 500
    c = advise_isolation(big, leak_lps=3.0)
    assert c.kind == "repair_under_pressure"
    assert f"cut off {big.customers_without_supply} customers" in c.reason_en


def test_a_utility_model_without_valves_gets_repair_advice_for_a_small_leak(
    gis_conn: psycopg.Connection,
) -> None:
    import_epanet(gis_conn, NET1, origin=(104.06, 30.66))
    old = fetch_isolation(gis_conn, "water", "12", with_geometry=False)["isolation"]
    small = fetch_isolation(gis_conn, "water", "12", with_geometry=False, leak_lps=3.0)
    burst = fetch_isolation(gis_conn, "water", "12", with_geometry=False, leak_lps=25.0)
    # the existing keys are kept as they were, for every event size
    for doc in (small, burst):
        iso = doc["isolation"]
        assert {k: v for k, v in iso.items() if k != "advice"} == {
            k: v for k, v in old.items() if k != "advice"
        }
    assert old["sources_to_shut"]  # Net1 has no valves: isolation shuts its sources
    assert small["isolation"]["advice"]["kind"] == "repair_under_pressure"
    assert small["isolation"]["advice"]["sources_to_shut"] == []
    assert burst["isolation"]["advice"]["kind"] == "isolate"
    assert burst["isolation"]["advice"]["sources_to_shut"] == old["sources_to_shut"]


def test_a_small_leak_on_the_demo_grid_closes_its_segment_valves(
    gis_conn: psycopg.Connection,
) -> None:
    pipe = gis_conn.execute(
        "SELECT p.pipe_id FROM water_pipes p WHERE p.link_kind = 'pipe'"
        " AND EXISTS (SELECT 1 FROM water_nodes v WHERE v.kind = 'valve'"
        "             AND v.node_id IN (p.from_node, p.to_node))"
        " ORDER BY p.pipe_id LIMIT 1"
    ).fetchone()[0]
    doc = fetch_isolation(gis_conn, "water", pipe, with_geometry=False, leak_lps=2.0)
    iso = doc["isolation"]
    if iso["sources_to_shut"] or iso["customers_without_supply"] > 500:
        pytest.fail(f"pick a pipe inside the grid: {pipe} {iso['sources_to_shut']}")
    assert iso["advice"]["kind"] == "isolate"
    assert iso["advice"]["valves_to_close"] == iso["valves_to_close"] != []
