"""Incidents in their network: likely location, valves to close, who and what is cut off.

An adapter over the GIS part's network analysis (gis/analysis.py, on the PostGIS network layers):

* water: the hydraulic model of the GIS water layers (gis/epanet.py ``fetch_water_model``)
  linearised at the incident's time of day ranks every pipe by how well a leak (or a closure)
  there explains the pressure residuals the sensors saw (gis/leaks.py; residuals of every
  placed pressure sensor from alerts/stores/residuals.py; the metered area that saw the
  imbalance is recorded): ``affected.candidates`` (best 10 with their scores), ``search_area``
  (GeoJSON, lon/lat) and ``affected.method``; the best candidate is the likely location. With
  no model or fewer than ``MIN_SENSORS`` placed sensors that moved, the pipe nearest the
  centre, and ``method`` says so;
* power: the feeder topology (alerts/enrich_power.py, gis/faults.py): the lines of the fault
  section between the last sensor that kept its voltage and the first that lost it, or for an
  overload the line the deepest over-current sensor watches; ``affected.candidates``,
  ``search_area`` and ``method`` as for water. Without a dead or over-current sensor on the
  network, the line nearest the centre, and ``method`` says so;
* water and power: ``fetch_isolation`` of the likely location gives the valves (switches) to
  close, the customers and population without supply, and the facilities affected;
* gas: ``fetch_leak_area`` round the centre (radius from the incident's spread, at least
  ``GAS_MIN_RADIUS_M``) gives the population, facilities and gas valves in the area.

The result goes into ``incidents.likely_location`` and ``incidents.affected`` (jsonb) and is
recomputed when the incident grows (``updated_at > enriched_at``). A city without network layers
gets ``{"error": ...}`` once, not a retry per second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from alerts.enrich_power import localise_power
from alerts.pending import PendingReadings, wait_for_readings
from alerts.stores.incidents import read_incident_size, read_unenriched, write_context
from alerts.stores.residuals import (
    read_area_sensors,
    read_incident_onset,
    read_latest_pressure_ts,
    read_meter_links,
    read_pipe_ids,
    read_pressure_residuals,
    read_pressure_steps,
)
from gis import leaks
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
    "advice",  # proportionate to the event: a small leak is not "shut the reservoir"
)


MIN_SENSORS = 3  # placed pressure sensors with a residual: fewer cannot tell pipes apart
MIN_RESIDUAL_KPA = 2.0  # the largest residual must exceed this (about 0.2 m: sensor noise)
TOP_CANDIDATES = 10
SEARCH_AREA_TOP = 5
LOCAL_TZ = ZoneInfo("Asia/Shanghai")  # the model's demand patterns follow Chengdu's clock
KPA_PER_M = 9.80665
LEAK_KINDS = ("water_burst", "water_leak")
# incident kinds the pressure pattern does not place: a sensor's own fault is where the sensor
# is (a lost source is where its inlet meter is: SUPPLY_LOSS)
NOT_ON_THE_MODEL = {
    "sensor_health": "a sensor fault is placed at the sensor",
}
SUPPLY_LOSS = "water_supply_loss"
SLOW_LEAK = "water_leak"  # found by a rising night flow or balance: it grew, with no step
METHOD_MODEL = "network-model sensitivity (Pérez et al. 2011; BattLeDIM 2020)"
METHOD_SUPPLY = "the supply links whose inlet meters lost flow"
METHOD_NEAREST = "nearest pipe to the alerting sensors' centre"
METHOD_NEAREST_LINE = "nearest line to the alerting sensors' centre"


class LeakModelCache:
    """The water model linearised per time-of-day bin and per version of the water layers: a
    10,000-pipe model is solved and factorised once per bin, not per incident."""

    def __init__(self, bin_s: int = 3600) -> None:
        self.bin_s = bin_s
        self._lock = threading.Lock()
        self._items: dict[tuple[str, tuple[int, int], int], leaks.HydraulicState] = {}
        self._models: dict[tuple[str, tuple[int, int]], tuple[Any, frozenset[str]]] = {}

    def get(self, conn: psycopg.Connection, at: datetime) -> leaks.HydraulicState:
        from gis.epanet import fetch_water_model

        row = conn.execute(
            "SELECT (SELECT version FROM gis_layers WHERE name = 'water_nodes'),"
            " (SELECT version FROM gis_layers WHERE name = 'water_pipes')"
        ).fetchone()
        version = (int(row[0] or 0), int(row[1] or 0)) if row else (0, 0)
        local = at.astimezone(LOCAL_TZ)
        clock = local.hour * 3600 + local.minute * 60 + local.second
        key = (
            f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}",
            version,
            clock // self.bin_s,
        )
        with self._lock:
            hit = self._items.get(key)
        if hit is not None:
            return hit
        with self._lock:
            model = self._models.get(key[:2])
        if model is None:
            # reading the layers into wntr is the slow part (3.3 s for the demo's 1,472
            # pipes): once per layer version, then only the solve per hour of day
            wn = fetch_water_model(conn)
            if not wn.junction_name_list:
                raise NetworkError("no water network loaded")
            model = (wn, frozenset(read_pipe_ids(conn)))
        wn, pipe_ids = model
        state = leaks.model_state(wn, float(clock // self.bin_s * self.bin_s))
        # the layers' pumps and valves become short pipes in the model: never a candidate
        state.pipes = state.pipes & pipe_ids
        with self._lock:
            # a new layer version makes the old entries useless: keep only this version's
            self._items = {k: v for k, v in self._items.items() if k[:2] == key[:2]}
            self._items[key] = state
            self._models = {key[:2]: model}
        return state


_MODELS = LeakModelCache()
PENDING_AFTER_S = 120.0  # [s] of readings after the onset wanted before placing it


def localise_water(
    conn: psycopg.Connection, incident_id: int, models: LeakModelCache | None = None
) -> tuple[list[leaks.Candidate], dict[str, Any], leaks.HydraulicState] | str:
    """Ranked candidate pipes of a water incident, with what was used; or why not (a str)."""
    onset = read_incident_onset(conn, incident_id)
    if onset is None:
        return "incident not found"
    opened_at, members, kind = onset
    if kind in NOT_ON_THE_MODEL:
        return NOT_ON_THE_MODEL[kind]
    area = read_area_sensors(conn, members) if members else None
    try:
        state = (models or _MODELS).get(conn, opened_at)
    except (NetworkError, ValueError, KeyError) as exc:
        return f"no hydraulic model ({exc})"
    # the readings after the onset not stored yet (ingestion a moment behind the alert engine):
    # tried again at the next round rather than settled for the nearest pipe
    wait_for_readings(conn, incident_id, opened_at, read_latest_pressure_ts(conn), PENDING_AFTER_S)
    if kind == SUPPLY_LOSS:
        return _supply_links(conn, members, state)
    # every placed pressure sensor of the network, not only the area's: a sensor that did not
    # move says where the leak is not, and areas are declared by their meters (the balance's),
    # which are few and sit at the inlets. The step across the onset first (a burst, a closure:
    # tanks and yesterday's state do not enter); a leak that grew over hours has no step, and
    # is placed by its level against the same time on previous days only (the step across its
    # first alert is noise: the largest of 40 sensors' noisy steps passes any threshold)
    obs: list[leaks.Observation] = []
    bases = (read_pressure_steps, read_pressure_residuals)
    for read in bases[1:] if kind == SLOW_LEAK else bases:
        residuals = read(conn, opened_at)
        obs = [
            leaks.Observation("pressure", r.node_id, r.residual_kpa / KPA_PER_M)
            for r in residuals
            if r.node_id in state.node_index
        ]
        if len(obs) >= MIN_SENSORS and _moved(obs):
            break
    if len(obs) < MIN_SENSORS:
        return f"{len(obs)} placed pressure sensors with readings (at least {MIN_SENSORS} needed)"
    if not _moved(obs):
        return "the pressures did not move beyond the sensors' noise"
    try:
        # the water balance saw more water going in (a burst, a rising night flow): water is
        # lost, so a leak; a closure is a candidate only for a pressure-only incident
        ranked = leaks.rank(state, obs, top=TOP_CANDIDATES, closures=kind not in LEAK_KINDS)
    except leaks.LocaliseError as exc:
        return str(exc)
    used = {
        "sensors_used": len(obs),
        "area_sensors": len(area) if area else None,
        "basis": sorted({r.basis for r in residuals}),
        "closures_considered": kind not in LEAK_KINDS,
    }
    return ranked, used, state


def _moved(obs: list[leaks.Observation]) -> bool:
    return max(abs(o.residual) for o in obs) * KPA_PER_M >= MIN_RESIDUAL_KPA


def _supply_links(
    conn: psycopg.Connection, members: list[str], state: leaks.HydraulicState
) -> tuple[list[leaks.Candidate], dict[str, Any], leaks.HydraulicState] | str:
    """A lost supply is where its inlet meters are: the links they sit on (the pump or the
    works' outlet main), in the order of the meters' distance to them."""
    links = [k for k in read_meter_links(conn, members) if k in state.links]
    if not links:
        return "a lost supply is placed at its inlet meter (no link under the meter)"
    ranked = []
    for link in links[:TOP_CANDIDATES]:
        a, b = state.end_names[state.links.index(link)]
        ranked.append(leaks.Candidate(link, 1.0, b if b in state.node_index else a, "supply", 0.0))
    return ranked, {"method": METHOD_SUPPLY, "meters": len(members)}, state


def _to_lonlat(geom: dict[str, Any] | None) -> dict[str, Any] | None:
    if geom is None:
        return None
    import numpy as np
    import shapely
    from pyproj import Transformer
    from shapely.geometry import mapping, shape

    to_ll = Transformer.from_crs(4544, 4326, always_xy=True).transform
    moved = shapely.transform(shape(geom), lambda xy: np.column_stack(to_ll(xy[:, 0], xy[:, 1])))
    return dict(mapping(moved))


def compute_incident_context(
    conn: psycopg.Connection,
    utility: str,
    lon: float,
    lat: float,
    radius_m: float,
    cache: NetworkCache | None = None,
    *,
    incident_id: int | None = None,
    models: LeakModelCache | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """(likely location, affected summary) for an incident centred at (lon, lat); a water
    incident with ``incident_id`` is placed on the network model when it can be."""
    if utility == "gas":
        fc = fetch_leak_area(conn, radius_m=max(GAS_MIN_RADIUS_M, 1.5 * radius_m), point=(lon, lat))
        return None, dict(fc["leak"])
    extra: dict[str, Any] = {}
    link_id: str | None = None
    fitted_leak_lps: float | None = None
    if utility == "water" and incident_id is not None:
        try:
            with conn.transaction():  # a savepoint: a failed query leaves the fallback usable
                got = localise_water(conn, incident_id, models)
        except (psycopg.OperationalError, psycopg.InterfaceError, PendingReadings):
            raise
        except Exception as exc:  # the model does not solve, a layer is odd: fall back, say why
            log.warning("incident %s: localisation failed", incident_id, exc_info=True)
            got = f"localisation failed ({type(exc).__name__}: {str(exc)[:200]})"
        if isinstance(got, str):
            extra["method"] = f"{METHOD_NEAREST}: {got}"
        else:
            ranked, used, state = got
            link_id = ranked[0].pipe
            fitted_leak_lps = ranked[0].size * 1000.0  # the fit's leak size [m3/s]
            extra["method"] = used.pop("method", METHOD_MODEL)
            extra["candidates"] = [
                {"pipe": c.pipe, "score": round(c.score, 4), "node": c.node, "kind": c.kind}
                for c in ranked
            ]
            extra["search_area"] = _to_lonlat(leaks.search_area(state, ranked[:SEARCH_AREA_TOP]))
            extra["localisation"] = used
    elif utility == "water":
        extra["method"] = METHOD_NEAREST
    elif utility == "power" and incident_id is not None:
        try:
            with conn.transaction():
                placed = localise_power(conn, incident_id, cache)
        except (psycopg.OperationalError, psycopg.InterfaceError, PendingReadings):
            raise
        except Exception as exc:  # a layer is odd: fall back to the nearest line, say why
            log.warning("incident %s: power localisation failed", incident_id, exc_info=True)
            placed = f"localisation failed ({type(exc).__name__}: {str(exc)[:200]})"
        if isinstance(placed, str):
            extra["method"] = f"{METHOD_NEAREST_LINE}: {placed}"
        else:
            lines, used = placed
            link_id = lines[0].line
            extra["method"] = used.pop("method")
            extra["search_area"] = used.pop("search_area")
            extra["candidates"] = [
                {"pipe": c.line, "score": round(c.score, 4), "node": c.node, "kind": c.kind}
                for c in lines
            ]
            extra["localisation"] = used
    distance_m: float | None = None
    if link_id is None:
        nearest = fetch_nearest_link(conn, utility, lon, lat)
        if nearest is None:
            raise NetworkError(f"no {utility} network loaded")
        link_id, distance_m = str(nearest[0]), float(nearest[1])
    severity, leak_lps, sudden = (
        read_incident_size(conn, incident_id) if incident_id else (None, None, None)
    )
    if leak_lps is None and extra.get("candidates") and extra["candidates"][0]["kind"] == "leak":
        leak_lps = fitted_leak_lps
    fc = fetch_isolation(
        conn,
        utility,
        link_id,
        cache=cache,
        with_geometry=False,
        leak_lps=leak_lps,
        severity=severity,
        sudden=sudden,
    )
    iso = fc["isolation"]
    affected = {k: iso[k] for k in _KEEP if k in iso}
    if distance_m is not None:
        affected["link_distance_m"] = round(distance_m, 1)
    affected.update(extra)
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
    models: LeakModelCache | None = None,
) -> int:
    """Compute the context of open incidents that are new or grew since; returns how many.

    One incident's failure never holds up the others: whatever its analysis raises (other than
    a lost connection) is stored as ``{"error": ...}`` and the incident marked enriched, so it is
    tried again only when it grows."""
    rows = read_unenriched(conn, limit)
    for incident_id, utility, lon, lat, radius_m in rows:
        try:
            with conn.transaction():
                if compute is compute_incident_context:
                    location, affected = compute(
                        conn,
                        utility,
                        lon,
                        lat,
                        radius_m,
                        cache,
                        incident_id=incident_id,
                        models=models,
                    )
                else:
                    location, affected = compute(conn, utility, lon, lat, radius_m, cache)
        except (NetworkError, psycopg.errors.UndefinedTable, KeyError) as exc:
            location, affected = None, {"error": str(exc)[:300]}
            log.info("incident %s: no network context (%s)", incident_id, exc)
        except PendingReadings:
            continue  # left unenriched: the next round tries again
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
