"""Network analysis over PostGIS: traces, valve isolation and gas-leak areas (adapter).

The graph comes from the network layers (``fetch_network``), the answer from the pure
``gis.network`` functions, and the geometry and facilities of the answer from the database again.
``NetworkCache`` keeps built graphs until their layers are reloaded (``gis_layers.version``).
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from typing import Any

import psycopg
from psycopg import sql

from gis.layers import NETWORKS, get_layer
from gis.network import (
    PERSONS_PER_HOUSEHOLD,
    Isolation,
    Link,
    Network,
    NetworkError,
    Node,
    advise_isolation,
    compute_isolation,
    compute_restoration,
    compute_trace,
    plan_shutdown,
)
from gis.planner import feature_collection, rows_to_features

_NODE_SQL = {
    "water": "SELECT node_id, kind, status = 'closed', customers FROM water_nodes",
    "gas": "SELECT node_id, kind, status = 'closed', customers FROM gas_nodes",
    "power": "SELECT node_id, kind, normally_open, customers FROM power_nodes",
}
_LINK_SQL = {
    "water": "SELECT pipe_id, from_node, to_node, link_kind, status = 'closed', coalesce(length_m, 0)"
    " FROM water_pipes",
    "gas": "SELECT pipe_id, from_node, to_node, 'pipe', status = 'closed', coalesce(length_m, 0)"
    " FROM gas_pipes",
    "power": "SELECT line_id, from_node, to_node, 'line', status = 'out_of_service',"
    " coalesce(length_m, 0) FROM power_lines",
}


def fetch_network(conn: psycopg.Connection, network: str) -> Network:
    if network not in NETWORKS:
        raise NetworkError(f"unknown network {network!r}; use water, gas or power")
    # fetchall() rather than iterating the cursor: half the time on 20,000+ rows
    node_rows = conn.execute(_NODE_SQL[network]).fetchall()
    link_rows = conn.execute(_LINK_SQL[network]).fetchall()
    nodes = [Node(r[0], r[1], bool(r[2]), int(r[3] or 0)) for r in node_rows]
    links = [Link(r[0], r[1], r[2], r[3], bool(r[4]), float(r[5])) for r in link_rows]
    return Network.build(network, nodes, links)


class NetworkCache:
    """Built graphs (and source distances) per database and network, until a layer reload."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], tuple[tuple[int, int], Network, dict[str, float]]] = {}

    def get(self, conn: psycopg.Connection, network: str) -> tuple[Network, dict[str, float]]:
        nodes_layer, links_layer = NETWORKS[network]
        row = conn.execute(
            "SELECT (SELECT version FROM gis_layers WHERE name = %s),"
            " (SELECT version FROM gis_layers WHERE name = %s)",
            (nodes_layer, links_layer),
        ).fetchone()
        version = (int(row[0] or 0), int(row[1] or 0))  # type: ignore[index]
        key = (f"{conn.info.host}:{conn.info.port}/{conn.info.dbname}", network)
        with self._lock:
            hit = self._items.get(key)
        if hit and hit[0] == version:
            return hit[1], hit[2]
        net = fetch_network(conn, network)
        dist = net.distances()
        net.hops()
        net.baseline_supplied()
        with self._lock:
            self._items[key] = (version, net, dist)
        return net, dist


def network_of(conn: psycopg.Connection, network: str, cache: NetworkCache | None) -> Network:
    return cache.get(conn, network)[0] if cache else fetch_network(conn, network)


def layer_features(
    conn: psycopg.Connection,
    layer_name: str,
    ids: list[str],
    role: str,
    *,
    key: str | None = None,
    order: str = "",
) -> list[dict]:
    """The features whose ``key`` (by default the layer's id) is one of ``ids``, each with a
    ``role`` property."""
    if not ids:
        return []
    layer = get_layer(layer_name)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in layer.column_names)
    cur = conn.execute(
        sql.SQL(
            "SELECT {cols}, %s AS role, ST_AsGeoJSON(geom, 7) AS geometry FROM {t}"
            " WHERE {key} = ANY(%s){order}"
        ).format(
            cols=cols,
            t=sql.Identifier(layer.table),
            key=sql.Identifier(key or layer.id_column),
            order=sql.SQL(" ORDER BY {}").format(sql.Identifier(order)) if order else sql.SQL(""),
        ),
        (role, ids),
    )
    return rows_to_features(cur, layer.id_column)


