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
from pathlib import Path
from typing import Any

from gis.analysis import NetworkCache, fetch_isolation, fetch_leak_area, fetch_trace
from gis.export import render, write_gpkg
from gis.filters import QueryError, build_query, parse_point
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


def create_gis_blueprint(database_url: str, *, cache: NetworkCache | None = None):
    from flask import Blueprint, jsonify, request

    bp = Blueprint("cityops_gis", __name__)
    nets = cache or NetworkCache()

    def fmt() -> str:
        f = request.args.get("format", "geojson").lower()
        if f not in ("geojson", "csv", "gpkg"):
            raise QueryError("format must be geojson, csv or gpkg")
        return f

    def num(name: str, cast=float, default=None):
        v = request.args.get(name)
        if v in (None, ""):
            return default
        try:
            return cast(v)
        except ValueError:
            raise QueryError(f"{name} must be a number") from None

    @bp.errorhandler(ValueError)  # QueryError, NetworkError, bad numbers and bad JSON
    @bp.errorhandler(KeyError)
    def bad_request(exc):
        msg = exc.args[0] if exc.args else str(exc)
        return jsonify({"error": str(msg)}), 400

    @bp.route("/layers")
    def layers():
        with get_pool(database_url).connection() as conn:
            return jsonify(
                [
                    {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in m.items()}
                    for m in fetch_layer_metadata(conn)
                ]
            )

    @bp.route("/layers/<name>")
    def layer(name: str):
        bbox = request.args.get("bbox")
        box = tuple(float(v) for v in bbox.split(",")) if bbox else None
        if box is not None and len(box) != 4:
            raise QueryError("bbox is minlon,minlat,maxlon,maxlat")
        with get_pool(database_url).connection() as conn:
            fc = fetch_layer_for_zoom(
                conn, name, num("zoom", float, 14), bbox=box, limit=num("limit", int, 20_000)
            )
        return _respond(fc, fmt(), name)

    @bp.route("/query", methods=["GET", "POST"])
    def query():
        args = request.args
        text = args.get("polygon")
        polygon = json.loads(text) if text else None
        if request.method == "POST" and request.is_json:  # a large polygon goes in the body
            body = request.get_json(silent=True) or {}
            polygon = body.get("polygon", polygon)
        q = build_query(
            args.get("layer", ""),
            where=args.getlist("where"),
            district=num("district", int),
            polygon=polygon,
            point=args.get("point"),
            feature=args.get("feature"),
            radius_m=num("radius_m"),
            nearest=num("nearest", int),
            near=args.getlist("near"),
            alerts=args.get("alerts"),
            limit=num("limit", int, 1000),
            offset=num("offset", int, 0),
        )
        with get_pool(database_url).connection() as conn:
            fc = fetch_planner_query(conn, q)
        return _respond(fc, fmt(), q.layer)

    @bp.route("/isolation/<network>/<path:link_id>")
    def isolation(network: str, link_id: str):
        unavailable = tuple(v for v in request.args.get("unavailable", "").split(",") if v)
        with get_pool(database_url).connection() as conn:
            fc = fetch_isolation(conn, network, link_id, unavailable=unavailable, cache=nets)
        return _respond(fc, fmt(), f"isolation_{link_id}")

    @bp.route("/trace/<network>/<path:start>")
    def trace(network: str, start: str):
        direction = request.args.get("direction", "downstream")
        with get_pool(database_url).connection() as conn:
            fc = fetch_trace(conn, network, start, direction, cache=nets)
        return _respond(fc, fmt(), f"trace_{direction}_{start}")

    @bp.route("/leak")
    def leak():
        point = request.args.get("point")
        with get_pool(database_url).connection() as conn:
            fc = fetch_leak_area(
                conn,
                radius_m=num("radius_m", float, 200.0),
                point=parse_point(point) if point else None,
                pipe_id=request.args.get("pipe"),
                cache=nets,
            )
        return _respond(fc, fmt(), "leak_area")

    @bp.route("/state")
    def state():
        with get_pool(database_url).connection() as conn:
            fc = fetch_sensor_state(
                conn,
                by=request.args.get("by", "district"),
                resolution=num("resolution", int),
                zoom=num("zoom", float, 10),
            )
        return _respond(fc, fmt(), "sensor_state")

    return bp


def create_gis_app(database_url: str, *, base_url: str, with_ogc: bool = True):
    """A Flask app: the planners' API under ``/api`` and OGC API - Features under ``/ogc``."""
    from flask import Flask

    from gis.ogc import build_pygeoapi_config, create_ogc_blueprint

    app = Flask("cityops_gis")
    app.url_map.strict_slashes = False
    app.register_blueprint(create_gis_blueprint(database_url), url_prefix="/api")
    if with_ogc:
        with get_pool(database_url).connection() as conn:
            meta = {m["name"]: m for m in fetch_layer_metadata(conn)}
        cfg = build_pygeoapi_config(database_url, base_url=f"{base_url}/ogc", layer_meta=meta)
        app.register_blueprint(create_ogc_blueprint(cfg, url_prefix="/ogc"))
    return app
