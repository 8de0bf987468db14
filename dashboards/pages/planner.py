"""Planner: the GIS questions (gis.filters / gis.planner) as a form and on the map; results as a
table and on the map; export as CSV, GeoJSON and GeoPackage. Planner and admin roles only,
checked on the server in every callback (the map and form are visible, the answers are not).

An area is a district, a point and radius, or a polygon drawn with the map's lasso. Two more
conditions narrow the answer: near features of another layer (within D m of at least one of its
features passing that layer's conditions: ``gis.filters.NearLayer``) and the alert history (at
least N alerts of a kind in the last K days on the feature's sensors, or on sensors within R m:
``gis.filters.AlertHistory``). Everything from the browser is parsed and bounded here first.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import re
import tempfile
from pathlib import Path
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.auth import can
from dashboards.context import AppContext
from dashboards.figures import build_city_map_figure, build_empty_figure
from dashboards.i18n import t
from dashboards.model import display_text

PATH = "/planner"
NAV_KEY = "nav.planner"
MAX_RADIUS_M = 100_000.0  # the whole city fits in 100 km around its centre
TABLE_ROWS = 200
MAX_NEAR_M = 10_000.0  # "near" beyond 10 km is no longer near in one city
MAX_ALERT_DAYS = 3650.0
MAX_ALERT_COUNT = 100_000
_WORD = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # alert kinds and quantities are such words
LAYER_CHOICES = (
    "water_pipes",
    "water_nodes",
    "gas_pipes",
    "gas_nodes",
    "power_lines",
    "power_nodes",
    "facilities",
    "sensors",
    "grid_cells",
    "districts",
)


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="page planner-page",
        children=[
            dcc.Store(id="planner-query"),
            dcc.Download(id="planner-download"),
            html.Div(
                className="map-layout",
                children=[
                    html.Section(
                        className="panel controls",
                        children=[
                            html.H3(t(lang, "planner.layer")),
                            dcc.Dropdown(
                                id="planner-layer",
                                options=[{"label": x, "value": x} for x in LAYER_CHOICES],
                                value="water_pipes",
                                clearable=False,
                            ),
                            html.H3(t(lang, "planner.where")),
                            dcc.Textarea(
                                id="planner-where",
                                placeholder="install_year<1990\nmaterial in cast_iron,steel",
                                style={"width": "100%", "height": "4.5rem"},
                            ),
                            html.H3(t(lang, "planner.area")),
                            dcc.Input(
                                id="planner-district",
                                placeholder=t(lang, "planner.district"),
                                type="text",
                                style={"width": "100%"},
                            ),
                            dcc.Input(
                                id="planner-point",
                                placeholder=t(lang, "planner.point"),
                                type="text",
                                style={"width": "100%", "marginTop": "0.3rem"},
                            ),
                            dcc.Input(
                                id="planner-radius",
                                placeholder=t(lang, "planner.radius"),
                                type="text",
                                style={"width": "100%", "marginTop": "0.3rem"},
                            ),
                            html.Div(t(lang, "planner.lasso"), className="note"),
                            html.H3(t(lang, "planner.near")),
                            dcc.Dropdown(
                                id="planner-near-layer",
                                options=[{"label": x, "value": x} for x in LAYER_CHOICES],
                                value=None,
                                placeholder=t(lang, "planner.near_layer"),
                            ),
                            dcc.Input(
                                id="planner-near-distance",
                                placeholder=t(lang, "planner.near_distance"),
                                type="text",
                                style={"width": "100%", "marginTop": "0.3rem"},
                            ),
                            dcc.Textarea(
                                id="planner-near-where",
                                placeholder=t(lang, "planner.near_where"),
                                style={"width": "100%", "height": "2.6rem", "marginTop": "0.3rem"},
                            ),
                            html.H3(t(lang, "planner.alerts")),
                            html.Div(
                                [
                                    html.Label(
                                        [
                                            html.Span(
                                                t(lang, f"planner.alert_{key}"), className="note"
                                            ),
                                            dcc.Input(
                                                id=f"planner-alert-{name}",
                                                value=default,
                                                placeholder=t(lang, f"planner.alert_{key}"),
                                                type="text",
                                                style={"width": "100%"},
                                            ),
                                        ],
                                        htmlFor=f"planner-alert-{name}",
                                    )
                                    for name, key, default in (
                                        ("kind", "kind", "threshold_low"),
                                        ("quantity", "quantity", "pressure"),
                                        ("days", "days", "365"),
                                        ("min", "at_least", None),
                                        ("radius", "radius", None),
                                    )
                                ],
                                className="alert-history-fields",
                            ),
                            html.Div(t(lang, "planner.alerts_note"), className="note"),
                            html.Div(  # stays in view while the fields above scroll
                                [
                                    html.Div(
                                        [
                                            html.Button(
                                                t(lang, "planner.run"),
                                                id="planner-run",
                                                className="action",
                                            ),
                                            html.Button(
                                                t(lang, "planner.clear_polygon"),
                                                id="planner-clear",
                                                className="action",
                                            ),
                                        ],
                                        className="form-row",
                                    ),
                                    html.Div(id="planner-message", role="status"),
                                    html.Div(
                                        [
                                            html.Button(
                                                f, id=f"planner-export-{f}", className="action"
                                            )
                                            for f in ("csv", "geojson", "gpkg")
                                        ],
                                        className="form-row",
                                    ),
                                ],
                                className="planner-actions",
                            ),
                        ],
                    ),
                    html.Div(
                        [
                            html.Section(
                                className="panel",
                                children=[
                                    dcc.Graph(
                                        id="planner-map",
                                        figure=build_empty_figure(),
                                        config={"scrollZoom": True, "displaylogo": False},
                                        className="map-graph",
                                        style={"height": "52vh"},
                                    )
                                ],
                            ),
                            html.Section(
                                className="panel",
                                children=[html.Div(id="planner-table", className="table-scroll")],
                                style={"maxHeight": "30vh"},
                            ),
                        ]
                    ),
                ],
            ),
        ],
    )


def spec_from_form(
    layer: Any,
    where: Any,
    district: Any,
    point: Any,
    radius: Any,
    polygon: Any,
    near: dict[str, Any] | None = None,
    alerts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The form as a plain query spec (checked by ``checked_query``)."""
    return {
        "layer": layer,
        "where": _lines(where),
        "district": _text(district),
        "point": _text(point),
        "radius": _text(radius),
        "polygon": polygon,
        "near": near or None,
        "alerts": alerts or None,
    }


