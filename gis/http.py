"""The planners' HTTP API: a Flask blueprint over the gis functions (JSON, CSV, GeoPackage).

Mount ``create_gis_blueprint(database_url)`` in any Flask app (the dashboard's server), or run
``create_gis_app`` (also serving OGC API - Features under ``/ogc``) with ``cityops gis serve``.
Routes (all GET; answers are GeoJSON unless ``format=csv`` or ``format=gpkg``):

- ``/layers`` and ``/layers/<name>?zoom=&bbox=`` (simplified per zoom band)
- ``/query?layer=&where=&district=&point=&feature=&radius_m=&nearest=&near=&alerts=``
- ``/isolation/<network>/<link_id>?unavailable=a,b``
- ``/shutdown/<network>?devices=V1,V2&hours=`` (a planned shutdown: who loses supply)
- ``/trace/<network>/<start>?direction=downstream|upstream``
- ``/renewal/<network>?top=&weights=age=0.4,...&window_years=`` (water or gas: the pipes to
  renew first, each part of the score shown; gis/renewal.py)
- ``/leak?point=lon,lat|pipe=ID&radius_m=``
- ``/state?by=district|grid&resolution=&zoom=``
- ``/dictionary?format=json|csv`` (the data dictionary: gis/dictionary.py)
- ``/healthz`` (the only route without a login)

Every other route needs an API token (``Authorization: Bearer cot_...``, ``cityops tokens
create``) or the dashboard's session cookie, and reads only the layers the principal's role and
token allow (``gis.guard``, ``access``; docs/decisions/0071). Parameters are bounded
(``gis.params``): a bad one is a 400 with the reason. Answers above public are watermarked and
recorded in ``security_audit``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cityops.kernel.crypto import (
    list_keys,
    load_keyring,
    read_active,
    sm2_public_path,
    sm2_sign,
)
from gis.analysis import NetworkCache, fetch_isolation, fetch_leak_area, fetch_trace
from gis.export import FORMATS, export_bytes
from gis.filters import PlannerQuery, build_query, parse_point, query_layers
from gis.guard import (
    guard_blueprint,
    record_export,
    require_layers,
    secure_app,
    visible,
    watermark_for,
)
from gis.layers import LAYERS, NETWORKS
from gis.multiscale import fetch_layer_for_zoom, fetch_sensor_state
from gis.ogc import get_pool
from gis.params import (
    MAX_NEAREST,
    MAX_RADIUS_M,
    ParamError,
    check_lengths,
    parse_bbox,
    parse_choice,
    parse_float,
    parse_ident,
    parse_int,
    parse_limit,
    parse_offset,
    parse_zoom,
)
from gis.planner import fetch_planner_query
from gis.postgis import fetch_layer_metadata

MAX_UNAVAILABLE = 100  # seized valves named in one isolation question
MAX_SHUTDOWN_DEVICES = 200  # valves or switches closed in one planned shutdown


SIGNATURE_HEADER = "X-Cityops-Signature-SM2"


def _respond(fc: dict[str, Any], fmt: str, name: str, watermark: dict[str, Any] | None):
    """The answer as a file; with a signing key, its SM2 signature (over exactly these bytes,
    DER, base64) in ``X-Cityops-Signature-SM2: keyid=<id>,sm2=<sig>``: a receiver saves the
    body and the decoded signature and runs ``cityops verify`` with ``/api/signing-key``."""
    from flask import Response, current_app

    body, media = export_bytes(fc, fmt, name=name, watermark=watermark)
    headers = {}
    if fmt in ("csv", "gpkg"):
        headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    keyring = current_app.config.get("CITYOPS_KEYRING")
    if keyring is not None and keyring.can_sign:
        key_id, key = keyring.active_sm2()
        sig = base64.b64encode(sm2_sign(key, body)).decode()
        headers[SIGNATURE_HEADER] = f"keyid={key_id},sm2={sig}"
    return Response(body, content_type=media, headers=headers)


def _format(args) -> str:
    return parse_choice(args.get("format"), "format", FORMATS, "geojson")


def _bad_request(exc: Exception):
    """400 with the reason: QueryError, NetworkError, bad numbers and bad JSON are ValueErrors,
    unknown layers KeyErrors."""
    from gis.guard import error_response

    msg = exc.args[0] if exc.args else str(exc)
    return error_response(400, str(msg)[:500])


def _not_found(what: str):
    from flask import abort

    abort(404, description=what)


def _planner_query(request) -> PlannerQuery:
    """The question in the query string; a large polygon may come in a JSON body instead."""
    args = request.args
    text = args.get("polygon")
    polygon = json.loads(text) if text else None
    if request.method == "POST":
        if not request.is_json:
            raise ParamError('a POST body must be JSON: {"polygon": <GeoJSON geometry>}')
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ParamError('the body must be a JSON object: {"polygon": <GeoJSON geometry>}')
        polygon = body.get("polygon", polygon)
    if polygon is not None and not isinstance(polygon, dict):
        raise ParamError("polygon is not a GeoJSON geometry")
    layer = args.get("layer", "")
    if layer not in LAYERS:
        raise ParamError(f"unknown layer {layer[:40]!r}; see /layers")
    return build_query(
        layer,
        where=args.getlist("where"),
        district=args.get("district", "")[:40] or None,  # a name or an adcode
        polygon=polygon,
        point=args.get("point"),
        feature=args.get("feature"),
        radius_m=parse_float(args.get("radius_m"), "radius_m", default=None, lo=0, hi=MAX_RADIUS_M),
        nearest=parse_int(args.get("nearest"), "nearest", default=None, lo=1, hi=MAX_NEAREST),
        near=args.getlist("near"),
        alerts=args.get("alerts"),
        limit=parse_limit(args.get("limit")),
        offset=parse_offset(args.get("offset")),
    )


def create_gis_blueprint(database_url: str, *, cache: NetworkCache | None = None):
    """The planners' routes (module docstring) over the database at ``database_url``, each
    behind the access door (``gis.guard``)."""
    from flask import Blueprint, request

    bp = Blueprint("cityops_gis", __name__)
    guard_blueprint(bp, database_url)
    bp.register_error_handler(ValueError, _bad_request)
    bp.register_error_handler(KeyError, _bad_request)

    @bp.before_request
    def _bounded():
        check_lengths(request.args)

    _add_layer_routes(bp, database_url)
    _add_network_routes(bp, database_url, cache or NetworkCache())
    return bp


def _answer(
    database_url: str,
    layers: list[str],
    fetch: Callable[..., dict[str, Any]],
    name: str,
    *args,
    **kwargs,
):
    """``fetch(conn, *args, **kwargs)`` in the requested format, as a file called ``name``,
    after checking that the principal may read ``layers``; watermarked and recorded above
    public."""
    from flask import request

    fmt = _format(request.args)
    classification = require_layers(layers)
    with get_pool(database_url).connection() as conn:
        fc = fetch(conn, *args, **kwargs)
    mark = watermark_for(classification, layers)
    resp = _respond(fc, fmt, name, mark)
    record_export(
        database_url,
        classification=classification,
        layers=list(dict.fromkeys(layers)),
        features=len(fc.get("features") or []),
        size_bytes=resp.content_length or 0,
        fmt=fmt,
        route=request.path,
    )
    return resp


def _add_layer_routes(bp, database_url: str) -> None:
    """/layers, /layers/<name>, /query and /state."""
    from flask import jsonify, request

    @bp.route("/layers")
    def layers():
        with get_pool(database_url).connection() as conn:
            metadata = fetch_layer_metadata(conn)
        shown = set(visible(m["name"] for m in metadata))
        return jsonify(
            [
                {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in m.items()}
                for m in metadata
                if m["name"] in shown
            ]
        )

    @bp.route("/layers/<name>")
    def layer(name: str):
        if name not in LAYERS:
            _not_found(f"no layer {name[:40]!r}; see /layers")
        args = request.args
        box = parse_bbox(args.get("bbox"))
        zoom = parse_zoom(args.get("zoom"), 14)
        limit, offset = parse_limit(args.get("limit")), parse_offset(args.get("offset"))
        return _answer(
            database_url,
            [name],
            fetch_layer_for_zoom,
            name,
            name,
            zoom,
            bbox=box,
            limit=limit,
            offset=offset,
        )

    @bp.route("/query", methods=["GET", "POST"])
    def query():
        q = _planner_query(request)
        return _answer(database_url, query_layers(q), fetch_planner_query, q.layer, q)

    @bp.route("/signing-key")
    def signing_key():
        """The SM2 public key (PEM) that signs this server's exports: the active one, or the
        one ``?keyid=`` names (an older export's)."""
        from flask import Response, abort, current_app

        keys_dir = current_app.config.get("CITYOPS_KEYS_DIR")
        if keys_dir is None:
            abort(404)
        known = {k.key_id for k in list_keys(keys_dir) if k.kind == "sm2" and k.source != "revoked"}
        key_id = request.args.get("keyid") or read_active(keys_dir).get("sm2", "")
        if key_id not in known:
            abort(404)
        pem = sm2_public_path(keys_dir, key_id).read_bytes()
        return Response(pem, content_type="application/x-pem-file", headers={"X-Key-Id": key_id})

    @bp.route("/dictionary")
    def dictionary():
        """The data dictionary (structure, names and rules; no data): JSON or CSV."""
        from flask import Response, jsonify

        from gis.dictionary import dictionary_csv
        from gis.dictionary_db import fetch_dictionary

        fmt = parse_choice(request.args.get("format"), "format", ("json", "csv"), "json")
        with get_pool(database_url).connection() as conn:
            doc = fetch_dictionary(conn)
        if fmt == "json":
            return jsonify(doc)
        return Response(
            "\ufeff" + dictionary_csv(doc),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="cityops-dictionary.csv"'},
        )

    @bp.route("/state")
    def state():
        args = request.args
        by = parse_choice(args.get("by"), "by", ("district", "grid"), "district")
        area = "districts" if by == "district" else "grid_cells"
        return _answer(
            database_url,
            ["sensors", "alert_locations", area],
            fetch_sensor_state,
            "sensor_state",
            by=by,
            resolution=parse_int(args.get("resolution"), "resolution", default=None, lo=0, hi=15),
            zoom=parse_zoom(args.get("zoom"), 10),
        )


def _network_layers(network: str) -> list[str]:
    if network not in NETWORKS:
        _not_found(f"no network {network[:40]!r}; water, gas or power")
    return list(NETWORKS[network])


def _add_network_routes(bp, database_url: str, nets: NetworkCache) -> None:
    """/isolation, /shutdown, /renewal, /trace and /leak, on graphs kept in ``nets`` between
    requests."""
    from flask import request

    @bp.route("/isolation/<network>/<path:link_id>")
    def isolation(network: str, link_id: str):
        layers = [*_network_layers(network), "facilities"]  # a valve plan: restricted
        parse_ident(link_id, "link id")
        unavailable = tuple(v for v in request.args.get("unavailable", "").split(",") if v)
        if len(unavailable) > MAX_UNAVAILABLE:
            raise ParamError(f"at most {MAX_UNAVAILABLE} unavailable valves")
        for v in unavailable:
            parse_ident(v, "unavailable")
        return _answer(
            database_url,
            layers,
            fetch_isolation,
            f"isolation_{link_id}",
            network,
            link_id,
            unavailable=unavailable,
            cache=nets,
        )

    @bp.route("/shutdown/<network>")
    def shutdown(network: str):
        from gis.analysis import fetch_shutdown

        layers = [*_network_layers(network), "facilities"]  # names valves: restricted
        devices = [d for d in request.args.get("devices", "").split(",") if d]
        if not devices:
            raise ParamError("devices: name the valves (or switches) to close, comma-separated")
        if len(devices) > MAX_SHUTDOWN_DEVICES:
            raise ParamError(f"at most {MAX_SHUTDOWN_DEVICES} devices in one shutdown")
        for d in devices:
            parse_ident(d, "devices")
        hours = parse_float(request.args.get("hours"), "hours", default=None, lo=0.0, hi=720.0)
        return _answer(
            database_url,
            layers,
            fetch_shutdown,
            f"shutdown_{network}",
            network,
            devices,
            hours=hours,
            cache=nets,
        )

    @bp.route("/renewal/<network>")
    def renewal(network: str):
        from gis.renewal import Weights
        from gis.renewal_db import NETWORKS as RENEWED
        from gis.renewal_db import fetch_renewal

        if network not in RENEWED:
            _not_found(f"no renewal priority for {network[:40]!r}; water or gas")
        args = request.args
        weights = Weights.parse(args.get("weights"))
        top = parse_int(args.get("top"), "top", default=100, lo=1, hi=10_000)
        window = parse_int(args.get("window_years"), "window_years", default=10, lo=1, hi=50)
        # the network's own layers: facilities enter only as a count per pipe (no id, no
        # place), unlike an isolation's answer, which lists them (restricted)
        return _answer(
            database_url,
            _network_layers(network),
            fetch_renewal,
            f"renewal_{network}",
            network,
            weights,
            top=top,
            window_years=window,
            cache=nets,
        )

    @bp.route("/trace/<network>/<path:start>")
    def trace(network: str, start: str):
        layers = _network_layers(network)
        parse_ident(start, "start")
        direction = parse_choice(
            request.args.get("direction"), "direction", ("downstream", "upstream"), "downstream"
        )
        name = f"trace_{direction}_{start}"
        return _answer(
            database_url, layers, fetch_trace, name, network, start, direction, cache=nets
        )

    @bp.route("/leak")
    def leak():
        point, args = request.args.get("point"), request.args
        pipe = args.get("pipe")
        if pipe is not None:
            parse_ident(pipe, "pipe")
        return _answer(
            database_url,
            ["gas_nodes", "gas_pipes", "facilities", "grid_cells"],
            fetch_leak_area,
            "leak_area",
            radius_m=parse_float(args.get("radius_m"), "radius_m", default=200.0, lo=0, hi=20_000),
            point=parse_point(point) if point else None,
            pipe_id=pipe,
            cache=nets,
        )


def create_gis_app(
    database_url: str, *, base_url: str, with_ogc: bool = True, keys_dir: str | None = None
):
    """A Flask app: the planners' API under ``/api`` and OGC API - Features under ``/ogc``,
    every route but ``/healthz`` (and ``/api/healthz``, ``/ogc/healthz``) behind the access door,
    with security headers, a 1 MB body limit and JSON errors without tracebacks."""
    from flask import Flask

    from gis.ogc import create_ogc_blueprint, fetch_pygeoapi_config

    app = Flask("cityops_gis")
    app.url_map.strict_slashes = False
    secure_app(app)
    if keys_dir:  # exports signed with SM2 (decision 0072); the public key at /api/signing-key
        app.config["CITYOPS_KEYRING"] = load_keyring(Path(keys_dir))
        app.config["CITYOPS_KEYS_DIR"] = Path(keys_dir)
    app.register_blueprint(create_gis_blueprint(database_url), url_prefix="/api")
    if with_ogc:
        with get_pool(database_url).connection() as conn:
            cfg = fetch_pygeoapi_config(conn, database_url, base_url=f"{base_url}/ogc")
        app.register_blueprint(
            create_ogc_blueprint(cfg, url_prefix="/ogc", database_url=database_url)
        )
    return app
