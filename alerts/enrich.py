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
from collections.abc import Callable
from typing import Any

import psycopg

from alerts.stores.incidents import read_unenriched, write_context
from gis.analysis import NetworkCache, fetch_isolation, fetch_leak_area, fetch_nearest_link
from gis.network import NetworkError

log = logging.getLogger("alerts.enrich")

GAS_MIN_RADIUS_M = 150.0
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
    nearest = fetch_nearest_link(conn, utility, lon, lat)
    if nearest is None:
        raise NetworkError(f"no {utility} network loaded")
    link_id, distance_m = nearest
    fc = fetch_isolation(conn, utility, link_id, cache=cache, with_geometry=False)
    iso = fc["isolation"]
    affected = {k: iso[k] for k in _KEEP if k in iso}
    affected["link_distance_m"] = round(float(distance_m), 1)
    return str(link_id), affected


ENRICHER_LOCK = 0x0C17_E2C1  # advisory lock key: the one enricher among the engine's workers
Compute = Callable[..., tuple[str | None, dict[str, Any]]]


def take_enricher_role(conn: psycopg.Connection) -> bool:
    """Become the one enricher: a session-level advisory lock, held until ``conn`` closes (a
    worker that dies hands the role to another at its next try). Call it once per connection;
    True when this connection holds the role."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (ENRICHER_LOCK,)).fetchone()
    return bool(row and row[0])


def enrich_incidents(
    conn: psycopg.Connection,
    cache: NetworkCache | None = None,
    *,
    limit: int = 20,
    compute: Compute = compute_incident_context,
) -> int:
    """Compute the context of open incidents that are new or grew since; returns how many.

    One incident's failure never holds up the others: whatever its analysis raises (other than
    a lost connection) is stored as ``{"error": ...}`` and the incident marked enriched, so it is
    tried again only when it grows."""
    rows = read_unenriched(conn, limit)
    for incident_id, utility, lon, lat, radius_m in rows:
        try:
            with conn.transaction():
                location, affected = compute(conn, utility, lon, lat, radius_m, cache)
        except (NetworkError, psycopg.errors.UndefinedTable, KeyError) as exc:
            location, affected = None, {"error": str(exc)[:300]}
            log.info("incident %s: no network context (%s)", incident_id, exc)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise  # the database is away: the loop reconnects and tries again
        except Exception as exc:  # anything else: recorded once, not retried every 5 s
            location, affected = None, {"error": _describe(exc)}
            log.warning("incident %s: network analysis failed", incident_id, exc_info=True)
        try:
            write_context(conn, incident_id, location, affected)
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except Exception as exc:  # a result that cannot be stored (not JSON, too odd)
            log.warning("incident %s: context not storable", incident_id, exc_info=True)
            try:
                write_context(conn, incident_id, None, {"error": _describe(exc)})
            except (psycopg.OperationalError, psycopg.InterfaceError):
                raise
            except Exception:  # never let one incident stop the others
                log.exception("incident %s: could not record its enrichment error", incident_id)
    return len(rows)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