def near_from_form(layer: Any, distance: Any, where: Any) -> dict[str, Any] | None:
    """The near-another-layer part of the form, or None when it is left empty."""
    if layer in (None, "") and _text(distance) is None and not _lines(where):
        return None
    return {"layer": layer, "distance": _text(distance), "where": _lines(where)}


def alerts_from_form(
    kind: Any, quantity: Any, days: Any, at_least: Any, radius: Any
) -> dict[str, Any] | None:
    """The alert-history part of the form, or None while "at least N alerts" is empty (the
    other fields come filled with the usual question: low pressure in the last year)."""
    if _text(at_least) is None:
        return None
    return {
        "kind": _text(kind),
        "quantity": _text(quantity),
        "days": _text(days),
        "at_least": _text(at_least),
        "radius": _text(radius),
    }


def _text(value: Any) -> str | None:
    """A form field as stripped text (at most 200 characters), None when empty."""
    if value is None or isinstance(value, dict | list | bool):
        return None
    text = str(value).strip()[:200]
    return text or None


def _lines(value: Any) -> list[str]:
    """Conditions, one a line (a list from a stored spec, text from the form); at most 20."""
    items = value if isinstance(value, list) else str(value or "").splitlines()
    return [str(w).strip()[:200] for w in items if isinstance(w, str) and w.strip()][:20]


def _number(text: Any, what: str, low: float, high: float, *, unit: str = "") -> float:
    """A finite number in (low, high] from the form, or QueryError saying what is wanted."""
    from gis.filters import QueryError

    value = None
    if isinstance(text, str) and len(text) <= 32:
        try:
            value = float(text)
        except ValueError:
            value = None
    if value is None or not math.isfinite(value):
        raise QueryError(f"{what} must be a number, got {display_text(text)!r}")
    if not low < value <= high:
        raise QueryError(f"{what} must be more than {low:g} and at most {high:,.0f}{unit}")
    return value


