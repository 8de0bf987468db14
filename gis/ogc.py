"""OGC API - Features over the PostGIS layers, served by pygeoapi 0.21.

pygeoapi's own PostgreSQL provider needs SQLAlchemy's GeoAlchemy2 and psycopg2, which cityops does
not ship (docs/decisions/0050-ogc-provider.md); ``CityopsPostGISProvider`` is a small pygeoapi
feature provider on psycopg 3 with the same configuration keys (``table``, ``id_field``,
``geom_field``, ``time_field``), plugged in by dotted path. It supports bbox, datetime,
limit/offset paging, property equality filters, sortby, properties, skipGeometry, resulttype=hits
and CQL2 filters (``gis.cql``).

``build_pygeoapi_config`` writes the configuration for a database URL; ``create_ogc_app`` wraps
pygeoapi's API in a Flask app (so a config dict, not an environment variable, drives it);
``cityops gis serve-ogc`` serves it.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from pygeoapi.provider.base import (
    BaseProvider,
    ProviderConnectionError,
    ProviderInvalidQueryError,
    ProviderItemNotFoundError,
    ProviderQueryError,
)

from gis.cql import CqlError, translate_cql
from gis.layers import CHENGDU_BOUNDS, LAYERS

_POOLS: dict[str, Any] = {}
_POOLS_LOCK = threading.Lock()
_FIELDS: dict[tuple[str, str], dict[str, dict[str, str]]] = {}

_PG_JSON_TYPES = {
    "integer": "integer",
    "smallint": "integer",
    "bigint": "integer",
    "double precision": "number",
    "real": "number",
    "numeric": "number",
    "boolean": "boolean",
    "timestamp with time zone": "string",
    "timestamp without time zone": "string",
    "date": "string",
}


def get_pool(url: str):
    """One small connection pool per database, created on first use (never at import)."""
    from psycopg_pool import ConnectionPool

    with _POOLS_LOCK:
        pool = _POOLS.get(url)
        if pool is None:
            pool = ConnectionPool(
                url,
                min_size=1,
                max_size=8,
                kwargs={
                    "autocommit": True,
                    "options": "-c statement_timeout=10000 -c timezone=UTC -c jit=off",
                },
                open=True,
                name="cityops-ogc",
            )
            _POOLS[url] = pool
        return pool


def close_pools() -> None:
    with _POOLS_LOCK:
        for pool in _POOLS.values():
            pool.close()
        _POOLS.clear()


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


class CityopsPostGISProvider(BaseProvider):
    """pygeoapi feature provider for one PostGIS table (psycopg 3)."""

    def __init__(self, provider_def: dict[str, Any]) -> None:
        super().__init__(provider_def)
        data = provider_def["data"]
        self.url = data["url"] if isinstance(data, dict) else str(data)
        self.table = provider_def["table"]
        self.geom_field = provider_def.get("geom_field", "geom")
        self.metric_field = provider_def.get("metric_field")  # e.g. geom_m (EPSG:4544)
        self.hidden = set(provider_def.get("hidden_fields", [])) | {self.geom_field}
        if self.metric_field:
            self.hidden.add(self.metric_field)
        self.get_fields()

    # --- schema
    def get_fields(self) -> dict[str, dict[str, str]]:
        key = (self.url, self.table)
        if key not in _FIELDS:
            try:
                with get_pool(self.url).connection() as conn:
                    rows = conn.execute(
                        "SELECT column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
                        (self.table,),
                    ).fetchall()
            except Exception as exc:
                raise ProviderConnectionError(f"cannot read {self.table}: {exc}") from exc
            fields: dict[str, dict[str, str]] = {}
            for name, typ in rows:
                if name in self.hidden or typ == "USER-DEFINED":
                    continue
                f = {"type": _PG_JSON_TYPES.get(typ, "string")}
                if typ.startswith("timestamp"):
                    f["format"] = "date-time"
                fields[name] = f
            _FIELDS[key] = fields
        self._fields = _FIELDS[key]
        return self._fields

    # --- queries
    def _metric(self) -> sql.Composable:
        if self.metric_field:
            return sql.Identifier(self.metric_field)
        return sql.SQL("ST_Transform({}, 4544)").format(sql.Identifier(self.geom_field))

    def _where(self, bbox, datetime_, properties, filterq) -> tuple[sql.Composable, list[Any]]:
        parts: list[sql.Composable] = []
        params: list[Any] = []
        g = sql.Identifier(self.geom_field)
        if bbox:
            if len(bbox) != 4:
                raise ProviderInvalidQueryError("bbox needs four numbers (2D)")
            parts.append(sql.SQL("{} && ST_MakeEnvelope(%s, %s, %s, %s, 4326)").format(g))
            params.extend(float(b) for b in bbox)
        if datetime_ not in (None, "../.."):
            if not self.time_field:
                raise ProviderInvalidQueryError("this collection has no time field")
            t = sql.Identifier(self.time_field)
            if "/" in datetime_:
                start, end = datetime_.split("/", 1)
                if start not in ("..", ""):
                    parts.append(sql.SQL("{} >= %s").format(t))
                    params.append(start)
                if end not in ("..", ""):
                    parts.append(sql.SQL("{} <= %s").format(t))
                    params.append(end)
            else:
                parts.append(sql.SQL("{} = %s").format(t))
                params.append(datetime_)
        for name, value in properties or []:
            if name not in self.fields:
                raise ProviderInvalidQueryError(f"unknown property {name}")
            parts.append(sql.SQL("{}::text = %s").format(sql.Identifier(name)))
            params.append(str(value))
        if filterq is not None:
            try:
                w, p = translate_cql(
                    filterq, self.fields.keys(), geom=self.geom_field, geom_m=self._metric()
                )
            except CqlError as exc:
                raise ProviderInvalidQueryError(str(exc)) from exc
            parts.append(w)
            params.extend(p)
        where = sql.SQL(" AND ").join(parts) if parts else sql.SQL("true")
        return where, params

    def _columns(self, select_properties, skip_geometry) -> list[str]:
        cols = list(self.fields)
        if select_properties:
            cols = [c for c in cols if c in select_properties or c == self.id_field]
        if self.properties:
            cols = [c for c in cols if c in self.properties or c == self.id_field]
        return cols

    def _feature(self, row: dict[str, Any], skip_geometry: bool) -> dict[str, Any]:
        geom = row.pop("__geom", None)
        fid = row.get(self.id_field)
        return {
            "type": "Feature",
            "id": _jsonable(fid),
            "geometry": None if skip_geometry or geom is None else json.loads(geom),
            "properties": {k: _jsonable(v) for k, v in row.items()},
        }

    def _order_by(self, sortby) -> sql.Composable:
        """The requested sort on known properties, else the id."""
        order = [
            sql.SQL("{} {}").format(
                sql.Identifier(s["property"]), sql.SQL("DESC" if s.get("order") == "-" else "ASC")
            )
            for s in (sortby or [])
            if s["property"] in self.fields
        ] or [sql.SQL("{} ASC").format(sql.Identifier(self.id_field))]
        return sql.SQL(", ").join(order)

    def query(
        self,
        offset=0,
        limit=10,
        resulttype="results",
        bbox=None,
        datetime_=None,
        properties=None,
        sortby=None,
        select_properties=None,
        skip_geometry=False,
        q=None,
        filterq=None,
        **kwargs,
    ) -> dict[str, Any]:
        where, params = self._where(bbox, datetime_, properties, filterq)
        table = sql.Identifier(self.table)
        items = sql.SQL(
            "SELECT {select}, {geom} AS __geom FROM {table} WHERE {where}"
            " ORDER BY {order} LIMIT %s OFFSET %s"
        ).format(
            select=sql.SQL(", ").join(
                sql.Identifier(c) for c in self._columns(select_properties, skip_geometry)
            ),
            geom=sql.SQL("NULL") if skip_geometry else self._geojson(),
            table=table,
            where=where,
            order=self._order_by(sortby),
        )
        try:
            with get_pool(self.url).connection() as conn:
                matched = conn.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE {}").format(table, where), params
                ).fetchone()[0]
                feats: list[dict[str, Any]] = []
                if resulttype != "hits":
                    rows = _dict_rows(conn, items, [*params, int(limit), int(offset)]).fetchall()
                    feats = [self._feature(r, skip_geometry) for r in rows]
        except (ProviderInvalidQueryError, ProviderQueryError):
            raise
        except psycopg.errors.DataError as exc:  # a malformed datetime or value in the request
            raise ProviderInvalidQueryError(f"bad value in the query: {exc}") from exc
        except Exception as exc:
            raise ProviderQueryError(f"query on {self.table} failed: {exc}") from exc
        return {
            "type": "FeatureCollection",
            "features": feats,
            "numberMatched": int(matched),
            "numberReturned": len(feats),
        }

    def get(self, identifier, **kwargs) -> dict[str, Any]:
        stmt = sql.SQL("SELECT {cols}, {geom} AS __geom FROM {t} WHERE {id}::text = %s").format(
            cols=sql.SQL(", ").join(sql.Identifier(c) for c in self.fields),
            geom=self._geojson(),
            t=sql.Identifier(self.table),
            id=sql.Identifier(self.id_field),
        )
        with get_pool(self.url).connection() as conn:
            row = _dict_rows(conn, stmt, (str(identifier),)).fetchone()
        if row is None:
            raise ProviderItemNotFoundError(f"no item {identifier} in {self.table}")
        return self._feature(row, False)

    def _geojson(self) -> sql.Composable:
        return sql.SQL("ST_AsGeoJSON({}, 7)").format(sql.Identifier(self.geom_field))


def _dict_rows(
    conn: psycopg.Connection, stmt: sql.Composed, params: Sequence[Any]
) -> psycopg.Cursor[dict[str, Any]]:
    from psycopg.rows import dict_row

    return conn.cursor(row_factory=dict_row).execute(stmt, params)


# collections served, with the time field where a layer has one
_TIME_FIELDS = {"sensors": "updated_at", "alert_locations": "raised_at"}
_EXTRA_COLLECTIONS = {
    "alert_locations": {
        "table": "alert_locations",
        "id": "alert_id",
        "title_zh": "告警位置",
        "title_en": "Alert locations",
        "description": "alerts with the location of their sensor (time: raised_at)",
    }
}


_CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
_APACHE = "https://www.apache.org/licenses/LICENSE-2.0"
_METADATA = {
    "identification": {
        "title": {"en": "cityops basic geographic database", "zh": "cityops 基础地理数据库"},
        "description": {
            "en": "Chengdu layers: districts, grid cells, water, gas and power networks, "
            "facilities and sensors",
            "zh": "成都市区县、网格、供水、燃气、电力管网、重点设施与传感器图层",
        },
        "keywords": ["Chengdu", "smart city", "PostGIS"],
        "keywords_type": "theme",
        "terms_of_service": _APACHE,
        "url": "https://github.com/cityops",
    },
    "license": {
        "name": "Apache-2.0 (demo layers); see each collection for its source",
        "url": _APACHE,
    },
    "provider": {"name": "cityops", "url": "https://github.com/cityops"},
    "contact": {"name": "cityops operations center"},
}


def build_pygeoapi_config(
    database_url: str,
    *,
    base_url: str = "http://127.0.0.1:5000",
    host: str = "127.0.0.1",
    port: int = 5000,
    layer_meta: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The pygeoapi configuration (as a dict) for the cityops layers in ``database_url``.

    ``layer_meta`` (from ``gis.postgis.fetch_layer_metadata``) adds titles, sources, licences
    and the demo flag to the collection descriptions.
    """
    meta = layer_meta or {}
    tables = {name: (layer.table, layer.id_column) for name, layer in LAYERS.items()}
    tables |= {k: (v["table"], v["id"]) for k, v in _EXTRA_COLLECTIONS.items()}
    resources = {
        name: _collection(name, table, id_col, database_url, meta.get(name, {}))
        for name, (table, id_col) in tables.items()
    }
    return {
        "server": {
            "bind": {"host": host, "port": port},
            "url": base_url,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "languages": ["zh-CN", "en-US"],
            "limits": {"default_items": 100, "max_items": 10000},
            "map": {"url": "", "attribution": ""},
            "pretty_print": False,
        },
        "logging": {"level": "ERROR"},
        "metadata": copy.deepcopy(_METADATA),  # pygeoapi may change its configuration
        "resources": resources,
    }