def _facilities_served(conn: psycopg.Connection, network: str, node_ids: list[str]) -> list[dict]:
    """The facilities whose serving node on ``network`` is one of ``node_ids``."""
    return layer_features(
        conn,
        "facilities",
        node_ids,
        "facility_without_supply",
        key=f"{network}_node_id",
        order="facility_id",
    )


def isolation_summary(
    iso: Isolation,
    facilities: list[dict],
    *,
    leak_lps: float | None = None,
    severity: str | None = None,
    sudden: bool | None = None,
    network: str = "water",
) -> dict[str, Any]:
    """The isolation's keys as they always were, plus ``advice`` (``gis.network.Advice``:
    kind, event, valves and sources, reason in zh and en) proportionate to the event's size."""
    d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(iso).items()}
    d["facilities_without_supply"] = [f["id"] for f in facilities]
    d["persons_per_household"] = PERSONS_PER_HOUSEHOLD
    advice = advise_isolation(
        iso, leak_lps=leak_lps, severity=severity, sudden=sudden, network=network
    )
    d["advice"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(advice).items()}
    return d


_NEAREST_LINK = {
    "water": "SELECT pipe_id, ST_Distance(geom_m, p) FROM water_pipes,"
    " ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 4544) AS p"
    " WHERE link_kind = 'pipe' ORDER BY geom_m <-> p LIMIT 1",
    "power": "SELECT line_id, ST_Distance(geom_m, p) FROM power_lines,"
    " ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 4544) AS p"
    " ORDER BY geom_m <-> p LIMIT 1",
}


def fetch_nearest_link(
    conn: psycopg.Connection, utility: str, lon: float, lat: float
) -> tuple[str, float] | None:
    """The water pipe or power line nearest to (lon, lat) [WGS 84], and its distance [m];
    None when that network is not loaded."""
    row = conn.execute(_NEAREST_LINK[utility], (lon, lat)).fetchone()
    return (str(row[0]), float(row[1])) if row else None


def fetch_isolation(
    conn: psycopg.Connection,
    network: str,
    link_id: str,
    *,
    unavailable: tuple[str, ...] = (),
    cache: NetworkCache | None = None,
    with_geometry: bool = True,
    leak_lps: float | None = None,
    severity: str | None = None,
    sudden: bool | None = None,
) -> dict[str, Any]:
    """Valves to close for a link, and the pipes, customers, facilities and population cut off.

    GeoJSON FeatureCollection (valves, segment and cut-off links, facilities, each with a
    ``role``) with the summary in its ``isolation`` member. ``leak_lps`` / ``severity`` /
    ``sudden`` size the event: the summary's ``advice`` is proportionate to it
    (``isolation_summary``).
    """
    net = network_of(conn, network, cache)
    iso = compute_isolation(net, link_id, unavailable=unavailable)
    restoration = compute_restoration(net, iso)
    nodes_layer, links_layer = NETWORKS[network]
    facilities = _facilities_served(conn, network, list(iso.nodes_without_supply))
    feats: list[dict] = []
    if with_geometry:
        valve_nodes = [v for v in iso.valves_to_close if v in net.nodes]
        valve_links = [v for v in iso.valves_to_close if v in net.links]
        seg = set(iso.segment_links)
        feats += layer_features(conn, nodes_layer, valve_nodes, "valve_to_close")
        feats += layer_features(conn, links_layer, valve_links, "valve_to_close")
        feats += layer_features(conn, links_layer, sorted(seg), "segment")
        feats += layer_features(
            conn,
            links_layer,
            [x for x in iso.links_without_supply if x not in seg],
            "without_supply",
        )
    feats += facilities
    summary = isolation_summary(
        iso, facilities, leak_lps=leak_lps, severity=severity, sudden=sudden, network=network
    )
    summary["restoration"] = [
        {
            "device": r.device,
            "customers_restored": r.customers_restored,
            "nodes_restored": len(r.nodes_restored),
        }
        for r in restoration
    ]
    return feature_collection(feats, isolation=summary)


