"""Planners' questions over PostGIS (adapter: SQL for spatial, attribute and alert queries).

Distances and buffers are computed in EPSG:4544 metres (``geom_m``, or an indexed
``ST_Transform(geom, 4544)`` on the foundation's tables); answers are GeoJSON in EPSG:4326.
Field names come only from the layer catalogue and go through ``sql.Identifier``; values are
always parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from gis.filters import AlertHistory, Filter, NearLayer, PlannerQuery, QueryError
from gis.layers import Layer, get_layer

_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def metric_geom(layer: Layer, alias: str) -> sql.Composable:
    """The layer's geometry in EPSG:4544, as an indexable expression."""
    if layer.has_geom_m:
        return sql.SQL("{}.geom_m").format(sql.Identifier(alias))
    return sql.SQL("ST_Transform({}.geom, 4544)").format(sql.Identifier(alias))


def _point_m(lon: float, lat: float, params: list[Any]) -> sql.Composable:
    params.extend([lon, lat])
    return sql.SQL("ST_Transform(ST_SetSRID(ST_MakePoint(%s, %s), 4326), 4544)")


def _feature_m(layer_name: str, fid: str, params: list[Any]) -> sql.Composable:
    lay = get_layer(layer_name)
    params.append(fid)
    return sql.SQL("(SELECT {} FROM {} f WHERE f.{} = %s)").format(
        metric_geom(lay, "f"), sql.Identifier(lay.table), sql.Identifier(lay.id_column)
    )


def filter_sql(filters: tuple[Filter, ...], alias: str, params: list[Any]) -> list[sql.Composable]:
    out: list[sql.Composable] = []
    for f in filters:
        col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(f.field))
        if f.op == "in":
            params.append(list(f.value))
            out.append(sql.SQL("{} = ANY(%s)").format(col))
        elif f.op == "like":
            params.append(f.value)
            out.append(sql.SQL("{}::text ILIKE %s").format(col))
        elif f.value is None:
            out.append(sql.SQL("{} IS NULL" if f.op == "=" else "{} IS NOT NULL").format(col))
        else:
            params.append(f.value)
            out.append(sql.SQL("{} {} %s").format(col, sql.SQL(_SQL_OPS[f.op])))
    return out


@dataclass(frozen=True, slots=True)
class _AlertCountSql:
    """The pieces of a planner statement that count each feature's alerts."""

    cte: sql.Composable  # WITH ... (ahead of the SELECT)
    cte_params: list[Any]
    join: sql.Composable  # LEFT JOINs onto the layer's alias t
    count: sql.Composable  # the count per feature, a bigint expression
    pre_filter: sql.Composable  # a cheap condition every feature with alerts passes


def _alert_count_sql(layer: Layer, a: AlertHistory, now: datetime) -> _AlertCountSql:
    """Alert history, counted per feature: by the sensors on its assets or within ``radius_m``."""
    cond = sql.SQL("al.kind = %s AND al.raised_at >= %s AND (%s::text IS NULL OR al.quantity = %s)")
    cond_params: list[Any] = [a.kind, now - timedelta(days=a.since_days), a.quantity, a.quantity]
    if a.radius_m is not None:
        return _alerts_within_sql(layer, cond, [*cond_params, a.radius_m])
    return _alerts_on_assets_sql(layer, cond, cond_params)


def _alerts_within_sql(
    layer: Layer, cond: sql.Composable, cond_params: list[Any]
) -> _AlertCountSql:
    """Alerts of the sensors within a radius [m] (the last parameter) of each feature."""
    # iterate over the few sensors that raised such alerts and probe the layer's metric
    # index round each, instead of probing sensors and alerts once per candidate feature
    fid = sql.Identifier(layer.id_column)
    cte = sql.SQL(
        "WITH acs AS MATERIALIZED (SELECT s.sensor_id, ST_Transform(s.geom, 4544) AS gm,"
        " count(*) AS n FROM alerts al JOIN sensors s ON s.sensor_id = al.sensor_id"
        " WHERE {cond} GROUP BY s.sensor_id, s.geom),"
        " acf AS MATERIALIZED (SELECT t2.{id} AS fid, sum(acs.n) AS n FROM acs"
        " JOIN {table} t2 ON ST_DWithin({gm2}, acs.gm, %s) GROUP BY t2.{id}) "
    ).format(cond=cond, id=fid, table=sql.Identifier(layer.table), gm2=metric_geom(layer, "t2"))
    return _AlertCountSql(
        cte,
        cond_params,
        join=sql.SQL(" LEFT JOIN acf ON acf.fid = t.{}").format(fid),
        count=sql.SQL("coalesce(acf.n, 0)::bigint"),
        pre_filter=sql.SQL("t.{} IN (SELECT fid FROM acf)").format(fid),
    )