def fetch_pygeoapi_config(
    conn: psycopg.Connection, database_url: str, **options: Any
) -> dict[str, Any]:
    """``build_pygeoapi_config`` with the titles, sources, licences and demo flags of the layers
    in the database (``options``: base_url, host, port)."""
    from gis.postgis import fetch_layer_metadata

    meta = {m["name"]: m for m in fetch_layer_metadata(conn)}
    return build_pygeoapi_config(database_url, layer_meta=meta, **options)


def _collection(
    name: str, table: str, id_col: str, database_url: str, layer_meta: dict[str, Any]
) -> dict[str, Any]:
    """One collection: its titles, a description with source, licence and demo mark, and the
    provider over its table."""
    m = layer_meta | _EXTRA_COLLECTIONS.get(name, {})
    demo = " [DEMO DATA]" if m.get("demo") else ""
    about = str(m.get("description", "")).rstrip(".")
    desc = (
        f"{about + '.' if about else ''}{demo} Source: {m.get('source', 'cityops')}."
        f" Licence: {m.get('licence', 'see docs/gis.md')}."
    ).strip()
    provider: dict[str, Any] = {
        "type": "feature",
        "name": "gis.ogc.CityopsPostGISProvider",
        "data": {"url": database_url},
        "table": table,
        "id_field": id_col,
        "geom_field": "geom",
        "storage_crs": _CRS84,
    }
    if name in LAYERS and LAYERS[name].has_geom_m:
        provider["metric_field"] = "geom_m"
    if name in _TIME_FIELDS:
        provider["time_field"] = _TIME_FIELDS[name]
    return {
        "type": "collection",
        "title": {"en": m.get("title_en", name), "zh": m.get("title_zh", name)},
        "description": {"en": desc, "zh": desc},
        "keywords": ["Chengdu", "成都", name] + (["demo"] if demo else []),
        "extents": {"spatial": {"bbox": list(CHENGDU_BOUNDS), "crs": _CRS84}},
        "providers": [provider],
    }


