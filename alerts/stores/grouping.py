"""Alerts into incidents, one transaction per round: the grouper thread's work (and, for tests
and back-fills, ``write_evaluation(group=True)``'s). The rules are pure (alerts/incidents.py:
``choose_for_alert``, ``settle``); this module fetches what they need and writes what they
decide, through the stores of the tables involved, with no SQL of its own."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from alerts.engine import AlertChange
from alerts.incidents import (
    DEFAULT_WINDOW_S,
    AlertPoint,
    RaisedAlert,
    alert_tag,
    choose_for_alert,
    is_flagged,
    settle,
    symptom_weight,
)
from alerts.stores import alert_rows, catalogue, incidents
from alerts.stores.times import ts_from_us


def group_new_alerts(conn: psycopg.Connection, *, limit: int = 100) -> int:
    """Put alerts not yet grouped into their incidents, oldest raise first (the same order
    whatever the batching), ``limit`` per transaction; returns how many (0 when another worker
    is grouping). The alerts' rows are not locked while it thinks, so the engine's next clears
    never wait for it."""
    with conn.transaction():
        if not incidents.try_lock_grouping(conn):
            return 0
        pending = alert_rows.read_ungrouped(conn, limit)
        group_raised(conn, pending)
    return len(pending)


def group_raised(conn: psycopg.Connection, raised: Sequence[tuple[int, AlertChange]]) -> None:
    """Each (alert_id, its raise) into its incident, in order, and marked grouped."""
    for alert_id, change in raised:
        attach_incident(conn, alert_id, change)
    alert_rows.mark_grouped(conn, [alert_id for alert_id, _ in raised])


def attach_incident(conn: psycopg.Connection, alert_id: int, ch: AlertChange) -> int | None:
    """Put a raised alert into the incident it belongs to, or open one; returns the incident's
    id. Alerts of sensors without a location (not in the catalogue) stay alone."""
    place = catalogue.read_sensor_place(conn, ch.sensor_id)
    if place is None:
        return None
    lon, lat, district = place
    weight = symptom_weight(ch.kind, ch.value, ch.limit)
    point = AlertPoint(
        alert_id,
        ch.utility,
        alert_tag(ch.quantity, ch.kind),
        ch.severity,
        ch.ts_us,
        lon,
        lat,
        weight,
    )
    flags = alert_rows.read_health_flags(conn, ch.sensor_id, alert_id)
    mark = alert_rows.read_suppressed_by(conn, alert_id)
    planned = mark if mark is not None and mark.startswith("works:") else None
    alert = RaisedAlert(point, ch.sensor_id, ch.kind, flags, planned)
    by_area = alert.may_join_by_area
    neighbours = catalogue.read_area_neighbours(conn, ch.sensor_id) if by_area else []
    at = ts_from_us(ch.ts_us)
    candidates = incidents.lock_candidates(
        conn, ch.sensor_id, ch.utility, at, DEFAULT_WINDOW_S, neighbours
    )
    chosen = choose_for_alert(alert, candidates)
    others: list[str] = []
    faulty: frozenset[str] = frozenset()
    if chosen is not None and is_flagged(alert, chosen):
        # is every other sensor alarming in it flagged too? (then it is a sensor problem)
        others = incidents.read_unflagged_members(conn, chosen.incident.incident_id, ch.sensor_id)
        faulty = alert_rows.read_faulty(conn, others)
    grouping = settle(alert, chosen, others=others, faulty=faulty)
    incident_id = incidents.write_grouping(conn, grouping, opened_at=at, district=district)
    alert_rows.link_incident(conn, alert_id, incident_id)
    incidents.add_member(conn, incident_id, ch.sensor_id, health=grouping.health)
    return incident_id