def _sensors_on(conn: psycopg.Connection, utility: str, assets: list[str]) -> list[dict]:
    """The active sensors of ``utility`` on any of ``assets``: id, type and name."""
    rows = conn.execute(
        "SELECT sensor_id, sensor_type, name FROM sensors WHERE utility = %s"
        " AND status = 'active' AND asset_id = ANY(%s) ORDER BY sensor_id",
        (utility, assets),
    ).fetchall()
    return [{"sensor_id": r[0], "sensor_type": r[1], "name": r[2]} for r in rows]


def fetch_shutdown(
    conn: psycopg.Connection,
    network: str,
    devices: list[str],
    *,
    hours: float | None = None,
    cache: NetworkCache | None = None,
    with_geometry: bool = True,
) -> dict[str, Any]:
    """A planned shutdown: close ``devices`` and see who loses supply for the works.

    GeoJSON FeatureCollection (the devices closed, the links without supply, the facilities,
    each with a ``role``) with the summary in its ``shutdown`` member: the places, customers,
    population, facilities and sensors without supply, and with ``hours`` (the works' length)
    the customer-hours without supply. Its sensors are the ones a works entry must cover so
    that the low pressure it causes raises no leak (``cityops works shutdown --record``)."""
    net = network_of(conn, network, cache)
    sd = plan_shutdown(net, devices)
    facilities = _facilities_served(conn, network, list(sd.nodes_without_supply))
    assets = [*sd.devices, *sd.nodes_without_supply, *sd.links_without_supply]
    sensors = _sensors_on(conn, network, assets)
    feats: list[dict] = []
    if with_geometry:
        nodes_layer, links_layer = NETWORKS[network]
        feats += layer_features(
            conn, nodes_layer, [d for d in sd.devices if d in net.nodes], "device_to_close"
        )
        feats += layer_features(
            conn, links_layer, [d for d in sd.devices if d in net.links], "device_to_close"
        )
        feats += layer_features(conn, links_layer, list(sd.links_without_supply), "without_supply")
    feats += facilities
    summary: dict[str, Any] = {
        k: list(v) if isinstance(v, tuple) else v for k, v in asdict(sd).items()
    }
    summary["network"] = network
    summary["facilities_without_supply"] = [f["id"] for f in facilities]
    summary["sensors_without_supply"] = sensors
    summary["persons_per_household"] = PERSONS_PER_HOUSEHOLD
    if hours is not None:
        summary["hours"] = hours
        summary["customer_hours"] = round(sd.customers_without_supply * hours, 1)
    return feature_collection(feats, shutdown=summary)


def fetch_trace(
    conn: psycopg.Connection,
    network: str,
    start: str,
    direction: str,
    *,
    cache: NetworkCache | None = None,
    with_geometry: bool = True,
) -> dict[str, Any]:
    """Upstream or downstream trace from a node or link id, as GeoJSON with a ``trace`` summary."""
    if cache:
        net, dist = cache.get(conn, network)
    else:
        net = fetch_network(conn, network)
        dist = net.distances()
    tr = compute_trace(net, start, direction, distances=dist)
    nodes_layer, links_layer = NETWORKS[network]
    feats: list[dict] = []
    if with_geometry:
        feats += layer_features(conn, links_layer, list(tr.links), direction)
        feats += layer_features(conn, nodes_layer, list(tr.nodes), direction)
    facilities = _facilities_served(conn, network, list(tr.nodes))
    for f in facilities:
        f["properties"]["role"] = f"facility_{direction}"
    feats += facilities
    summary = {
        "start": tr.start,
        "direction": tr.direction,
        "nodes": len(tr.nodes),
        "links": len(tr.links),
        "customers": tr.customers,
        "facilities": [f["id"] for f in facilities],
    }
    return feature_collection(feats, trace=summary)


# a buffer [m, EPSG:4544] round the leak's geometry ({src}): point or gas pipe
_LEAK_AREA = "WITH buf AS (SELECT ST_Buffer({src}, %(r)s, 32) AS g)"
_LEAK_AT_POINT = "ST_Transform(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326), 4544)"
_LEAK_ON_PIPE = "(SELECT geom_m FROM gas_pipes WHERE pipe_id = %(pipe)s)"


