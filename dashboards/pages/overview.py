"""Operations overview: the city map with sensor states, the districts list and open alerts;
above them, what stopped when a source of data is lost (alerts/source_loss.py)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import (
    alerts_table,
    db_down_banner,
    district_table,
    empty_graph,
    panel,
    updated_banner,
)
from dashboards.context import AppContext, read_city
from dashboards.figures import build_city_map_figure
from dashboards.i18n import t
from dashboards.model import SourceLossView, display_text, local_time
from dashboards.snapshot import city_markers

PATH = "/"
NAV_KEY = "nav.overview"


def layout(ctx: AppContext, lang: str) -> html.Div:
    graph_config = {"displayModeBar": False, "scrollZoom": True}
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


def loss_what(lang: str, loss: SourceLossView) -> str:
    """What stopped: the whole stream, one utility's stream, or one district's sensors."""
    if loss.scope == "utility":
        return t(lang, "loss.utility", utility=t(lang, f"utility.{loss.scope_value}"))
    if loss.scope == "district":
        name = (loss.district_en if lang == "en" else loss.district_zh) or loss.scope_value
        return t(lang, "loss.district", district=display_text(name))
    return t(lang, "loss.stream")


def source_loss_banner(lang: str, losses: Sequence[SourceLossView], tz: str) -> list:
    """One line per open source loss: what stopped, since when, how many sensors; its area is
    drawn as unknown, not as an alarm."""
    lines = []
    for x in losses:
        what = loss_what(lang, x)
        since = local_time(x.since, tz, "%m-%d %H:%M:%S")
        text = (
            t(lang, "loss.back", what=what)
            if x.back_at is not None
            else t(lang, "loss.banner", what=what, since=since, n=x.sensors, of=x.group_size)
        )
        lines.append(
            html.Div(
                text,
                className="banner source-loss",
                role="alert",
                style={"background": "#3a4452", "color": "#fff", "fontWeight": 700},
                **{"data-scope": x.scope},
            )
        )
    return lines


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