def write_pygeoapi_config(config: dict[str, Any], path: Path) -> Path:
    """Write the configuration as pygeoapi's YAML (for running pygeoapi's own server)."""
    import yaml

    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def config_database_url(config: dict[str, Any]) -> str:
    """The database the collections of a pygeoapi config read (their providers' ``data.url``)."""
    for res in config.get("resources", {}).values():
        for prov in res.get("providers", []):
            data = prov.get("data")
            if isinstance(data, dict) and data.get("url"):
                return str(data["url"])
    raise ValueError("the configuration names no database (providers' data.url)")


class _ApiPerView:
    """One pygeoapi ``API`` per set of collections a principal may see, built on first use:
    the landing page, /collections and /openapi of a planner never name a restricted layer.
    There are few such sets (three classes, and the layer lists of scoped tokens); the oldest
    is dropped past ``max_views``."""

    def __init__(self, config: dict[str, Any], max_views: int = 32) -> None:
        self.config = config
        self.max_views = max_views
        self._apis: dict[frozenset[str], Any] = {}
        self._lock = threading.Lock()

    def get(self, names: frozenset[str]) -> Any:
        with self._lock:
            api = self._apis.get(names)
            if api is not None:
                return api
        from pygeoapi.api import API
        from pygeoapi.openapi import get_oas

        cfg = copy.deepcopy(self.config)
        cfg["resources"] = {k: v for k, v in cfg["resources"].items() if k in names}
        api = API(cfg, get_oas(cfg, fail_on_invalid_collection=False))
        with self._lock:
            if len(self._apis) >= self.max_views:
                self._apis.pop(next(iter(self._apis)))
            self._apis[names] = api
        return api