def check_polygon(polygon: Any) -> dict[str, Any] | None:
    """A GeoJSON polygon that is closed and simple, or QueryError."""
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    from gis.filters import QueryError

    if not polygon:
        return None
    try:
        geom = shape(polygon)
    except Exception as exc:  # shapely raises several types for malformed input
        raise QueryError(f"polygon: {exc}") from None
    if geom.geom_type != "Polygon" or geom.is_empty:
        raise QueryError("the area must be one polygon")
    if not geom.is_valid:
        raise QueryError(f"the polygon is not valid ({explain_validity(geom)}): redraw it")
    return polygon  # type: ignore[no-any-return]


def checked_near(near: Any):
    """A gis.filters.NearLayer from the spec's near part, or QueryError."""
    from gis.filters import NearLayer, QueryError, parse_filter

    if not isinstance(near, dict):
        raise QueryError("near: not a question")
    other = near.get("layer")
    if other in (None, ""):
        raise QueryError("near: choose the other layer")
    if other not in LAYER_CHOICES:
        raise QueryError(f"near: unknown layer {display_text(other)!r}")
    if near.get("distance") is None:
        raise QueryError(f"near: how far from {other}? (metres)")
    distance = _number(near.get("distance"), "the distance", 0, MAX_NEAR_M, unit=" m")
    filters = tuple(parse_filter(other, w) for w in _lines(near.get("where")))
    return NearLayer(other, distance, filters)


def checked_alerts(spec: Any):
    """A gis.filters.AlertHistory from the spec's alert part ("at least N" is the function's
    "more than N - 1"), or QueryError."""
    from gis.filters import AlertHistory, QueryError

    if not isinstance(spec, dict):
        raise QueryError("alerts: not a question")
    kind = spec.get("kind")
    if not isinstance(kind, str) or not _WORD.match(kind):
        raise QueryError(f"alert kind is a word like threshold_low, got {display_text(kind)!r}")
    quantity = spec.get("quantity")
    if quantity is not None and (not isinstance(quantity, str) or not _WORD.match(quantity)):
        raise QueryError(f"quantity is a word like pressure, got {display_text(quantity)!r}")
    days = _number(spec.get("days"), "the number of days", 0, MAX_ALERT_DAYS)
    at_least = _number(spec.get("at_least"), "the number of alerts", 0, MAX_ALERT_COUNT)
    if at_least != int(at_least):
        raise QueryError(f"the number of alerts must be a whole number, got {at_least:g}")
    radius = (
        _number(spec.get("radius"), "the alert radius", 0, MAX_NEAR_M, unit=" m")
        if spec.get("radius") is not None
        else None
    )
    return AlertHistory(
        kind=kind,
        quantity=quantity,
        since_days=days,
        more_than=int(at_least) - 1,
        radius_m=radius,
    )


def checked_query(spec: dict[str, Any]):
    """A checked PlannerQuery from a spec, or gis.filters.QueryError with a readable reason."""
    from gis.filters import QueryError, build_query

    if not isinstance(spec, dict):
        raise QueryError("not a question")
    layer = spec.get("layer")
    if layer not in LAYER_CHOICES:
        raise QueryError(f"unknown layer {display_text(layer)!r}")
    radius = None
    if spec.get("radius"):
        try:
            radius = float(spec["radius"])
        except (TypeError, ValueError):
            raise QueryError(f"radius must be metres, got {spec['radius']!r}") from None
        if not 0 < radius <= MAX_RADIUS_M:
            raise QueryError(f"radius must be more than 0 and at most {MAX_RADIUS_M:,.0f} m")
        if not spec.get("point"):
            raise QueryError("a radius needs a point (lon,lat)")
    district = None
    if spec.get("district"):
        try:
            district = int(spec["district"])
        except (TypeError, ValueError):
            raise QueryError("district is a 6-digit adcode, e.g. 510104") from None
    point = _text(spec.get("point"))
    query = build_query(
        layer,
        where=_lines(spec.get("where")),
        district=district,
        polygon=check_polygon(spec.get("polygon")),
        point=point,
        radius_m=radius,
        limit=5000,
    )
    near = (checked_near(spec["near"]),) if spec.get("near") else ()
    history = checked_alerts(spec["alerts"]) if spec.get("alerts") else None
    if near or history:
        query = dataclasses.replace(query, near=near, alerts=history).check()
    return query


