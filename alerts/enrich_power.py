"""Power incidents placed by the feeder topology (issue 15 item 1): the ranked candidate lines
for a power incident from which sensors lost voltage, kept it, or saw an over-current right after
its onset (alerts/stores/power_faults.py) on the power layers' graph (gis/faults.py: the fault
section between the last live and the first dead sensor; for an overload, the line the deepest
over-current sensor watches). The power analogue of ``alerts.enrich.localise_water``; the
enricher (``alerts.enrich.compute_incident_context``) takes the best line as the likely location.
"""

from __future__ import annotations

from typing import Any

import psycopg

from alerts.pending import wait_for_readings
from alerts.stores.power_faults import (
    AFTER_S,
    read_latest_power_ts,
    read_line_search_area,
    read_power_observations,
)
from alerts.stores.residuals import read_incident_onset
from gis.analysis import NetworkCache, fetch_network
from gis.faults import DEAD, LIVE, LOW, OVERLOADED, FaultCandidate, FaultError, locate_fault

TOP_CANDIDATES = 10
SEARCH_AREA_TOP = 5
METHOD_FAULT = (
    "feeder topology: the fault section between the last live and the first dead sensor "
    "(FLISR section location; Kezunovic 2011)"
)
METHOD_OVERLOAD = (
    "feeder topology: the line the deepest over-current sensor watches, then the lines below it "
    "above the low-voltage sensors"
)
NOT_ON_THE_FEEDER = {"sensor_health": "a sensor fault is placed at the sensor"}
_RANK = {DEAD: 3, OVERLOADED: 2, LOW: 1, LIVE: 0}  # several sensors on one node: the worst state


def localise_power(
    conn: psycopg.Connection, incident_id: int, cache: NetworkCache | None = None
) -> tuple[list[FaultCandidate], dict[str, Any]] | str:
    """Ranked candidate lines of a power incident and what was used (``method`` and
    ``search_area``, a GeoJSON polygon in lon/lat round the first ``SEARCH_AREA_TOP``, are for
    the caller to take out); or why not (a str). Raises ``alerts.pending.PendingReadings`` while
    the readings after the onset are not stored yet (alerts/pending.py)."""
    onset = read_incident_onset(conn, incident_id)
    if onset is None:
        return "incident not found"
    opened_at, members, kind = onset
    if kind in NOT_ON_THE_FEEDER:
        return NOT_ON_THE_FEEDER[kind]
    net = cache.get(conn, "power")[0] if cache else fetch_network(conn, "power")
    if not net.links:
        return "no power network loaded"
    wait_for_readings(conn, incident_id, opened_at, read_latest_power_ts(conn), AFTER_S)
    observed = read_power_observations(conn, opened_at)
    states: dict[str, str] = {}
    for o in observed:
        if o.node_id in net.nodes and _RANK[o.state] >= _RANK.get(states.get(o.node_id, ""), -1):
            states[o.node_id] = o.state
    try:
        ranked = locate_fault(net, states, top=TOP_CANDIDATES)
    except FaultError as exc:
        return f"{exc} ({len(states)} placed power sensors with readings)"
    counts = {s: sum(1 for v in states.values() if v == s) for s in (DEAD, LIVE, OVERLOADED, LOW)}
    fault = ranked[0].kind == "fault"
    used: dict[str, Any] = {
        "method": METHOD_FAULT if fault else METHOD_OVERLOAD,
        "search_area": read_line_search_area(conn, [c.line for c in ranked[:SEARCH_AREA_TOP]]),
        "sensors_used": len(states),
        "dead": counts[DEAD],
        "live": counts[LIVE],
        "overloaded": counts[OVERLOADED],
        "low_voltage": counts[LOW],
        "incident_sensors": len(members),
    }
    if fault:
        used["fault_section"] = [c.line for c in ranked if c.mismatches == 0]
    return ranked, used