def _alerts_on_assets_sql(
    layer: Layer, cond: sql.Composable, cond_params: list[Any]
) -> _AlertCountSql:
    """Alerts of the sensors on the feature (its id) or, for a link, on either end node."""
    # alerts are counted once per asset in a CTE and joined by hash on each key
    cte = sql.SQL(
        "WITH ac AS MATERIALIZED (SELECT s.asset_id, count(*) AS n FROM alerts al"
        " JOIN sensors s ON s.sensor_id = al.sensor_id WHERE s.asset_id IS NOT NULL AND {cond}"
        " GROUP BY s.asset_id) "
    ).format(cond=cond)
    keys = [layer.id_column] + (["from_node", "to_node"] if layer.role == "links" else [])
    join = sql.SQL("").join(
        sql.SQL(" LEFT JOIN ac {a} ON {a}.asset_id = t.{k}::text").format(
            a=sql.Identifier(f"ac{i}"), k=sql.Identifier(k)
        )
        for i, k in enumerate(keys)
    )
    count = " + ".join(f"coalesce(ac{i}.n, 0)" for i in range(len(keys)))
    # a feature can only pass if one of its keys has alerts: a cheap hashed pre-filter on the
    # scan, so the joins and the sort carry a few hundred rows instead of thousands
    pre_filter = sql.SQL("({})").format(
        sql.SQL(" OR ").join(
            sql.SQL("t.{}::text IN (SELECT asset_id FROM ac)").format(sql.Identifier(k))
            for k in keys
        )
    )
    return _AlertCountSql(cte, cond_params, join, sql.SQL(f"({count})::bigint"), pre_filter)


def _ref_m(q: PlannerQuery, params: list[Any]) -> sql.Composable:
    if q.point is not None:
        return _point_m(q.point[0], q.point[1], params)
    assert q.feature is not None
    return _feature_m(q.feature[0], q.feature[1], params)


def _extra_columns(
    q: PlannerQuery, gm: sql.Composable, alerts: _AlertCountSql | None, params: list[Any]
) -> sql.Composable:
    """``distance_m`` (with a point or feature) and ``alert_count`` (with alert history)."""
    extra: list[sql.Composable] = []
    if q.point is not None or q.feature is not None:
        extra.append(sql.SQL("ST_Distance({}, {}) AS distance_m").format(gm, _ref_m(q, params)))
    if alerts is not None:
        extra.append(sql.SQL("{} AS alert_count").format(alerts.count))
    return sql.SQL("").join(sql.SQL(", ") + e for e in extra)


def _near_sql(i: int, near: NearLayer, gm: sql.Composable, params: list[Any]) -> sql.Composable:
    """Some feature of another layer, passing its filters, within ``near.radius_m`` [m]."""
    other = get_layer(near.layer)
    alias = f"n{i}"
    conds = filter_sql(near.filters, alias, params)
    params.append(near.radius_m)
    conds.append(sql.SQL("ST_DWithin({}, {}, %s)").format(metric_geom(other, alias), gm))
    return sql.SQL("EXISTS (SELECT 1 FROM {} {} WHERE {})").format(
        sql.Identifier(other.table), sql.Identifier(alias), sql.SQL(" AND ").join(conds)
    )


def _where_sql(
    q: PlannerQuery, gm: sql.Composable, alerts: _AlertCountSql | None, params: list[Any]
) -> sql.Composable:
    """Every condition of the question, ANDed (``true`` when there is none)."""
    where = filter_sql(q.filters, "t", params)
    if q.district is not None:
        # a feature belongs to one district: the one its derived ``district_adcode`` names (a
        # link's midpoint, a node's place: gis/postgis.py), not every district it touches
        inside = sql.SQL(
            "ST_Intersects((SELECT geom FROM districts WHERE adcode = %s),"
            " ST_PointOnSurface(t.geom))"
        )
        if "district_adcode" in get_layer(q.layer).column_names:
            # (one loaded before the districts has none yet: where it lies, then)
            params += [q.district, q.district]
            where.append(
                sql.SQL("(t.district_adcode = %s OR (t.district_adcode IS NULL AND {}))").format(
                    inside
                )
            )
        else:
            params.append(q.district)
            where.append(inside)
    if q.polygon is not None:
        params.append(json.dumps(q.polygon))
        where.append(sql.SQL("ST_Intersects(t.geom, ST_SetSRID(ST_GeomFromGeoJSON(%s), 4326))"))
    if q.radius_m is not None:
        ref = _ref_m(q, params)
        params.append(q.radius_m)
        where.append(sql.SQL("ST_DWithin({}, {}, %s)").format(gm, ref))
    where += [_near_sql(i, near, gm, params) for i, near in enumerate(q.near)]
    if q.alerts is not None and alerts is not None:
        if q.alerts.more_than >= 0:
            where.append(alerts.pre_filter)
        params.append(q.alerts.more_than)
        where.append(sql.SQL("{} > %s").format(alerts.count))
    return sql.SQL(" AND ").join(where) if where else sql.SQL("true")


