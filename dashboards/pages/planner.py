"""Planner: the GIS questions (gis.filters / gis.planner) as a form and on the map; results as a
table and on the map; export as CSV, GeoJSON and GeoPackage. Planner and admin roles only,
checked on the server in every callback (the map and form are visible, the answers are not).

An area is a district, a point and radius, or a polygon drawn with the map's lasso.
"""

from __future__ import annotations

import base64
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
                            html.Div(
                                [
                                    html.Button(
                                        t(lang, "planner.run"), id="planner-run", className="action"
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
                                    html.Button(f, id=f"planner-export-{f}", className="action")
                                    for f in ("csv", "geojson", "gpkg")
                                ],
                                className="form-row",
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
    layer: Any, where: Any, district: Any, point: Any, radius: Any, polygon: Any
) -> dict[str, Any]:
    """The form as a plain query spec (checked by ``checked_query``)."""
    return {
        "layer": layer,
        "where": [w.strip() for w in str(where or "").splitlines() if w.strip()][:20],
        "district": str(district).strip() if district not in (None, "") else None,
        "point": str(point).strip() if point not in (None, "") else None,
        "radius": str(radius).strip() if radius not in (None, "") else None,
        "polygon": polygon,
    }


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


def checked_query(spec: dict[str, Any]):
    """A checked PlannerQuery from a spec, or gis.filters.QueryError with a readable reason."""
    from gis.filters import QueryError, build_query

    layer = spec.get("layer")
    if layer not in LAYER_CHOICES:
        raise QueryError(f"unknown layer {display_text(layer)!r}")
    radius = None
    if spec.get("radius"):
        try:
            radius = float(spec["radius"])
        except ValueError:
            raise QueryError(f"radius must be metres, got {spec['radius']!r}") from None
        if not 0 < radius <= MAX_RADIUS_M:
            raise QueryError(f"radius must be more than 0 and at most {MAX_RADIUS_M:,.0f} m")
        if not spec.get("point"):
            raise QueryError("a radius needs a point (lon,lat)")
    district = None
    if spec.get("district"):
        try:
            district = int(spec["district"])
        except ValueError:
            raise QueryError("district is a 6-digit adcode, e.g. 510104") from None
    return build_query(
        layer,
        where=spec.get("where") or [],
        district=district,
        polygon=check_polygon(spec.get("polygon")),
        point=spec.get("point"),
        radius_m=radius,
        limit=5000,
    )


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
        State("lang", "data"),
    )
    def run(_run, clear, layer, where, district, point, radius, selected, lang):
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
        spec = spec_from_form(layer, where, district, point, radius, polygon)
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
    keys: list[str] = []
    for f in feats[:TABLE_ROWS]:
        for k in f.get("properties") or {}:
            if k not in keys and len(keys) < 8:
                keys.append(k)
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(display_text(k)) for k in keys])),
            html.Tbody(
                [
                    html.Tr(
                        [html.Td(display_text(f["properties"].get(k, ""))) for k in keys],
                        **{"data-id": display_text(f.get("id"))},
                    )
                    for f in feats[:TABLE_ROWS]
                ]
            ),
        ],
        className="data-table planner-table",
    )


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