def fetch_leak_area(
    conn: psycopg.Connection,
    *,
    radius_m: float,
    point: tuple[float, float] | None = None,
    pipe_id: str | None = None,
    cache: NetworkCache | None = None,
) -> dict[str, Any]:
    """A gas leak's affected area: a buffer [m, EPSG:4544] round a point or a gas pipe, with the
    facilities inside, the population (grid cells weighted by the share of their area inside,
    finest resolution loaded) and the gas valves inside the area."""
    if radius_m <= 0 or radius_m > 20_000:
        raise NetworkError("radius_m must be in (0, 20000]")
    if (point is None) == (pipe_id is None):
        raise NetworkError("give a point or a gas pipe id")
    area_sql = sql.SQL(_LEAK_AREA).format(
        src=sql.SQL(_LEAK_AT_POINT if point is not None else _LEAK_ON_PIPE)
    )
    params = {
        "lon": point[0] if point else None,
        "lat": point[1] if point else None,
        "pipe": pipe_id,
        "r": radius_m,
    }
    area_geojson, area_m2, population = _fetch_leak_buffer(conn, area_sql, params, pipe_id)
    facilities = _facilities_in_leak_area(conn, area_sql, params)
    area = {
        "type": "Feature",
        "id": "affected_area",
        "properties": {"role": "affected_area", "radius_m": radius_m, "area_m2": area_m2},
        "geometry": json.loads(area_geojson),
    }
    summary = {
        "radius_m": radius_m,
        "area_m2": area_m2,
        "population": round(float(population)),
        "population_demo": _population_is_demo(conn),
        "facilities": [f["id"] for f in facilities],
        "gas_valves_in_area": _gas_valves_in_leak_area(conn, area_sql, params),
    }
    if pipe_id is not None:
        # on a pipe: which valves stop the gas, and who is without gas then
        iso = compute_isolation(network_of(conn, "gas", cache), pipe_id)
        served = _facilities_served(conn, "gas", list(iso.nodes_without_supply))
        summary["isolation"] = isolation_summary(iso, served, network="gas")
    return feature_collection([area, *facilities], leak=summary)


def _fetch_leak_buffer(
    conn: psycopg.Connection, area_sql: sql.Composable, params: dict[str, Any], pipe_id: str | None
) -> tuple[str, float, float]:
    """(the area as GeoJSON in EPSG:4326, its area [m²], the population inside [persons])."""
    row = conn.execute(
        sql.SQL(
            """
        {area}, res AS (SELECT max(resolution) AS r FROM grid_cells)
        SELECT ST_AsGeoJSON(ST_Transform(buf.g, 4326), 7), ST_Area(buf.g),
               (SELECT coalesce(sum(c.population * ST_Area(ST_Intersection(c.geom_m, buf.g))
                                    / nullif(c.area_m2, 0)), 0)
                  FROM grid_cells c, res WHERE c.resolution = res.r AND ST_Intersects(c.geom_m, buf.g))
        FROM buf
        """
        ).format(area=area_sql),
        params,
    ).fetchone()
    if row is None or row[0] is None:
        raise NetworkError(f"no gas pipe {pipe_id!r}")
    return row[0], row[1], row[2]


def _facilities_in_leak_area(
    conn: psycopg.Connection, area_sql: sql.Composable, params: dict[str, Any]
) -> list[dict]:
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in get_layer("facilities").column_names)
    cur = conn.execute(
        sql.SQL(
            "{area} SELECT {cols}, 'facility_in_area' AS role, ST_AsGeoJSON(f.geom, 7) AS geometry"
            " FROM facilities f, buf WHERE ST_Intersects(f.geom_m, buf.g) ORDER BY f.facility_id"
        ).format(area=area_sql, cols=cols),
        params,
    )
    return rows_to_features(cur, "facility_id")


def _gas_valves_in_leak_area(
    conn: psycopg.Connection, area_sql: sql.Composable, params: dict[str, Any]
) -> list[str]:
    rows = conn.execute(
        sql.SQL(
            "{area} SELECT n.node_id FROM gas_nodes n, buf"
            " WHERE n.kind = 'valve' AND ST_Intersects(n.geom_m, buf.g) ORDER BY n.node_id"
        ).format(area=area_sql),
        params,
    ).fetchall()
    return [r[0] for r in rows]


def _population_is_demo(conn: psycopg.Connection) -> bool:
    """Whether the grid cells' population is a demo estimate (yes when unknown)."""
    row = conn.execute("SELECT demo FROM gis_layers WHERE name = 'grid_cells'").fetchone()
    return bool((row or [True])[0])
