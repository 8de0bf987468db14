"""Fault section location on a feeder's topology (gis/faults.py): pure tests."""

from __future__ import annotations

import pytest

from gis.faults import DEAD, LIVE, LOW, OVERLOADED, FaultError, feeder_tree, locate_fault
from gis.network import Link, Network, Node


def feeder() -> Network:
    """Two substations; feeder A with a branch at 2, tied to feeder B by open switch T:

    SA -a- 1 -b- 2 -c- 3 -d- 4 -g- T(open) -h- 7 -i- SB
                 2 -e- 5 -f- 6
    """
    nodes = [
        Node("SA", "substation"),
        Node("SB", "substation"),
        Node("T", "switch", closed=True),
        *(Node(str(k), "junction") for k in (1, 2, 3, 5, 7)),
        Node("4", "transformer", customers=80),
        Node("6", "transformer", customers=120),
    ]
    length = {"a": 500, "b": 400, "c": 300, "d": 800, "e": 200, "f": 600, "g": 100, "h": 100}
    ends = {
        "a": ("SA", "1"),
        "b": ("1", "2"),
        "c": ("2", "3"),
        "d": ("3", "4"),
        "e": ("2", "5"),
        "f": ("5", "6"),
        "g": ("4", "T"),
        "h": ("T", "7"),
        "i": ("7", "SB"),
    }
    links = [
        Link(k, a, b, "line", length_m=float(length.get(k, 300))) for k, (a, b) in ends.items()
    ]
    return Network.build("power", nodes, links)


def ids(cands) -> list[str]:
    return [c.line for c in cands]


def test_tree_follows_the_normal_state_and_stops_at_open_switches() -> None:
    t = feeder_tree(feeder())
    assert t.supply_path("4") == ["a", "b", "c", "d"]
    assert t.supply_path("6") == ["a", "b", "e", "f"]
    assert t.supply_path("7") == ["i"]  # fed from SB, not through the open tie
    assert t.parent_link["T"] in {"g", "h"}  # reached, but feeds nothing beyond
    assert "SA" not in t.parent_link and t.depth["SA"] == 0


def test_the_fault_section_lies_between_the_last_live_and_the_first_dead_sensor() -> None:
    net = feeder()
    got = locate_fault(net, {"2": LIVE, "3": DEAD, "4": DEAD, "6": LIVE})
    assert got[0].line == "c" and got[0].mismatches == 0 and got[0].kind == "fault"
    assert got[0].node == "3"
    # every other line contradicts at least one sensor
    assert all(c.mismatches >= 1 for c in got[1:])
    assert got[0].score > 0.8


def test_a_section_of_several_lines_is_ranked_by_exposure() -> None:
    net = feeder()
    # only the end of the branch is monitored: c and d are both in the section; d is longer
    got = locate_fault(net, {"2": LIVE, "4": DEAD, "6": LIVE})
    assert ids(got)[:2] == ["d", "c"]
    assert got[0].mismatches == got[1].mismatches == 0
    assert got[0].score / got[1].score == pytest.approx(800 / 300)


def test_the_whole_feeder_dead_points_at_its_head() -> None:
    got = locate_fault(feeder(), {"2": DEAD, "4": DEAD, "6": DEAD, "7": LIVE})
    assert set(ids(got)[:2]) == {"a", "b"}  # nothing live on feeder A: from the breaker on
    assert all(c.mismatches == 0 for c in got[:2])
    assert got[0].line == "a"  # 500 m against 400 m


def test_one_wrong_sensor_lowers_the_section_but_does_not_empty_it() -> None:
    # 3 reads live (a stale reading) although 4 and the rest of the branch are dead
    got = locate_fault(feeder(), {"2": LIVE, "3": LIVE, "4": DEAD, "6": LIVE})
    assert got[0].line == "d" and got[0].mismatches == 0
    got = locate_fault(feeder(), {"1": LIVE, "2": DEAD, "3": LIVE, "4": DEAD, "6": DEAD})
    # no line explains all five states; b (everything beyond 1) contradicts only sensor 3
    assert got[0].line == "b" and got[0].mismatches == 1


def test_an_overload_is_placed_on_the_line_the_deepest_overcurrent_sensor_watches() -> None:
    got = locate_fault(feeder(), {"1": OVERLOADED, "3": OVERLOADED, "6": LIVE})
    assert got[0].line == "c" and got[0].kind == "overload"
    assert "d" in ids(got)  # what 3 feeds: the overload may come from below it
    assert ids(got).index("a") > ids(got).index("d")  # what 1 watches, lower


def test_low_voltages_below_the_overcurrent_sensor_narrow_the_overload_down() -> None:
    # the current at 1 is too high, and 4 sags but 6 does not: the extra load is on b, c or d
    got = locate_fault(feeder(), {"1": OVERLOADED, "4": LOW, "6": LIVE, "2": LIVE})
    assert ids(got)[0] == "a"  # what the over-current sensor watches
    assert ids(got)[1:] == ["b", "c", "d"]  # above the sag, nearest the sensor first
    assert all(c.mismatches == 0 for c in got)
    # two sags on both branches: only what feeds both has no mismatch
    got = locate_fault(feeder(), {"1": OVERLOADED, "4": LOW, "6": LOW})
    assert ids(got)[:2] == ["a", "b"] and got[1].mismatches == 0
    assert all(c.mismatches == 1 for c in got[2:])


def test_an_overloaded_substation_points_at_its_feeder_heads() -> None:
    got = locate_fault(feeder(), {"SA": OVERLOADED})
    assert ids(got) == ["a"]


def test_nothing_to_place() -> None:
    with pytest.raises(FaultError):
        locate_fault(feeder(), {"2": LIVE, "4": LIVE})
    with pytest.raises(FaultError):
        locate_fault(feeder(), {"nowhere": DEAD})
    with pytest.raises(FaultError, match="the source itself"):
        locate_fault(feeder(), {"SA": DEAD, "2": LIVE})
    with pytest.raises(ValueError, match="unknown sensor states"):
        locate_fault(feeder(), {"2": "sleepy"})


def test_a_dead_sensor_beyond_an_open_tie_is_on_the_other_feeder() -> None:
    got = locate_fault(feeder(), {"7": DEAD, "4": LIVE})
    assert got[0].line == "i"


def test_switch_bays_are_never_candidates() -> None:
    """A line between two load-break switches, each joined to its bus by a bay of length 0."""
    nodes = [
        Node("S", "substation"),
        Node("1", "junction"),
        Node("2", "transformer"),
        Node("k1", "switch"),
        Node("k2", "switch"),
    ]
    links = [
        Link("a", "S", "1", "line", length_m=400.0),
        Link("bay1", "1", "k1", "line", length_m=0.0),
        Link("b", "k1", "k2", "line", length_m=900.0),
        Link("bay2", "k2", "2", "line", length_m=0.0),
    ]
    net = Network.build("power", nodes, links)
    got = locate_fault(net, {"1": LIVE, "2": DEAD})
    assert ids(got) == ["b", "a"] and got[1].mismatches == 1  # no bay among them
    got = locate_fault(net, {"2": OVERLOADED})
    assert ids(got)[0] == "b"  # what the monitor at 2 watches, past the bay
    got = locate_fault(net, {"1": OVERLOADED})
    assert ids(got) == ["a", "b"]  # the line feeding 1, then the line 1 feeds past its bay


def test_low_voltage_under_both_substations_is_a_sag_of_the_supply() -> None:
    with pytest.raises(FaultError, match="sag of the supply"):
        locate_fault(feeder(), {"SA": OVERLOADED, "4": LOW, "7": LOW})
