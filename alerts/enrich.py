"""Incidents in their network: likely location, valves to close, who and what is cut off.

An adapter over the GIS part's network analysis (gis/analysis.py, on the PostGIS network layers):

* water and power: the link (pipe, line) nearest the incident's centre is its likely location
  [the first approximation; topology-based localisation from the pressure pattern is the next
  step]; ``fetch_isolation`` gives the valves (switches) to close, the customers and population
  without supply, and the facilities affected;
* gas: ``fetch_leak_area`` round the centre (radius from the incident's spread, at least
  ``GAS_MIN_RADIUS_M``) gives the population, facilities and gas valves in the area.

The result goes into ``incidents.likely_location`` and ``incidents.affected`` (jsonb) and is
recomputed when the incident grows (``updated_at > enriched_at``). A city without network layers
gets ``{"error": ...}`` once, not a retry per second.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from gis.analysis import NetworkCache, fetch_isolation, fetch_leak_area
from gis.network import NetworkError

log = logging.getLogger("alerts.enrich")

GAS_MIN_RADIUS_M = 150.0
_NEAREST_LINK = {
    "water": "SELECT pipe_id, ST_Distance(geom_m, p) FROM water_pipes,"
    " ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 4544) AS p"
    " WHERE link_kind = 'pipe' ORDER BY geom_m <-> p LIMIT 1",
    "power": "SELECT line_id, ST_Distance(geom_m, p) FROM power_lines,"
    " ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 4544) AS p"
    " ORDER BY geom_m <-> p LIMIT 1",
}
_KEEP = (
    "valves_to_close",
    "sources_to_shut",
    "customers_without_supply",
    "population_without_supply",
    "facilities_without_supply",
    "restoration",
)


def compute_incident_context(
    conn: psycopg.Connection,
    utility: str,
    lon: float,
    lat: float,
    radius_m: float,
    cache: NetworkCache | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """(likely location, affected summary) for an incident centred at (lon, lat)."""
    if utility == "gas":
        fc = fetch_leak_area(conn, radius_m=max(GAS_MIN_RADIUS_M, 1.5 * radius_m), point=(lon, lat))
        return None, dict(fc["leak"])
    row = conn.execute(_NEAREST_LINK[utility], (lon, lat)).fetchone()
    if row is None:
        raise NetworkError(f"no {utility} network loaded")
    link_id, distance_m = row
    fc = fetch_isolation(conn, utility, link_id, cache=cache, with_geometry=False)
    iso = fc["isolation"]
    affected = {k: iso[k] for k in _KEEP if k in iso}
    affected["link_distance_m"] = round(float(distance_m), 1)
    return str(link_id), affected


def enrich_incidents(
    conn: psycopg.Connection, cache: NetworkCache | None = None, *, limit: int = 20
) -> int:
    """Compute the context of open incidents that are new or grew since; returns how many."""
    rows = conn.execute(
        "SELECT incident_id, utility, ST_X(centre), ST_Y(centre), radius_m FROM incidents"
        " WHERE state = 'open' AND (enriched_at IS NULL OR enriched_at < updated_at)"
        " ORDER BY incident_id LIMIT %s",
        (limit,),
    ).fetchall()
    for incident_id, utility, lon, lat, radius_m in rows:
        try:
            with conn.transaction():
                location, affected = compute_incident_context(
                    conn, utility, lon, lat, radius_m, cache
                )
        except (NetworkError, psycopg.errors.UndefinedTable, KeyError) as exc:
            location, affected = None, {"error": str(exc)[:300]}
            log.info("incident %s: no network context (%s)", incident_id, exc)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise  # the database is away: the loop reconnects and tries again
        except Exception as exc:  # anything else: recorded once, not retried every 5 s
            location, affected = None, {"error": f"{type(exc).__name__}: {exc}"[:300]}
            log.warning("incident %s: network analysis failed", incident_id, exc_info=True)
        with conn.transaction():
            # updated_at is left alone: only the engine's grouping moves it
            conn.execute(
                "UPDATE incidents SET likely_location = %s, affected = %s, enriched_at = now()"
                " WHERE incident_id = %s",
                (location, Jsonb(affected), incident_id),
            )
    return len(rows)
