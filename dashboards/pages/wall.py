"""Wall: a kiosk page for 1920x1080 up to 3840x2160, no scrolling, no touching.

Key figures per utility, the city map with district status, the districts in trouble, a ticker
of the newest events, the last hours' alert trend, a flashing strip when a critical alert is
open, and a red banner (keeping the last good figures) while the database cannot be reached.
"""

from __future__ import annotations

from collections.abc import Sequence

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import banner, district_table
from dashboards.context import AppContext, read_city
from dashboards.figures import build_city_map_figure, build_empty_figure, build_trend_figure
from dashboards.i18n import t
from dashboards.model import (
    UTILITIES,
    AlertRow,
    UtilityFigures,
    choose_grid_cell_deg,
    display_text,
    local_time,
)
from dashboards.snapshot import grid_cells, select_points, utility_figures

PATH = "/wall"
NAV_KEY = "nav.wall"
KIOSK = True  # the shell hides its header on this page
POINTS_MAX = 5000
COMPLETENESS_TTL_S = 60  # counting an hour of readings is the heaviest query: once a minute


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="wall",
        children=[
            dcc.Interval(id="wall-tick", interval=ctx.settings.dashboard_refresh_ms),
            dcc.Store(id="wall-critical-ids"),
            dcc.Store(id="wall-sound"),
            dcc.Store(id="wall-refresh-ms", data=ctx.settings.dashboard_refresh_ms),
            html.Div(
                className="wall-head",
                children=[
                    html.H1(t(lang, "app.title")),
                    html.Div(id="wall-banner", style={"flex": "1"}),
                    html.Div(id="wall-clock", className="clock"),
                ],
            ),
            html.Div(
                t(lang, "banner.server_lost"),
                id="wall-offline",
                className="banner banner-error wall-offline",
                role="alert",
                style={"display": "none"},
            ),
            html.Div(id="wall-alarm", className="wall-alarm-slot"),
            html.Div(
                className="wall-ticker-row",
                children=[
                    html.Span(t(lang, "wall.ticker"), className="kpi-label ticker-label"),
                    html.Div(id="wall-ticker", className="ticker"),
                ],
            ),
            *[
                html.Div(id=f"wall-kpi-{u}", className=f"kpi-card util-{u} wall-kpi")
                for u in UTILITIES
            ],
            html.Section(
                className="panel wall-map",
                children=[
                    dcc.Graph(
                        id="wall-map",
                        figure=build_empty_figure(),
                        config={"displayModeBar": False, "staticPlot": False},
                        className="map-graph",
                    )
                ],
            ),
            html.Section(
                className="panel wall-side",
                children=[
                    html.H2(t(lang, "overview.districts")),
                    html.Div(id="wall-districts", className="table-scroll"),
                ],
            ),
            html.Section(
                className="panel wall-trend",
                children=[
                    html.H2(t(lang, "wall.trend")),
                    dcc.Graph(
                        id="wall-trend",
                        figure=build_empty_figure(),
                        config={"displayModeBar": False},
                        className="map-graph",
                    ),
                ],
            ),
        ],
    )


def kpi_card(lang: str, f: UtilityFigures) -> list:
    reporting = f.reporting / f.sensors if f.sensors else None
    completeness = f.completeness

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}%"

    def grade(x: float | None) -> str:
        return "" if x is None else "good" if x >= 0.98 else "warn" if x >= 0.9 else "bad"

    cells = [
        ("kpi.sensors", str(f.sensors), ""),
        ("kpi.reporting", pct(reporting), grade(reporting)),
        ("kpi.completeness", pct(completeness), grade(completeness)),
        ("kpi.open_alerts", str(f.open_alerts), "bad" if f.open_alerts else "good"),
        ("kpi.critical", str(f.open_of("critical")), "bad" if f.open_of("critical") else "good"),
        (
            ("kpi.outages", f"{f.customers_cut:,}", "bad" if f.customers_cut else "good")
            if f.customers_cut is not None
            else ("col.silent", str(f.silent + f.nodata), "warn" if f.silent + f.nodata else "good")
        ),
    ]
    return [
        html.H3(t(lang, "utility." + f.utility)),
        html.Div(
            [
                html.Div(
                    [
                        html.Div(value, className=f"kpi-value {cls}", **{"data-kpi": key}),
                        html.Div(t(lang, key), className="kpi-label"),
                    ]
                )
                for key, value, cls in cells
            ],
            className="kpi-grid",
        ),
    ]


