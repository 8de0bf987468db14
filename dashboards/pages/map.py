"""Map: layers to switch (districts, networks, facilities, sensors, alerts), drawn from the
project's own PostGIS layers (no tiles); sensors by state, aggregated to grid cells when more
than ``POINTS_LIMIT`` are in view, so 50,000 sensors stay smooth; click a sensor for details."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import (
    catalogue_label,
    db_down_banner,
    empty_graph,
    panel,
    plot_config,
    updated_banner,
)
from dashboards.context import AppContext, read_city, read_districts
from dashboards.figures import build_city_map_figure
from dashboards.i18n import t
from dashboards.model import (
    UTILITIES,
    XY,
    GridCell,
    SensorPoint,
    choose_grid_cell_deg,
    display_text,
    parse_view,
    view_bbox,
)
from dashboards.planner_map import (
    district_names,
    isolation_answer,
    isolation_traces,
    link_handles,
    named_district,
    picked_panel,
    picked_ref,
    readable,
    register_shutdown,
)
from dashboards.security import SIGNED_IN, Access
from dashboards.snapshot import Bbox, SensorStates, grid_cells, select_points
from gis.layers import NETWORKS
from gis.planner import fetch_links_in_view

PATH = "/map"
NAV_KEY = "nav.map"
POINTS_LIMIT = 8000  # single markers up to this many in view (WebGL), grid cells beyond
PICK_LIMIT = 500  # pipes or lines of one network in view that get a pick handle (zoom in for more)
# a picked pipe's valve plan: signed in, the data classes checked in the callback (restricted)
# a valve plan and its recording as a planned shutdown: signed in, the roles checked inside
CALLBACK_ACCESS = {"map-isolation": Access(SIGNED_IN), "map-shutdown-note": Access(SIGNED_IN)}
LAYERS = ("districts", "networks", "facilities", "sensors", "alerts")
CITY_SPAN_DEG = 2.0
MAP_REFRESH_MS = 10_000


def layout(ctx: AppContext, lang: str) -> html.Div:
    controls = [
        html.H3(t(lang, "map.layers")),
        dcc.Checklist(
            id="map-layers",
            options=[{"label": t(lang, f"map.layer.{k}"), "value": k} for k in LAYERS],
            value=list(LAYERS),
        ),
        html.H3(t(lang, "map.utilities")),
        dcc.Checklist(
            id="map-utilities",
            options=[{"label": t(lang, f"utility.{u}"), "value": u} for u in UTILITIES],
            value=list(UTILITIES),
        ),
        html.Div(id="map-note", className="note"),
        html.Div(t(lang, "map.details"), id="map-details", className="note details"),
        html.Div(t(lang, "map.pick_hint"), id="map-pick-note", className="note"),
        html.Div(id="map-isolation"),
    ]
    config = plot_config(lang, displayModeBar=True, scrollZoom=True, displaylogo=False)
    return html.Div(
        className="page map-page",
        children=[
            dcc.Interval(
                id="map-tick", interval=max(ctx.settings.dashboard_refresh_ms, MAP_REFRESH_MS)
            ),
            dcc.Store(id="map-view"),
            dcc.Store(id="map-picked"),
            dcc.Store(id="map-overlay"),
            html.Div(id="map-banner"),
            html.Div(
                className="map-layout",
                children=[
                    panel(None, *controls, kind="controls"),
                    panel(None, empty_graph("map-graph", config, className="map-graph")),
                ],
            ),
        ],
    )


@dataclass
class SensorLayer:
    """What the sensors and alerts layers draw in a view, and the note that says so."""

    sensors: list[SensorPoint] = field(default_factory=list)
    cells: list[GridCell] = field(default_factory=list)
    alarms: list[SensorPoint] = field(default_factory=list)
    note: str = ""


def sensor_layer(
    states: SensorStates,
    lang: str,
    layers: set[str],
    utilities: list[str],
    bbox: Bbox | None,
    span_deg: float,
) -> SensorLayer:
    """Single sensors up to ``POINTS_LIMIT`` in view, grid cells beyond; alarms stay single
    markers over grid cells."""
    out = SensorLayer()
    if not utilities:
        return out
    if "sensors" in layers:
        out.sensors = select_points(states, utilities=utilities, bbox=bbox, limit=POINTS_LIMIT + 1)
        if len(out.sensors) > POINTS_LIMIT:
            cell_deg = choose_grid_cell_deg(span_deg)
            out.sensors = []
            out.cells = grid_cells(states, cell_deg=cell_deg, utilities=utilities, bbox=bbox)
            out.note = t(lang, "map.aggregated", n=sum(c.sensors for c in out.cells))
        else:
            out.note = t(lang, "map.shown", n=len(out.sensors))
    if "alerts" in layers and not out.sensors:
        out.alarms = select_points(
            states, utilities=utilities, bbox=bbox, states=["alarm"], limit=5000
        )
    return out


def remember_view(relayout, previous):
    """The view after the user zoomed or panned (unchanged: no new refresh)."""
    prev = tuple(map(tuple, previous)) if previous else None
    view = parse_view(relayout, prev)  # type: ignore[arg-type]
    return no_update if view == prev else view


def refresh(ctx: AppContext, _n, layers, utilities, view, overlay, lang):
    """The map for the chosen layers, utilities and view; for a signed-in user who may read
    the networks, a pick handle on each pipe or line in view (when few enough), and the valve
    plan of the last "isolate this pipe" over it."""
    lang = ctx.lang(lang)
    layers = set(layers or [])
    utilities = [u for u in (utilities or []) if u in UTILITIES]
    view_t = tuple(map(tuple, view)) if view else None
    bbox = view_bbox(view_t)  # type: ignore[arg-type]
    span = (bbox[2] - bbox[0]) if bbox else CITY_SPAN_DEG
    now = ctx.clock()
    networks: dict[str, tuple[XY, XY]] = {}
    facilities = []
    handles: list[dict] = []
    pick_note = ""
    try:
        with ctx.reader.connection() as conn:
            # a zoom or a layer switch reuses a snapshot up to one map refresh old, so the
            # answer comes from memory (tens of ms at 50,000 sensors)
            city = read_city(ctx, conn, max_age_s=MAP_REFRESH_MS / 1000)
            if "networks" in layers:
                tol = max(0.00005, span / 4000)
                for u in utilities:
                    xs, ys, _n = queries.fetch_network_lines(conn, u, bbox=bbox, simplify_deg=tol)
                    networks[u] = (xs, ys)
            if "facilities" in layers:
                facilities = ctx.cache.get(
                    "facilities", 300, lambda: queries.fetch_facilities(conn)
                )
            if "networks" in layers:
                handles, pick_note = pick_handles(ctx, conn, lang, utilities, bbox)
    except queries.DatabaseUnavailable:
        return no_update, no_update, db_down_banner(lang)
    shown = sensor_layer(city.states, lang, layers, utilities, bbox, span)
    figure = build_city_map_figure(
        city.districts,
        city.summaries,
        lang=lang,
        sensors=shown.sensors,
        cells=shown.cells,
        alarms=shown.alarms,
        networks=networks,
        facilities=facilities,
        show_districts="districts" in layers,
        view=view_t,  # type: ignore[arg-type]
        marker_size=9,
        uirevision="map",
    )
    figure["data"] += handles + isolation_traces(lang, overlay_features(overlay))
    note = [shown.note, html.Br(), pick_note] if pick_note else shown.note
    return figure, note, updated_banner(lang, now, ctx.tz)


def pick_handles(
    ctx: AppContext, conn, lang: str, utilities: list[str], bbox: Bbox | None
) -> tuple[list[dict], str]:
    """Handles on the pipes and lines in view, for a user who may read those layers (the
    map page is open; the networks' attributes are internal data), and a note when there
    are too many in view to pick one."""
    user = ctx.current_user()
    if user is None:
        return [], ""
    traces, crowded = [], False
    for utility in utilities:
        layer = NETWORKS[utility][1]
        if not readable(conn, user, [layer]):
            continue
        rows = fetch_links_in_view(conn, layer, bbox, limit=PICK_LIMIT)
        if rows is None:
            crowded = True
        elif rows:
            names = district_names(lang, read_districts(ctx, conn))
            shown = [named_district(r, names) for r in rows]
            traces.append(link_handles(lang, layer, shown))
    return traces, t(lang, "map.pick_zoom") if crowded else ""


def overlay_features(overlay) -> list[dict]:
    """The valve plan the browser holds to draw (its own last answer; junk draws nothing)."""
    if not isinstance(overlay, list):
        return []
    return [f for f in overlay[:5000] if isinstance(f, dict)]


def details(ctx: AppContext, click, lang):
    """The clicked sensor's latest values and a link to its page; or the clicked pipe's
    attributes, alerts and "isolate this pipe" (what the isolate button acts on is kept)."""
    lang = ctx.lang(lang)
    ref = picked_ref(click)
    if ref is not None:
        return picked_panel(ctx, lang, "map", *ref)
    return sensor_details(ctx, lang, click), no_update


def isolate(ctx: AppContext, _clicks, picked, lang):
    """The picked pipe's valve plan: listed under it, and kept to draw over the map."""
    lang = ctx.lang(lang)
    view, features = isolation_answer(ctx, lang, picked, "map")
    return view, features


def sensor_details(ctx: AppContext, lang: str, click):
    """The clicked sensor's latest values and a link to its page."""
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
        html.Li(f"{catalogue_label(lang, 'quantity.', q)}: {v:g}")
        for q, (_ts, v) in sorted(info["latest"].items())
    ]
    return [
        html.H3(display_text(info["name"])),
        html.Div(display_text(info["sensor_id"]), className="sensor-id"),
        html.Ul(latest),
        dcc.Link(t(lang, "map.open_sensor"), href=f"/sensor?id={info['sensor_id']}"),
    ]


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("map-view", "data"),
        Input("map-graph", "relayoutData"),
        State("map-view", "data"),
        prevent_initial_call=True,
    )(remember_view)
    app.callback(
        Output("map-graph", "figure"),
        Output("map-note", "children"),
        Output("map-banner", "children"),
        Input("map-tick", "n_intervals"),
        Input("map-layers", "value"),
        Input("map-utilities", "value"),
        Input("map-view", "data"),
        Input("map-overlay", "data"),
        State("lang", "data"),
    )(partial(refresh, ctx))
    app.callback(
        Output("map-details", "children"),
        Output("map-picked", "data"),
        Input("map-graph", "clickData"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(details, ctx))
    app.callback(
        Output("map-isolation", "children"),
        Output("map-overlay", "data"),
        Input("map-isolate", "n_clicks"),
        State("map-picked", "data"),
        State("lang", "data"),
        prevent_initial_call=True,
    )(partial(isolate, ctx))
    register_shutdown(app, ctx, "map", "map-picked")
