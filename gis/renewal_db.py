"""Renewal priority over PostGIS (adapter): the pipes' facts from the layers, their incident
history from the alert engine's incidents, their criticality from the valve isolation of each
segment (``gis.network.segment_isolations``: every segment in one pass, the answers of
``compute_isolation``); the ranking from the pure ``gis.renewal``."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import psycopg

from gis.analysis import NetworkCache, layer_features, network_of
from gis.network import Network, NetworkError, segment_isolations
from gis.planner import feature_collection
from gis.renewal import PARTS, PipeFacts, Ranked, RenewalError, Weights, rank_pipes

NETWORKS = ("water", "gas")  # power lines are renewed by other rules (cable age, load)
_PIPES = {
    "water": "SELECT pipe_id, material, diameter_mm, install_year, pressure_class"
    " FROM water_pipes WHERE link_kind = 'pipe' ORDER BY pipe_id",
    "gas": "SELECT pipe_id, material, diameter_mm, install_year, pressure_class FROM gas_pipes"
    " ORDER BY pipe_id",
}
_LAYER = {"water": "water_pipes", "gas": "gas_pipes"}
MAX_WINDOW_Y = 50
KEEP_GRAPHS = 4  # segment isolations kept for this many built graphs


def fetch_pipe_facts(
    conn: psycopg.Connection,
    network: str,
    *,
    window_years: int = 10,
    cache: NetworkCache | None = None,
) -> list[PipeFacts]:
    """Every pipe of ``network`` with what its renewal score needs."""
    if network not in NETWORKS:
        raise RenewalError(f"renewal priority is for {' and '.join(NETWORKS)} pipes")
    if not 1 <= window_years <= MAX_WINDOW_Y:
        raise RenewalError(f"the history window is 1-{MAX_WINDOW_Y} years")
    rows = conn.execute(_PIPES[network]).fetchall()
    events: dict[str, int] = dict(
        conn.execute(
            "SELECT likely_location, count(*) FROM incidents WHERE utility = %s"
            " AND likely_location IS NOT NULL"
            " AND opened_at > now() - make_interval(years => %s) GROUP BY 1",
            (network, window_years),
        ).fetchall()
    )
    cut = _criticality(conn, network, cache)
    return [
        PipeFacts(
            pipe_id=r[0],
            material=r[1],
            diameter_mm=r[2],
            install_year=r[3],
            pressure_class=r[4],
            events=int(events.get(r[0], 0)),
            people_cut=cut[r[0]][0] if r[0] in cut else None,
            facilities_cut=cut[r[0]][1] if r[0] in cut else None,
        )
        for r in rows
    ]


class _Isolations:
    """Each pipe's segment isolation (people and critical facilities without supply) per built
    graph and facilities: computed for the whole network in one pass
    (``gis.network.segment_isolations``) when the graph or the facilities change, so that a
    planner's next question costs the ranking alone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[int, int], tuple[Network, dict[str, tuple[int, int]]]] = {}

    def of(self, net: Network, served: dict[str, int]) -> dict[str, tuple[int, int]]:
        key = (id(net), hash(frozenset(served.items())))
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and hit[0] is net:
            return hit[1]
        out = segment_isolations(net, served)
        with self._lock:
            # the newest few graphs (water and gas, a database or two), not every old version
            kept = list(self._items.items())[-(KEEP_GRAPHS - 1) :] if KEEP_GRAPHS > 1 else []
            self._items = {**dict(kept), key: (net, out)}
        return out


_ISOLATIONS = _Isolations()


def _criticality(
    conn: psycopg.Connection, network: str, cache: NetworkCache | None
) -> dict[str, tuple[int, int]]:
    """pipe -> (people, critical facilities) without supply when its segment is isolated."""
    try:
        net = network_of(conn, network, cache)
    except NetworkError:
        return {}
    column = f"{network}_node_id"
    served: dict[str, int] = dict(
        conn.execute(
            f"SELECT {column}, count(*) FROM facilities WHERE {column} IS NOT NULL GROUP BY 1"  # noqa: S608 (a column name from a fixed pair)
        ).fetchall()
    )
    return (_ISOLATIONS if cache else _Isolations()).of(net, served)


def fetch_renewal(
    conn: psycopg.Connection,
    network: str,
    weights: Weights,
    *,
    top: int = 100,
    window_years: int = 10,
    year: int | None = None,
    cache: NetworkCache | None = None,
) -> dict[str, Any]:
    """The ``top`` pipes to renew first as a GeoJSON FeatureCollection (a map layer and a
    table: ``rank``, ``score``, each part and its weight, the facts), best first, with the
    weights, the year and the window in its ``renewal`` member."""
    if not 1 <= top <= 100_000:
        raise RenewalError("top is 1-100,000 pipes")
    year = year or datetime.now(UTC).year
    facts = fetch_pipe_facts(conn, network, window_years=window_years, cache=cache)
    ranked = rank_pipes(facts, weights, year=year, top=top)
    geometry = {
        f["properties"]["pipe_id"]: f
        for f in layer_features(conn, _LAYER[network], [r.pipe_id for r in ranked], "renewal")
    }
    w = weights.normalised()
    features = []
    for i, r in enumerate(ranked, start=1):
        feat = geometry.get(r.pipe_id)
        if feat is None:
            continue
        feat["properties"] = {**feat["properties"], **ranked_properties(i, r)}
        features.append(feat)
    return feature_collection(
        features,
        renewal={
            "network": network,
            "year": year,
            "window_years": window_years,
            "pipes_scored": len(facts),
            "weights": {p: round(getattr(w, p), 4) for p in PARTS},
        },
    )


def ranked_properties(rank: int, r: Ranked) -> dict[str, Any]:
    """A ranked pipe's columns in the table and the map layer."""
    props: dict[str, Any] = {"rank": rank, "score": r.score}
    props.update({f"part_{p}": round(r.parts[p], 3) for p in PARTS})
    props["unknown_parts"] = ",".join(r.unknown)
    props["incidents"] = r.facts.events
    props["people_cut"] = r.facts.people_cut
    props["facilities_cut"] = r.facts.facilities_cut
    return props