def lasso_polygon(selected: Any) -> dict[str, Any] | None:
    """The map's lasso as a GeoJSON polygon (lon/lat), or None."""
    lasso = (selected or {}).get("lassoPoints") or {}
    xs, ys = lasso.get("x") or [], lasso.get("y") or []
    if len(xs) < 3 or len(xs) != len(ys):
        return None
    ring = [[float(x), float(y)] for x, y in zip(xs, ys, strict=True)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def register(app: Dash, ctx: AppContext) -> None:
    def allowed() -> bool:
        return can(ctx.current_user(), "planner.query")

    @app.callback(
        Output("planner-map", "figure"),
        Output("planner-table", "children"),
        Output("planner-message", "children"),
        Output("planner-query", "data"),
        Input("planner-run", "n_clicks"),
        Input("planner-clear", "n_clicks"),
        State("planner-layer", "value"),
        State("planner-where", "value"),
        State("planner-district", "value"),
        State("planner-point", "value"),
        State("planner-radius", "value"),
        State("planner-map", "selectedData"),
        State("planner-near-layer", "value"),
        State("planner-near-distance", "value"),
        State("planner-near-where", "value"),
        State("planner-alert-kind", "value"),
        State("planner-alert-quantity", "value"),
        State("planner-alert-days", "value"),
        State("planner-alert-min", "value"),
        State("planner-alert-radius", "value"),
        State("lang", "data"),
    )
    def run(_run, clear, layer, where, district, point, radius, selected, *more):
        near_layer, near_distance, near_where, *history, lang = more
        from dash import ctx as dash_ctx

        from gis.filters import QueryError
        from gis.planner import fetch_planner_query

        lang = lang or ctx.settings.language
        polygon = None if dash_ctx.triggered_id == "planner-clear" else lasso_polygon(selected)
        with_map = _map_with(ctx, lang, None, polygon)
        if dash_ctx.triggered_id != "planner-run":
            return with_map, [], "", None
        if not allowed():
            return no_update, [], _error(t(lang, "planner.forbidden")), None
        spec = spec_from_form(
            layer,
            where,
            district,
            point,
            radius,
            polygon,
            near=near_from_form(near_layer, near_distance, near_where),
            alerts=alerts_from_form(*history),
        )
        try:
            query = checked_query(spec)
            with ctx.reader.connection() as conn:
                fc = fetch_planner_query(conn, query)
        except QueryError as exc:
            return no_update, [], _error(t(lang, "planner.invalid", reason=display_text(exc))), None
        except queries.DatabaseUnavailable:
            return no_update, [], _error(t(lang, "banner.db_down")), None
        feats = fc["features"]
        message = html.Span(t(lang, "planner.found", n=len(feats)), className="msg-ok")
        return _map_with(ctx, lang, feats, polygon), result_table(feats), message, spec

    @app.callback(
        Output("planner-download", "data"),
        Output("planner-message", "children", allow_duplicate=True),
        Input("planner-export-csv", "n_clicks"),
        Input("planner-export-geojson", "n_clicks"),
        Input("planner-export-gpkg", "n_clicks"),
        State("planner-query", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def export(_c, _g, _p, spec, lang):
        from dash import ctx as dash_ctx

        from gis.export import render, write_gpkg
        from gis.filters import QueryError
        from gis.planner import fetch_planner_query

        lang = lang or ctx.settings.language
        fmt = str(dash_ctx.triggered_id or "").removeprefix("planner-export-")
        if fmt not in ("csv", "geojson", "gpkg"):
            return no_update, no_update
        if not allowed():
            return no_update, _error(t(lang, "planner.forbidden"))
        if not spec or not isinstance(spec, dict):
            return no_update, _error(t(lang, "planner.run_first"))
        try:  # the query is asked again on the server: the browser never holds the results
            with ctx.reader.connection() as conn:
                fc = fetch_planner_query(conn, checked_query(spec))
        except QueryError as exc:
            return no_update, _error(t(lang, "planner.invalid", reason=display_text(exc)))
        except queries.DatabaseUnavailable:
            return no_update, _error(t(lang, "banner.db_down"))
        name = f"cityops-{spec['layer']}"
        if fmt == "gpkg":
            # a GeoPackage layer needs at least one geometry (gis.export refuses an empty one)
            if not any(f.get("geometry") for f in fc.get("features") or []):
                return no_update, _error(t(lang, "planner.nothing_to_export"))
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    path = write_gpkg(fc, Path(tmp) / f"{name}.gpkg")
                    body = path.read_bytes()
            except ValueError as exc:  # gis.export's own rule, should it differ from ours
                if "nothing to write" not in str(exc):
                    raise
                return no_update, _error(t(lang, "planner.nothing_to_export"))
        else:
            body, _media = render(fc, fmt)
        return {
            "content": base64.b64encode(body).decode("ascii"),
            "filename": f"{name}.{fmt}",
            "base64": True,
        }, no_update


def _error(text: str) -> html.Span:
    return html.Span(text, className="msg-error")


def result_table(feats: list[dict[str, Any]]) -> html.Table:
    """The first rows: up to eight columns, always with distance_m and alert_count when the
    question produced them (they are what a near or alert-history question is about)."""
    seen: list[str] = []
    for f in feats[:TABLE_ROWS]:
        for k in f.get("properties") or {}:
            if k not in seen:
                seen.append(k)
    extras = [k for k in ("distance_m", "alert_count") if k in seen]
    keys = [k for k in seen if k not in extras][: 8 - len(extras)] + extras
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(display_text(k)) for k in keys])),
            html.Tbody(
                [
                    html.Tr(
                        [html.Td(_cell(f["properties"].get(k, ""))) for k in keys],
                        **{"data-id": display_text(f.get("id"))},
                    )
                    for f in feats[:TABLE_ROWS]
                ]
            ),
        ],
        className="data-table planner-table",
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    return display_text(value)