def create_ogc_blueprint(
    config: dict[str, Any], *, url_prefix: str = "", database_url: str | None = None
):
    """A Flask blueprint serving OGC API - Features from a pygeoapi config dict, every route
    but ``/healthz`` behind the access door (``gis.guard``): collections the principal may not
    read are left out of every listing and refused (403) when asked for by name.

    ``config['server']['url']`` must be the URL the blueprint is reached at (links use it).
    """
    from flask import Blueprint, request
    from pygeoapi import api as core_api
    from pygeoapi.api import itemtypes as itemtypes_api

    from gis.guard import current_principal, guard_blueprint, require_layers
    from gis.params import check_ogc_params

    url = database_url or config_database_url(config)
    apis = _ApiPerView(config)
    known = frozenset(config["resources"])
    bp = Blueprint("cityops_ogc", __name__, url_prefix=url_prefix or None)
    guard_blueprint(bp, url)
    bp.register_error_handler(ValueError, _bad_request)

    def view(collection_id: str | None = None, *, items: bool = False) -> Any:
        """The principal's pygeoapi, after the parameter bounds and the collection's class."""
        check_ogc_params(request.args, items=items)
        if collection_id is not None:
            if collection_id not in known:
                from flask import abort

                abort(404, description=f"no collection {collection_id[:40]!r}")
            require_layers([collection_id])
        from gis.guard import class_of

        p = current_principal()
        return apis.get(frozenset(n for n in known if p.may_read(n, class_of(n))))

    @bp.route("/")
    def landing():
        return _run_pygeoapi(view(), core_api.landing_page)

    @bp.route("/openapi")
    def openapi():
        return _run_pygeoapi(view(), core_api.openapi_)

    @bp.route("/conformance")
    def conformance():
        return _run_pygeoapi(view(), core_api.conformance)

    @bp.route("/collections")
    @bp.route("/collections/<path:collection_id>")
    def collections(collection_id=None):
        return _run_pygeoapi(view(collection_id), core_api.describe_collections, collection_id)

    @bp.route("/collections/<path:collection_id>/queryables")
    def queryables(collection_id):
        return _run_pygeoapi(
            view(collection_id), itemtypes_api.get_collection_queryables, collection_id
        )

    @bp.route("/collections/<path:collection_id>/schema")
    def schema(collection_id):
        return _run_pygeoapi(view(collection_id), core_api.get_collection_schema, collection_id)

    @bp.route("/collections/<path:collection_id>/items", methods=["GET", "POST"])
    def items(collection_id):
        api = view(collection_id, items=True)
        resp = _run_pygeoapi(api, itemtypes_api.get_collection_items, collection_id)
        return _exported(url, resp, collection_id)

    @bp.route("/collections/<path:collection_id>/items/<path:item_id>")
    def item(collection_id, item_id):
        api = view(collection_id, items=True)
        resp = _run_pygeoapi(api, itemtypes_api.get_collection_item, collection_id, item_id)
        return _exported(url, resp, collection_id)

    return bp


