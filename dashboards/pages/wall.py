"""Wall: a kiosk page for 1920x1080 up to 3840x2160, no scrolling, no touching.

Key figures per utility, the city map with district status, the districts in trouble, a ticker
of the newest events, the last hours' alert trend, a flashing strip when a critical alert is
open, and a red banner (keeping the last good figures) while the database cannot be reached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import db_down_banner, district_table, empty_graph, panel
from dashboards.context import AppContext, City, read_city
from dashboards.figures import build_city_map_figure, build_trend_figure
from dashboards.i18n import t
from dashboards.model import (
    UTILITIES,
    AlertRow,
    DistrictSummary,
    UtilityFigures,
    display_text,
    local_time,
    percent,
)
from dashboards.snapshot import city_markers, utility_figures

PATH = "/wall"
NAV_KEY = "nav.wall"
KIOSK = True  # the shell hides its header on this page


def layout(ctx: AppContext, lang: str) -> html.Div:
    refresh_ms = ctx.settings.dashboard_refresh_ms
    no_bar = {"displayModeBar": False}
    return html.Div(
        className="wall",
        children=[
            dcc.Interval(id="wall-tick", interval=refresh_ms),
            dcc.Store(id="wall-critical-ids"),
            dcc.Store(id="wall-sound"),
            dcc.Store(id="wall-refresh-ms", data=refresh_ms),
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
            panel(
                None,
                empty_graph("wall-map", {**no_bar, "staticPlot": False}, className="map-graph"),
                kind="wall-map",
            ),
            panel(
                t(lang, "overview.districts"),
                html.Div(id="wall-districts", className="table-scroll"),
                kind="wall-side",
            ),
            panel(
                t(lang, "wall.trend"),
                empty_graph("wall-trend", no_bar, className="map-graph"),
                kind="wall-trend",
            ),
        ],
    )


def kpi_card(lang: str, f: UtilityFigures) -> list:
    reporting = f.reporting / f.sensors if f.sensors else None
    critical = f.open_of("critical")

    def grade(x: float | None) -> str:
        return "" if x is None else "good" if x >= 0.98 else "warn" if x >= 0.9 else "bad"

    cells = [
        ("kpi.sensors", str(f.sensors), ""),
        ("kpi.reporting", percent(reporting), grade(reporting)),
        ("kpi.completeness", percent(f.completeness), grade(f.completeness)),
        ("kpi.open_alerts", str(f.open_alerts), "bad" if f.open_alerts else "good"),
        ("kpi.critical", str(critical), "bad" if critical else "good"),
        ("kpi.outages", f"{f.customers_cut:,}", "bad" if f.customers_cut else "good"),
    ]
    # the customers belong to open incidents: the label says how many (decision 0016)
    labels = {"kpi.outages": t(lang, "kpi.outages_incidents", n=f.incidents_open)}
    figures = [
        html.Div(
            [
                html.Div(value, className=f"kpi-value {cls}", **{"data-kpi": key}),
                html.Div(labels.get(key) or t(lang, key), className="kpi-label"),
            ]
        )
        for key, value, cls in cells
    ]
    return [html.H3(t(lang, "utility." + f.utility)), html.Div(figures, className="kpi-grid")]


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


def in_trouble_first(summaries: Sequence[DistrictSummary]) -> list[DistrictSummary]:
    """Districts with open alerts first, then alarms, then silent sensors; then by code."""
    return sorted(
        summaries, key=lambda s: (-(s.open_alerts * 100 + s.alarm * 10 + s.silent), s.adcode)
    )


@dataclass(frozen=True)
class WallData:
    city: City
    figures: list[UtilityFigures]
    critical: list[AlertRow]  # open, unshelved critical alerts
    recent: list[AlertRow]  # the newest alerts raised, for the ticker
    trend: list[tuple]


def read_wall(ctx: AppContext) -> WallData:
    """Everything the wall shows, in one connection (raises DatabaseUnavailable)."""
    with ctx.reader.connection() as conn:
        city = read_city(ctx, conn)
        # the trust page's own rows (same query, window and cache entry): one completeness
        trust = queries.cached_trust_by_utility(ctx.cache, ctx.reader, conn, ctx.clock())
        completeness = queries.completeness_by_utility(trust)
        interruptions = queries.fetch_interruptions(conn)
        critical = queries.fetch_open_alerts(conn, limit=100, severities=["critical"])
        recent = queries.fetch_recent_alerts(conn, limit=8)
        trend = queries.fetch_alert_trend(conn, hours=6, bucket_s=1800)
    figures = utility_figures(city.states, city.alerts_by_utility, completeness, interruptions)
    return WallData(city, figures, critical, recent, trend)


def refresh(ctx: AppContext, _n: int | None, lang: str | None) -> tuple:
    """Every figure on the wall, the clock, and the critical alerts' ids (for the sound)."""
    lang = ctx.lang(lang)
    clock = local_time(ctx.clock(), ctx.tz, "%Y-%m-%d %H:%M:%S")
    try:
        data = read_wall(ctx)
    except queries.DatabaseUnavailable:
        nothing = [no_update] * (5 + len(UTILITIES))
        return (*nothing, db_down_banner(lang), clock, no_update)
    city = data.city
    sensors, cells = city_markers(city.states)
    return (
        build_city_map_figure(
            city.districts,
            city.summaries,
            lang=lang,
            sensors=sensors,
            cells=cells,
            marker_size=9,
            uirevision="wall",
        ),
        district_table(lang, in_trouble_first(city.summaries)),
        build_trend_figure(data.trend, lang=lang, tz=ctx.tz),
        ticker(lang, data.recent, ctx.tz),
        critical_strip(lang, data.critical),
        *(kpi_card(lang, f) for f in data.figures),
        [],  # no banner: the clock says the wall is live
        clock,
        sorted(a.alert_id for a in data.critical),
    )


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
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
    )(partial(refresh, ctx))

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