def build_planner_sql(
    q: PlannerQuery, *, now: datetime | None = None
) -> tuple[sql.Composed, list[Any]]:
    """The SQL and parameters answering ``q`` (pure: builds, does not run).

    Parameters are collected in the order their placeholders appear in the statement.
    """
    q.check()
    layer = get_layer(q.layer)
    gm = metric_geom(layer, "t")
    alerts = None
    if q.alerts is not None:
        alerts = _alert_count_sql(layer, q.alerts, now or datetime.now(UTC))
    extra_params: list[Any] = []
    extra = _extra_columns(q, gm, alerts, extra_params)
    where_params: list[Any] = []
    where = _where_sql(q, gm, alerts, where_params)
    order_params: list[Any] = []
    order: sql.Composable = sql.SQL("t.{}").format(sql.Identifier(layer.id_column))
    if q.nearest is not None:
        order = sql.SQL("{} <-> {}").format(gm, _ref_m(q, order_params))
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in layer.column_names)
    stmt = sql.SQL(
        "{with_}SELECT {cols}{extra}, t.geom AS geom FROM {table} t{join}"
        " WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s"
    ).format(
        with_=alerts.cte if alerts else sql.SQL(""),
        join=alerts.join if alerts else sql.SQL(""),
        cols=cols,
        extra=extra,
        table=sql.Identifier(layer.table),
        where=where,
        order=order,
    )
    limit = q.nearest if q.nearest is not None else q.limit
    cte_params = alerts.cte_params if alerts else []
    return stmt, [*cte_params, *extra_params, *where_params, *order_params, limit, q.offset]


def rows_to_features(cur: psycopg.Cursor, id_column: str) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description]  # type: ignore[union-attr]
    feats = []
    for row in cur.fetchall():
        props = dict(zip(names, row, strict=True))
        geom = props.pop("geometry")
        for k, v in props.items():
            if isinstance(v, datetime):
                props[k] = v.isoformat()
        feats.append(
            {
                "type": "Feature",
                "id": props.get(id_column),
                "properties": props,
                "geometry": json.loads(geom) if geom else None,
            }
        )
    return feats


def feature_collection(features: list[dict[str, Any]], **members: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": features, **members}


def resolve_district(conn: psycopg.Connection, name: str) -> int:
    """The adcode of a district named as planners say it: 锦江区, 锦江, Jinjiang District or
    Jinjiang (any case). QueryError naming the districts there are when none matches."""
    rows = conn.execute("SELECT adcode, name_zh, name_en FROM districts ORDER BY adcode").fetchall()
    key = name.strip().lower()
    for code, zh, en in rows:
        en_l = (en or "").lower()
        short_en = en_l.removesuffix(" district").removesuffix(" county").removesuffix(" city")
        if key in (zh.lower(), zh.rstrip("区县市").lower(), en_l, short_en):
            return int(code)
    known = "、".join(zh for _, zh, _ in rows) or "none loaded (cityops gis load-districts)"
    raise QueryError(
        f"no district named {name!r}; districts: {known}",
        "unknown_district",
        name=name,
        known_zh=[zh for _, zh, _ in rows],
        known_en=[en or zh for _, zh, en in rows],
    )


def fetch_planner_query(
    conn: psycopg.Connection, q: PlannerQuery, *, now: datetime | None = None
) -> dict[str, Any]:
    """Run a planner question; GeoJSON FeatureCollection in EPSG:4326."""
    if isinstance(q.district, str):
        q = replace(q, district=resolve_district(conn, q.district))
    stmt, params = build_planner_sql(q, now=now)
    layer = get_layer(q.layer)
    if q.feature is not None:
        ref = get_layer(q.feature[0])
        found = conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE {}::text = %s").format(
                sql.Identifier(ref.table), sql.Identifier(ref.id_column)
            ),
            (q.feature[1],),
        ).fetchone()
        if found is None:
            raise QueryError(
                f"no feature {q.feature[1]!r} in {q.feature[0]}",
                "no_feature",
                layer=q.feature[0],
                id=q.feature[1],
            )
    try:
        with conn.transaction():
            # short interactive queries: JIT compilation costs more than it saves (~100 ms)
            conn.execute("SET LOCAL jit = off")
            # the database writes the features' JSON: one text to parse instead of a row each
            row = conn.execute(
                sql.SQL(
                    "SELECT coalesce(json_agg(ST_AsGeoJSON(x.*, 'geom', 6)::json), '[]')::text"
                    " FROM ({}) x"
                ).format(stmt),
                params,
            ).fetchone()
            feats = msgspec.json.decode(row[0]) if row else []
            for f in feats:
                f["id"] = f["properties"].get(layer.id_column)
    except psycopg.errors.DataException as exc:
        raise QueryError(f"the database refused the question: {exc}", "refused") from exc
    return feature_collection(feats, layer=q.layer, numberReturned=len(feats))


