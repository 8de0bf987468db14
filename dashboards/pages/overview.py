"""Operations overview: the city map with sensor states, the districts list and open alerts;
above them, what stopped when a source of data is lost (alerts/source_loss.py)."""

from __future__ import annotations

from functools import partial

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import (
    alerts_table,
    db_down_banner,
    district_table,
    empty_graph,
    panel,
    plot_config,
    source_loss_banner,
    updated_banner,
)
from dashboards.context import AppContext, read_city
from dashboards.figures import build_city_map_figure
from dashboards.i18n import t
from dashboards.snapshot import city_markers

PATH = "/"
NAV_KEY = "nav.overview"


def layout(ctx: AppContext, lang: str) -> html.Div:
    graph_config = plot_config(lang, displayModeBar=False, scrollZoom=True)
    return html.Div(
        className="page overview",
        children=[
            dcc.Interval(id="overview-tick", interval=ctx.settings.dashboard_refresh_ms),
            html.Div(id="overview-banner"),
            html.Div(id="overview-losses"),
            html.Div(
                className="overview-grid",
                children=[
                    panel(
                        t(lang, "overview.map"),
                        empty_graph("overview-map", graph_config, className="map-graph"),
                        kind="map-panel",
                    ),
                    panel(
                        t(lang, "overview.districts"),
                        html.Div(id="overview-districts"),
                        kind="districts-panel",
                    ),
                    panel(
                        t(lang, "overview.alerts"),
                        html.Div(id="overview-alerts"),
                        kind="alerts-panel",
                    ),
                ],
            ),
        ],
    )


def refresh(ctx: AppContext, _n: int | None, lang: str | None):
    """The map, the districts and the open alerts, every refresh period."""
    lang = ctx.lang(lang)
    now = ctx.clock()
    try:
        with ctx.reader.connection() as conn:
            city = read_city(ctx, conn)
            alerts = queries.fetch_open_alerts(conn, limit=50)
            losses = queries.fetch_source_losses(conn)
    except queries.DatabaseUnavailable:
        return no_update, no_update, no_update, db_down_banner(lang), no_update
    sensors, cells = city_markers(city.states)
    figure = build_city_map_figure(
        city.districts,
        city.summaries,
        lang=lang,
        sensors=sensors,
        cells=cells,
        uirevision="overview",
    )
    return (
        figure,
        district_table(lang, city.summaries),
        alerts_table(lang, alerts, tz=ctx.tz, now=now),
        updated_banner(lang, now, ctx.tz),
        source_loss_banner(lang, losses, ctx.tz),
    )


def register(app: Dash, ctx: AppContext) -> None:
    app.callback(
        Output("overview-map", "figure"),
        Output("overview-districts", "children"),
        Output("overview-alerts", "children"),
        Output("overview-banner", "children"),
        Output("overview-losses", "children"),
        Input("overview-tick", "n_intervals"),
        State("lang", "data"),
    )(partial(refresh, ctx))