def _bad_request(exc: Exception):
    from gis.guard import error_response

    return error_response(400, str(exc.args[0] if exc.args else exc)[:500])


_RETURNED_RE = re.compile(rb'"numberReturned"\s*:\s*(\d+)')


def _exported(database_url: str, resp: Any, collection_id: str) -> Any:
    """An items answer above public: the watermark as a top-level ``cityops:export`` member
    (JSON answers) and a row in the security audit (every format)."""
    from gis.export import WATERMARK_KEY
    from gis.guard import class_of, record_export, watermark_for

    if resp.status_code != 200:
        return resp
    classification = class_of(collection_id)
    mark = watermark_for(classification, [collection_id])
    if mark is None:
        return resp
    body = resp.get_data()
    fmt = "html" if resp.mimetype == "text/html" else "json"
    if fmt == "json" and body.lstrip().startswith(b"{"):
        member = json.dumps({WATERMARK_KEY: mark}, ensure_ascii=False).encode()[1:-1]
        rest = body.lstrip()[1:]
        body = b"{" + member + (b"," if not rest.lstrip().startswith(b"}") else b"") + rest
        resp.set_data(body)
    m = _RETURNED_RE.search(body)
    record_export(
        database_url,
        classification=classification,
        layers=[collection_id],
        features=int(m.group(1)) if m else 1,
        size_bytes=len(body),
        fmt=fmt,
        route=_request_path(),
    )
    return resp


def _request_path() -> str:
    from flask import request

    return request.path


def _run_pygeoapi(api, handler, *args):
    """The Flask response of a pygeoapi handler for the current request."""
    from flask import make_response, request
    from pygeoapi.api import APIRequest

    req = APIRequest.from_flask(request, api.locales)
    if not req.is_valid():
        headers, status, content = api.get_format_exception(req)
    else:
        headers, status, content = handler(api, req, *args)
    if status >= 500:  # pygeoapi puts the provider's error text in its answer: keep it here
        from gis.guard import error_response, log

        log.error("pygeoapi %s answered %s: %.2000s", handler.__name__, status, content)
        return error_response(500, "internal error; it has been logged")
    resp = make_response(content, status)
    if headers:
        resp.headers = headers
    return resp


def create_ogc_app(config: dict[str, Any], *, database_url: str | None = None):
    """A Flask app serving OGC API - Features at its root (behind the access door, with the
    security headers, a 1 MB body limit and JSON errors; ``/healthz`` open)."""
    from flask import Flask

    from gis.guard import secure_app

    app = Flask("cityops_ogc")
    app.url_map.strict_slashes = False
    secure_app(app)
    app.register_blueprint(create_ogc_blueprint(config, database_url=database_url))
    return app