# -- one feature, as someone picks it on a map ---------------------------------------------------
def fetch_feature(conn: psycopg.Connection, layer_name: str, fid: str) -> dict[str, Any] | None:
    """One feature of a layer by its id (attributes and geometry, GeoJSON), or None."""
    layer = get_layer(layer_name)
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in layer.column_names)
    cur = conn.execute(
        sql.SQL("SELECT {}, ST_AsGeoJSON(geom, 6) AS geometry FROM {} WHERE {}::text = %s").format(
            cols, sql.Identifier(layer.table), sql.Identifier(layer.id_column)
        ),
        (fid,),
    )
    feats = rows_to_features(cur, layer.id_column)
    return feats[0] if feats else None


def feature_assets(layer_name: str, feature: dict[str, Any]) -> list[str]:
    """The asset ids whose sensors belong to a feature: its id and, for a link, its end nodes
    (the alert-history question's rule)."""
    props = feature.get("properties") or {}
    keys = [get_layer(layer_name).id_column]
    if get_layer(layer_name).role == "links":
        keys += ["from_node", "to_node"]
    return [str(props[k]) for k in keys if props.get(k) is not None]


def fetch_asset_alerts(
    conn: psycopg.Connection, assets: list[str], *, limit: int = 20
) -> list[dict[str, Any]]:
    """The newest alerts of the sensors on ``assets`` (open or not), newest first."""
    rows = conn.execute(
        "SELECT al.alert_id, al.raised_at, al.severity, al.state, al.message_zh, al.message_en,"
        " s.sensor_id FROM alerts al JOIN sensors s ON s.sensor_id = al.sensor_id"
        " WHERE s.asset_id = ANY(%s) ORDER BY al.raised_at DESC, al.alert_id DESC LIMIT %s",
        (assets, limit),
    ).fetchall()
    names = ("alert_id", "raised_at", "severity", "state", "message_zh", "message_en", "sensor_id")
    return [dict(zip(names, r, strict=True)) for r in rows]


def fetch_links_in_view(
    conn: psycopg.Connection,
    layer_name: str,
    bbox: tuple[float, float, float, float] | None,
    *,
    limit: int,
) -> list[dict[str, Any]] | None:
    """The links of a layer in a lon/lat box with their attributes and midpoint (``mid``: the
    handle a map draws to pick them); None when more than ``limit`` are in view."""
    layer = get_layer(layer_name)
    cols = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in layer.column_names)
    x0, y0, x1, y1 = bbox or (None, None, None, None)
    cur = conn.execute(
        sql.SQL(
            "SELECT {cols}, ST_X(m.p) AS mid_lon, ST_Y(m.p) AS mid_lat FROM {t} t,"
            " ST_LineInterpolatePoint(ST_GeometryN(t.geom, 1), 0.5) AS m(p)"
            " WHERE %(x0)s::float8 IS NULL"
            " OR t.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326)"
            " ORDER BY t.{id} LIMIT %(n)s"
        ).format(cols=cols, t=sql.Identifier(layer.table), id=sql.Identifier(layer.id_column)),
        {"x0": x0, "y0": y0, "x1": x1, "y1": y1, "n": limit + 1},
    )
    names = [d.name for d in cur.description or ()]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return rows if len(rows) <= limit else None
