"""Operations overview: the city map with sensor states, the districts list and open alerts."""

from __future__ import annotations

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import alerts_table, banner, district_table
from dashboards.context import AppContext, read_city
from dashboards.figures import build_city_map_figure, build_empty_figure
from dashboards.i18n import t
from dashboards.model import choose_grid_cell_deg
from dashboards.snapshot import grid_cells, select_points

PATH = "/"
NAV_KEY = "nav.overview"
# beyond this many sensors the overview draws grid cells instead of single points
POINTS_MAX = 5000


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="page overview",
        children=[
            dcc.Interval(id="overview-tick", interval=ctx.settings.dashboard_refresh_ms),
            html.Div(id="overview-banner"),
            html.Div(
                className="overview-grid",
                children=[
                    html.Section(
                        className="panel map-panel",
                        children=[
                            html.H2(t(lang, "overview.map")),
                            dcc.Graph(
                                id="overview-map",
                                figure=build_empty_figure(),
                                config={"displayModeBar": False, "scrollZoom": True},
                                className="map-graph",
                            ),
                        ],
                    ),
                    html.Section(
                        className="panel districts-panel",
                        children=[
                            html.H2(t(lang, "overview.districts")),
                            html.Div(id="overview-districts"),
                        ],
                    ),
                    html.Section(
                        className="panel alerts-panel",
                        children=[
                            html.H2(t(lang, "overview.alerts")),
                            html.Div(id="overview-alerts"),
                        ],
                    ),
                ],
            ),
        ],
    )


def register(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output("overview-map", "figure"),
        Output("overview-districts", "children"),
        Output("overview-alerts", "children"),
        Output("overview-banner", "children"),
        Input("overview-tick", "n_intervals"),
        State("lang", "data"),
    )
    def refresh(_n: int | None, lang: str | None):
        lang = lang or ctx.settings.language
        now = ctx.clock()
        try:
            with ctx.reader.connection() as conn:
                city = read_city(ctx, conn)
                alerts = queries.fetch_open_alerts(conn, limit=50)
        except queries.DatabaseUnavailable as exc:
            return no_update, no_update, no_update, banner(lang, str(exc), None, ctx.tz)
        if len(city.states) <= POINTS_MAX:
            sensors, cells = select_points(city.states), []
        else:
            sensors, cells = [], grid_cells(city.states, cell_deg=choose_grid_cell_deg(2.0))
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
            banner(lang, None, now, ctx.tz),
        )
