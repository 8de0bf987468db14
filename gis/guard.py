"""The access door of the GIS HTTP surfaces (planners' API and OGC API) in Flask.

``guard_blueprint(bp, database_url)`` makes every route of a blueprint but its health check
ask ``access.http.authenticate`` first (a bearer token or the dashboard's session cookie) and
keeps the principal and the layers' data classes for the request; routes call
``require_layers`` before reading. ``secure_app(app)`` adds the security headers, the request
body limit and error answers without tracebacks. Exports above public go through
``record_export`` (security audit) with a watermark (``watermark_for``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from access.classes import highest_class
from access.http import AccessDenied, Principal, authenticate, require, security_headers
from access.tokens import record_security_event
from gis.export import build_watermark
from gis.ogc import get_pool
from gis.postgis import fetch_layer_classes

log = logging.getLogger("cityops.gis.http")
SHANGHAI = ZoneInfo("Asia/Shanghai")
MAX_BODY_BYTES = 1024 * 1024  # a CQL2-JSON filter or a drawn polygon is a few KiB
HEALTH_ENDPOINT = "healthz"
_PRINCIPAL = "cityops_principal"
_CLASSES = "cityops_layer_classes"


def error_response(status: int, message: str, headers: dict[str, str] | None = None):
    """A short JSON error (never a traceback), with the security headers."""
    from flask import jsonify

    resp = jsonify({"error": message, "status": status})
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def _denied(exc: AccessDenied):
    log.warning("refused %s: %s %s", _endpoint(), exc.status, exc.message)
    return error_response(exc.status, exc.message, exc.headers)


def _unexpected(exc: Exception):
    """Anything a route did not expect: logged with its traceback, answered in one line."""
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)
    log.exception("unexpected error in %s", _endpoint())
    return error_response(500, "internal error; it has been logged")


def _endpoint() -> str:
    from flask import request

    return f"{request.method} {request.path}"


def guard_blueprint(bp: Any, database_url: str) -> None:
    """Authenticate every request of ``bp`` except its health check; refusals are JSON."""
    from flask import g, request

    @bp.before_request
    def _authenticate():
        if (request.endpoint or "").endswith("." + HEALTH_ENDPOINT):
            return None
        t0 = time.perf_counter()
        with get_pool(database_url).connection() as conn:
            principal = authenticate(
                conn, dict(request.headers), request.cookies, datetime.now(UTC)
            )
            setattr(g, _CLASSES, fetch_layer_classes(conn))
        setattr(g, _PRINCIPAL, principal)
        g.cityops_auth_ms = (time.perf_counter() - t0) * 1000
        return None

    @bp.route("/" + HEALTH_ENDPOINT, endpoint=HEALTH_ENDPOINT)
    def _healthz():
        from flask import jsonify

        return jsonify({"status": "ok"})

    bp.register_error_handler(AccessDenied, _denied)
    bp.register_error_handler(Exception, _unexpected)

    @bp.after_request
    def _headers(resp):
        return with_security_headers(resp)


def with_security_headers(resp: Any) -> Any:
    from flask import request

    endpoint = request.endpoint or ""
    cacheable = endpoint == HEALTH_ENDPOINT or endpoint.endswith("." + HEALTH_ENDPOINT)
    for k, v in security_headers(resp.mimetype, cacheable=cacheable).items():
        resp.headers[k] = v
    return resp


def secure_app(app: Any) -> Any:
    """Security headers on every answer of ``app`` (404s too), the body limit, JSON errors."""
    from werkzeug.exceptions import HTTPException

    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.after_request(with_security_headers)

    def _http_error(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(AccessDenied, _denied)
    app.register_error_handler(Exception, _unexpected)

    @app.route("/" + HEALTH_ENDPOINT, endpoint=HEALTH_ENDPOINT)
    def _healthz():
        from flask import jsonify

        return jsonify({"status": "ok"})

    return app


def current_principal() -> Principal:
    from flask import g

    principal = getattr(g, _PRINCIPAL, None)
    if principal is None:  # a route outside guard_blueprint: never serve it anonymously
        raise AccessDenied(401, "authentication required", {"WWW-Authenticate": "Bearer"})
    return principal


def layer_classes() -> dict[str, str]:
    from flask import g

    return getattr(g, _CLASSES, {})


def class_of(layer: str) -> str:
    """A layer's data class; unknown names count as restricted."""
    return layer_classes().get(layer, "restricted")


def require_layers(layers: Iterable[str]) -> str:
    """403 unless the principal may read every layer; returns the answer's class (the highest)."""
    names = list(dict.fromkeys(layers))
    pairs = [(n, class_of(n)) for n in names]
    require(current_principal(), pairs)
    return highest_class(c for _, c in pairs)


def visible(layers: Iterable[str]) -> list[str]:
    """The layers the principal may see, in the given order (others are left out unnamed)."""
    p = current_principal()
    return [n for n in layers if p.may_read(n, class_of(n))]


def watermark_for(classification: str, layers: list[str]) -> dict[str, Any] | None:
    """The watermark of an export of ``classification`` (None for public data)."""
    if classification == "public":
        return None
    at = datetime.now(SHANGHAI).isoformat(timespec="seconds")
    return build_watermark(current_principal().username, at, classification, layers)


def record_export(
    database_url: str,
    *,
    classification: str,
    layers: list[str],
    features: int,
    size_bytes: int,
    fmt: str,
    route: str,
) -> None:
    """Record an export above public in ``security_audit`` (who, what, when, how much)."""
    if classification == "public":
        return
    p = current_principal()
    with get_pool(database_url).connection() as conn:
        record_security_event(
            conn,
            p.username,
            "export",
            ",".join(layers),
            {
                "via": p.via,
                "role": p.role,
                "classification": classification,
                "layers": layers,
                "features": features,
                "bytes": size_bytes,
                "format": fmt,
                "route": route,
            },
        )