def _map_with(
    ctx: AppContext,
    lang: str,
    feats: list[dict[str, Any]] | None,
    polygon: dict[str, Any] | None,
) -> dict[str, Any]:
    try:
        with ctx.reader.connection() as conn:
            districts = ctx.cache.get("districts", 600, lambda: queries.fetch_districts(conn))
    except queries.DatabaseUnavailable:
        districts = []
    fig = build_city_map_figure(districts, [], lang=lang, uirevision="planner")
    fig["layout"]["dragmode"] = "lasso"
    if polygon:
        ring = polygon["coordinates"][0]
        fig["data"].append(
            {
                "type": "scatter",
                "x": [p[0] for p in ring],
                "y": [p[1] for p in ring],
                "mode": "lines",
                "line": {"color": "#fadb14", "width": 2, "dash": "dot"},
                "name": t(lang, "planner.area"),
                "hoverinfo": "skip",
            }
        )
    if feats:
        xs: list[float | None] = []
        ys: list[float | None] = []
        px: list[float] = []
        py: list[float] = []
        for f in feats:
            geom = f.get("geometry") or {}
            kind, coords = geom.get("type"), geom.get("coordinates")
            if kind == "Point":
                px.append(coords[0])
                py.append(coords[1])
            elif kind == "LineString":
                xs += [c[0] for c in coords] + [None]
                ys += [c[1] for c in coords] + [None]
            elif kind in ("MultiLineString", "Polygon"):
                for part in coords:
                    xs += [c[0] for c in part] + [None]
                    ys += [c[1] for c in part] + [None]
            elif kind == "MultiPolygon":
                for poly in coords:
                    for part in poly:
                        xs += [c[0] for c in part] + [None]
                        ys += [c[1] for c in part] + [None]
        label = t(lang, "planner.results")
        all_x = [x for x in [*xs, *px] if x is not None]
        all_y = [y for y in [*ys, *py] if y is not None]
        if all_x:  # show the results, not the whole city
            pad = max(0.005, 0.1 * max(max(all_x) - min(all_x), max(all_y) - min(all_y)))
            fig["layout"]["xaxis"]["range"] = [min(all_x) - pad, max(all_x) + pad]
            fig["layout"]["yaxis"]["range"] = [min(all_y) - pad, max(all_y) + pad]
            fig["layout"]["uirevision"] = f"planner-{len(feats)}-{all_x[0]}"
        if xs:
            fig["data"].append(
                {
                    "type": "scattergl",
                    "x": xs,
                    "y": ys,
                    "mode": "lines",
                    "line": {"color": "#ff7a45", "width": 3},
                    "name": label,
                }
            )
        if px:
            fig["data"].append(
                {
                    "type": "scattergl",
                    "x": px,
                    "y": py,
                    "mode": "markers",
                    "marker": {"color": "#ff7a45", "size": 9},
                    "name": label,
                }
            )
    return fig
