"""The planners' HTTP API: a Flask blueprint over the gis functions (JSON, CSV, GeoPackage).

Mount ``create_gis_blueprint(database_url)`` in any Flask app (the dashboard's server), or run
``create_gis_app`` (also serving OGC API - Features under ``/ogc``) with ``cityops gis serve``.
Routes (all GET; answers are GeoJSON unless ``format=csv`` or ``format=gpkg``):

- ``/layers`` and ``/layers/<name>?zoom=&bbox=`` (simplified per zoom band)
- ``/query?layer=&where=&district=&point=&feature=&radius_m=&nearest=&near=&alerts=``
- ``/isolation/<network>/<link_id>?unavailable=a,b``
- ``/trace/<network>/<start>?direction=downstream|upstream``
- ``/leak?point=lon,lat|pipe=ID&radius_m=``
- ``/state?by=district|grid&resolution=&zoom=``
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gis.analysis import NetworkCache, fetch_isolation, fetch_leak_area, fetch_trace
from gis.export import render, write_gpkg
from gis.filters import PlannerQuery, QueryError, build_query, parse_point
from gis.multiscale import fetch_layer_for_zoom, fetch_sensor_state
from gis.ogc import get_pool
from gis.planner import fetch_planner_query
from gis.postgis import fetch_layer_metadata


def _respond(fc: dict[str, Any], fmt: str, name: str):
    from flask import Response

    if fmt == "gpkg":
        with tempfile.TemporaryDirectory() as tmp:
            path = write_gpkg(fc, Path(tmp) / f"{name}.gpkg", layer=name)
            body = path.read_bytes()
        return Response(
            body,
            mimetype="application/geopackage+sqlite3",
            headers={"Content-Disposition": f'attachment; filename="{name}.gpkg"'},
        )
    body, media = render(fc, fmt)
    headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'} if fmt == "csv" else {}
    return Response(body, content_type=media, headers=headers)


def _format(args) -> str:
    f = args.get("format", "geojson").lower()
    if f not in ("geojson", "csv", "gpkg"):
        raise QueryError("format must be geojson, csv or gpkg")
    return f


def _number(args, name: str, cast: Callable[[str], Any] = float, default: Any = None) -> Any:
    v = args.get(name)
    if v in (None, ""):
        return default
    try:
        return cast(v)
    except ValueError:
        raise QueryError(f"{name} must be a number") from None


def _bad_request(exc: Exception):
    """400 with the reason: QueryError, NetworkError, bad numbers and bad JSON are ValueErrors,
    unknown layers KeyErrors."""
    from flask import jsonify

    msg = exc.args[0] if exc.args else str(exc)
    return jsonify({"error": str(msg)}), 400


def _bbox(args) -> tuple[float, ...] | None:
    bbox = args.get("bbox")
    box = tuple(float(v) for v in bbox.split(",")) if bbox else None
    if box is not None and len(box) != 4:
        raise QueryError("bbox is minlon,minlat,maxlon,maxlat")
    return box


def _planner_query(request) -> PlannerQuery:
    """The question in the query string; a large polygon may come in a JSON body instead."""
    args = request.args
    text = args.get("polygon")
    polygon = json.loads(text) if text else None
    if request.method == "POST" and request.is_json:
        body = request.get_json(silent=True) or {}
        polygon = body.get("polygon", polygon)
    return build_query(
        args.get("layer", ""),
        where=args.getlist("where"),
        district=_number(args, "district", int),
        polygon=polygon,
        point=args.get("point"),
        feature=args.get("feature"),
        radius_m=_number(args, "radius_m"),
        nearest=_number(args, "nearest", int),
        near=args.getlist("near"),
        alerts=args.get("alerts"),
        limit=_number(args, "limit", int, 1000),
        offset=_number(args, "offset", int, 0),
    )


def create_gis_blueprint(database_url: str, *, cache: NetworkCache | None = None):
    """The planners' routes (module docstring) over the database at ``database_url``."""
    from flask import Blueprint

    bp = Blueprint("cityops_gis", __name__)
    bp.register_error_handler(ValueError, _bad_request)
    bp.register_error_handler(KeyError, _bad_request)
    _add_layer_routes(bp, database_url)
    _add_network_routes(bp, database_url, cache or NetworkCache())
    return bp


def _answer(database_url: str, fetch: Callable[..., dict[str, Any]], name: str, *args, **kwargs):
    """``fetch(conn, *args, **kwargs)`` in the requested format, as a file called ``name``."""
    from flask import request

    with get_pool(database_url).connection() as conn:
        fc = fetch(conn, *args, **kwargs)
    return _respond(fc, _format(request.args), name)


def _add_layer_routes(bp, database_url: str) -> None:
    """/layers, /layers/<name>, /query and /state."""
    from flask import jsonify, request

    @bp.route("/layers")
    def layers():
        with get_pool(database_url).connection() as conn:
            metadata = fetch_layer_metadata(conn)
        return jsonify(
            [
                {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in m.items()}
                for m in metadata
            ]
        )

    @bp.route("/layers/<name>")
    def layer(name: str):
        box, args = _bbox(request.args), request.args
        zoom, limit = _number(args, "zoom", float, 14), _number(args, "limit", int, 20_000)
        return _answer(database_url, fetch_layer_for_zoom, name, name, zoom, bbox=box, limit=limit)

    @bp.route("/query", methods=["GET", "POST"])
    def query():
        q = _planner_query(request)
        return _answer(database_url, fetch_planner_query, q.layer, q)

    @bp.route("/state")
    def state():
        args = request.args
        return _answer(
            database_url,
            fetch_sensor_state,
            "sensor_state",
            by=args.get("by", "district"),
            resolution=_number(args, "resolution", int),
            zoom=_number(args, "zoom", float, 10),
        )


def _add_network_routes(bp, database_url: str, nets: NetworkCache) -> None:
    """/isolation, /trace and /leak, on graphs kept in ``nets`` between requests."""
    from flask import request

    @bp.route("/isolation/<network>/<path:link_id>")
    def isolation(network: str, link_id: str):
        unavailable = tuple(v for v in request.args.get("unavailable", "").split(",") if v)
        name = f"isolation_{link_id}"
        return _answer(
            database_url,
            fetch_isolation,
            name,
            network,
            link_id,
            unavailable=unavailable,
            cache=nets,
        )

    @bp.route("/trace/<network>/<path:start>")
    def trace(network: str, start: str):
        direction = request.args.get("direction", "downstream")
        name = f"trace_{direction}_{start}"
        return _answer(database_url, fetch_trace, name, network, start, direction, cache=nets)

    @bp.route("/leak")
    def leak():
        point, args = request.args.get("point"), request.args
        return _answer(
            database_url,
            fetch_leak_area,
            "leak_area",
            radius_m=_number(args, "radius_m", float, 200.0),
            point=parse_point(point) if point else None,
            pipe_id=args.get("pipe"),
            cache=nets,
        )


def create_gis_app(database_url: str, *, base_url: str, with_ogc: bool = True):
    """A Flask app: the planners' API under ``/api`` and OGC API - Features under ``/ogc``."""
    from flask import Flask

    from gis.ogc import create_ogc_blueprint, fetch_pygeoapi_config

    app = Flask("cityops_gis")
    app.url_map.strict_slashes = False
    app.register_blueprint(create_gis_blueprint(database_url), url_prefix="/api")
    if with_ogc:
        with get_pool(database_url).connection() as conn:
            cfg = fetch_pygeoapi_config(conn, database_url, base_url=f"{base_url}/ogc")
        app.register_blueprint(create_ogc_blueprint(cfg, url_prefix="/ogc"))
    return app
