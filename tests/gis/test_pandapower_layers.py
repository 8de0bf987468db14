"""A pandapower grid as the GIS power layers (gis/pandapower_layers.py): pure tests."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from gis.faults import feeder_tree
from gis.network import Link, Network, Node
from gis.pandapower_layers import pandapower_to_layers
from simulators import power as powermod
from simulators.geo import place


def layers(name: str):
    net = powermod.load_network(name)
    lon, lat, _ = place(powermod.bus_xy(net), scale_m=1.0, anchor_lon=104.13, anchor_lat=30.68)
    nodes, lines = pandapower_to_layers(net, np.column_stack([lon, lat]))
    return net, nodes, lines


def graph(nodes, lines) -> Network:
    return Network.build(
        "power",
        [
            Node(r.node_id, r.kind, bool(r.normally_open), int(r.customers))
            for r in nodes.itertuples()
        ],
        [
            Link(r.line_id, r.from_node, r.to_node, "line", False, float(r.length_m or 0.0))
            for r in lines.itertuples()
        ],
    )


def test_mv_oberrhein_keeps_the_simulators_ids() -> None:
    net, nodes, lines = layers("mv_oberrhein")
    row = {int(b): i for i, b in enumerate(net.bus.index)}
    mv = int((net.bus.vn_kv <= 30).sum())
    sw = net.switch[net.switch.et == "l"]
    open_switches = int((~sw.closed).sum())
    # on a tie line only its open switch is drawn
    line_switches = len(sw) - int((sw.closed & sw.element.isin(sw.element[~sw.closed])).sum())
    assert len(nodes) == mv + line_switches  # the 110 kV side is not drawn
    # a line keeps its index (the simulator's incident element); a bus its row (sim:power:<row>)
    five = lines.set_index("line_id").loc["5"]
    ends = {str(row[int(net.line.from_bus.at[5])]), str(row[int(net.line.to_bus.at[5])])}
    by_id = lines.set_index("line_id")
    assert {by_id.from_node[five.from_node], by_id.from_node[five.to_node]} == ends
    assert five.length_m == pytest.approx(net.line.length_km.at[5] * 1000.0)
    kinds = nodes.set_index("node_id").kind
    for t in net.trafo.index:
        assert kinds[str(row[int(net.trafo.lv_bus.at[t])])] == "substation"
    switches = nodes[nodes.kind == "switch"]
    assert len(switches) == line_switches and switches.normally_open.sum() == open_switches
    bays = lines[lines.line_id.str.startswith("sw")]
    assert len(bays) == line_switches and (bays.length_m == 0).all()
    # line 5 runs between its two load-break switches
    assert five.from_node.startswith("sw") and five.to_node.startswith("sw")
    assert lines.feeder_id.notna().all() and lines.feeder_id.nunique() >= 2
    # every bus is fed in the normal state, and no open switch feeds anything
    t = feeder_tree(graph(nodes, lines))
    assert set(t.distance_m) == set(nodes.node_id)
    ties = set(switches.node_id[switches.normally_open])
    assert not ties & set(t.parent.values())
    # the midpoint of a line is where the simulator puts its incident: half-way between buses
    mid = lines.set_index("line_id").geometry["5"].interpolate(0.5, normalized=True)
    a, b = (nodes.set_index("node_id").geometry[n] for n in ends)
    assert mid.x == pytest.approx((a.x + b.x) / 2) and mid.y == pytest.approx((a.y + b.y) / 2)


def test_cigre_mv_converts_and_bus_bus_switches_are_refused() -> None:
    net, nodes, lines = layers("cigre_mv")
    assert (nodes.kind == "substation").sum() == len(net.trafo)
    assert set(feeder_tree(graph(nodes, lines)).distance_m) == set(nodes.node_id)
    assert (nodes.kind == "switch").sum() <= int((net.switch.et == "l").sum())
    assert nodes.normally_open.sum() == int((~net.switch.closed & (net.switch.et == "l")).sum())
    odd = copy.deepcopy(net)
    odd.switch.loc[0, "et"] = "b"
    with pytest.raises(ValueError, match="bus-bus"):
        pandapower_to_layers(odd, np.zeros((len(odd.bus), 2)))