def ticker(lang: str, events: Sequence[AlertRow], tz: str) -> list:
    if not events:
        return [html.Span(t(lang, "wall.no_events"), className="ticker-item")]
    items = [
        html.Span(
            f"{local_time(a.raised_at, tz, '%H:%M')} [{t(lang, 'severity.' + a.severity)}] "
            f"{display_text(a.district(lang))} · {display_text(a.message(lang))}",
            className=f"ticker-item sev-text-{a.severity}",
        )
        for a in events
    ]
    return [html.Div(items, className="ticker-track")]


def critical_strip(lang: str, open_alerts: Sequence[AlertRow]) -> list:
    critical = [a for a in open_alerts if a.severity == "critical"]
    if not critical:
        return []
    newest = max(critical, key=lambda a: a.raised_at)
    text = f"{display_text(newest.district(lang))} · {display_text(newest.message(lang))}"
    if len(critical) > 1:
        text += f"  (+{len(critical) - 1})"
    return [html.Div(t(lang, "wall.critical", text=text), className="critical-alarm", role="alert")]


def register(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output("wall-map", "figure"),
        Output("wall-districts", "children"),
        Output("wall-trend", "figure"),
        Output("wall-ticker", "children"),
        Output("wall-alarm", "children"),
        *(Output(f"wall-kpi-{u}", "children") for u in UTILITIES),
        Output("wall-banner", "children"),
        Output("wall-clock", "children"),
        Output("wall-critical-ids", "data"),
        Input("wall-tick", "n_intervals"),
        State("lang", "data"),
    )
    def refresh(_n, lang):
        lang = lang or ctx.settings.language
        now = ctx.clock()
        clock = local_time(now, ctx.tz, "%Y-%m-%d %H:%M:%S")
        try:
            data = read_wall(ctx)
        except queries.DatabaseUnavailable as exc:
            nothing = [no_update] * (5 + len(UTILITIES))
            return (*nothing, banner(lang, str(exc), None, ctx.tz), clock, no_update)
        city, sensors, cells, figures, open_alerts, recent, trend = data
        districts, summaries = city.districts, city.summaries
        # the districts in trouble first, then by code
        ranked = sorted(
            summaries,
            key=lambda s: (-(s.open_alerts * 100 + s.alarm * 10 + s.silent), s.adcode),
        )
        return (
            build_city_map_figure(
                districts,
                summaries,
                lang=lang,
                sensors=sensors,
                cells=cells,
                marker_size=9,
                uirevision="wall",
            ),
            district_table(lang, ranked),
            build_trend_figure(trend, lang=lang, tz=ctx.tz),
            ticker(lang, recent, ctx.tz),
            critical_strip(lang, open_alerts),
            *(kpi_card(lang, f) for f in figures),
            [],
            clock,
            sorted(a.alert_id for a in open_alerts if a.severity == "critical"),
        )

    # the browser's own check that the server still answers (assets/wall.js)
    app.clientside_callback(
        ClientsideFunction(namespace="cityops", function_name="connectionWatch"),
        Output("wall-offline", "style"),
        Input("wall-tick", "n_intervals"),
        Input("wall-clock", "children"),
        State("wall-refresh-ms", "data"),
    )

    # optional sound for a new critical alert (assets/wall.js; ?sound=1 in the URL)
    app.clientside_callback(
        ClientsideFunction(namespace="cityops", function_name="alarmSound"),
        Output("wall-sound", "data"),
        Input("wall-critical-ids", "data"),
        State("url", "search"),
    )


def read_wall(ctx: AppContext) -> tuple:
    """Everything the wall shows, in one connection (raises DatabaseUnavailable)."""
    with ctx.reader.connection() as conn:
        city = read_city(ctx, conn)
        completeness = ctx.cache.get(
            "completeness", COMPLETENESS_TTL_S, lambda: queries.fetch_completeness(conn)
        )
        interruptions = (
            queries.fetch_interruptions(conn) if queries.has_relation(conn, "incidents") else None
        )
        open_alerts = queries.fetch_open_alerts(conn, limit=100, severities=["critical"])
        recent = queries.fetch_recent_alerts(conn, limit=8)
        trend = queries.fetch_alert_trend(conn, hours=6, bucket_s=1800)
    if len(city.states) <= POINTS_MAX:
        sensors, cells = select_points(city.states), []
    else:
        sensors, cells = [], grid_cells(city.states, cell_deg=choose_grid_cell_deg(2.0))
    figures = utility_figures(city.states, city.alerts_by_utility, completeness, interruptions)
    return city, sensors, cells, figures, open_alerts, recent, trend
