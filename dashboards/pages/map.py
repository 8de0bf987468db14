"""Map: layers to switch (districts, networks, facilities, sensors, alerts), drawn from the
project's own PostGIS layers (no tiles); sensors by state, aggregated to grid cells when more
than ``POINTS_LIMIT`` are in view, so 50,000 sensors stay smooth; click a sensor for details."""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import banner
from dashboards.context import AppContext, read_city
from dashboards.figures import build_city_map_figure, build_empty_figure
from dashboards.i18n import MESSAGES, t
from dashboards.model import UTILITIES, choose_grid_cell_deg, display_text, parse_view, view_bbox
from dashboards.snapshot import grid_cells, select_points

PATH = "/map"
NAV_KEY = "nav.map"
POINTS_LIMIT = 8000  # single markers up to this many in view (WebGL), grid cells beyond
LAYERS = ("districts", "networks", "facilities", "sensors", "alerts")
CITY_SPAN_DEG = 2.0
MAP_REFRESH_MS = 10_000


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="page map-page",
        children=[
            dcc.Interval(
                id="map-tick", interval=max(ctx.settings.dashboard_refresh_ms, MAP_REFRESH_MS)
            ),
            dcc.Store(id="map-view"),
            html.Div(id="map-banner"),
            html.Div(
                className="map-layout",
                children=[
                    html.Section(
                        className="panel controls",
                        children=[
                            html.H3(t(lang, "map.layers")),
                            dcc.Checklist(
                                id="map-layers",
                                options=[
                                    {"label": t(lang, f"map.layer.{k}"), "value": k} for k in LAYERS
                                ],
                                value=["districts", "networks", "facilities", "sensors", "alerts"],
                            ),
                            html.H3(t(lang, "map.utilities")),
                            dcc.Checklist(
                                id="map-utilities",
                                options=[
                                    {"label": t(lang, f"utility.{u}"), "value": u}
                                    for u in UTILITIES
                                ],
                                value=list(UTILITIES),
                            ),
                            html.Div(id="map-note", className="note"),
                            html.Div(
                                t(lang, "map.details"), id="map-details", className="note details"
                            ),
                        ],
                    ),
                    html.Section(
                        className="panel",
                        children=[
                            dcc.Graph(
                                id="map-graph",
                                figure=build_empty_figure(),
                                config={
                                    "displayModeBar": True,
                                    "scrollZoom": True,
                                    "displaylogo": False,
                                },
                                className="map-graph",
                            )
                        ],
                    ),
                ],
            ),
        ],
    )


def register(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output("map-view", "data"),
        Input("map-graph", "relayoutData"),
        State("map-view", "data"),
        prevent_initial_call=True,
    )
    def remember_view(relayout, previous):
        prev = tuple(map(tuple, previous)) if previous else None
        view = parse_view(relayout, prev)  # type: ignore[arg-type]
        return no_update if view == prev else view

    @app.callback(
        Output("map-graph", "figure"),
        Output("map-note", "children"),
        Output("map-banner", "children"),
        Input("map-tick", "n_intervals"),
        Input("map-layers", "value"),
        Input("map-utilities", "value"),
        Input("map-view", "data"),
        State("lang", "data"),
    )
    def refresh(_n, layers, utilities, view, lang):
        lang = lang or ctx.settings.language
        layers = set(layers or [])
        utilities = [u for u in (utilities or []) if u in UTILITIES]
        view_t = tuple(map(tuple, view)) if view else None
        bbox = view_bbox(view_t)  # type: ignore[arg-type]
        span = (bbox[2] - bbox[0]) if bbox else CITY_SPAN_DEG
        now = ctx.clock()
        sensors, cells, alarms, networks, facilities = [], [], [], {}, []
        note = ""
        try:
            with ctx.reader.connection() as conn:
                # a zoom or a layer switch reuses a snapshot up to one map refresh old, so the
                # answer comes from memory (tens of ms at 50,000 sensors)
                city = read_city(ctx, conn, max_age_s=MAP_REFRESH_MS / 1000)
                if "sensors" in layers and utilities:
                    sensors = select_points(
                        city.states, utilities=utilities, bbox=bbox, limit=POINTS_LIMIT + 1
                    )
                    if len(sensors) > POINTS_LIMIT:
                        sensors = []
                        cells = grid_cells(
                            city.states,
                            cell_deg=choose_grid_cell_deg(span),
                            utilities=utilities,
                            bbox=bbox,
                        )
                        note = t(lang, "map.aggregated", n=sum(c.sensors for c in cells))
                    else:
                        note = t(lang, "map.shown", n=len(sensors))
                if "alerts" in layers and not sensors and utilities:
                    # alarms stay visible as single markers, even over grid cells
                    alarms = select_points(
                        city.states, utilities=utilities, bbox=bbox, states=["alarm"], limit=5000
                    )
                if "networks" in layers:
                    tol = max(0.00005, span / 4000)
                    for u in utilities:
                        xs, ys, _n = queries.fetch_network_lines(
                            conn, u, bbox=bbox, simplify_deg=tol
                        )
                        networks[u] = (xs, ys)
                if "facilities" in layers:
                    facilities = ctx.cache.get(
                        "facilities", 300, lambda: queries.fetch_facilities(conn)
                    )
        except queries.DatabaseUnavailable as exc:
            return no_update, no_update, banner(lang, str(exc), None, ctx.tz)
        figure = build_city_map_figure(
            city.districts,
            city.summaries,
            lang=lang,
            sensors=sensors,
            cells=cells,
            alarms=alarms,
            networks=networks,
            facilities=facilities,
            show_districts="districts" in layers,
            view=view_t,  # type: ignore[arg-type]
            marker_size=9,
            uirevision="map",
        )
        return figure, note, banner(lang, None, now, ctx.tz)

    @app.callback(
        Output("map-details", "children"),
        Input("map-graph", "clickData"),
        State("lang", "data"),
        prevent_initial_call=True,
    )
    def details(click, lang):
        lang = lang or ctx.settings.language
        point = ((click or {}).get("points") or [{}])[0]
        sensor_id = point.get("customdata")
        if not isinstance(sensor_id, str) or len(sensor_id) > 64:
            return no_update
        try:
            with ctx.reader.connection() as conn:
                info = queries.fetch_sensor_info(conn, sensor_id)
        except queries.DatabaseUnavailable:
            return no_update
        if info is None:
            return no_update
        latest = [
            html.Li(f"{_quantity(lang, q)}: {v:g}")
            for q, (_ts, v) in sorted(info["latest"].items())
        ]
        return [
            html.H3(display_text(info["name"])),
            html.Div(display_text(info["sensor_id"]), className="sensor-id"),
            html.Ul(latest),
            dcc.Link(t(lang, "map.open_sensor"), href=f"/sensor?id={info['sensor_id']}"),
        ]


def _quantity(lang: str, q: str) -> str:
    key = f"quantity.{q}"
    return t(lang, key) if key in MESSAGES["zh"] else display_text(q)
