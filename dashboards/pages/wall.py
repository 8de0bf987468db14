"""Wall: a kiosk page for 1920x1080 up to 3840x2160, no scrolling, no touching.

Built for the five-second test at 3 m (decision 0077): one headline says what needs attention
(open incidents, calm when there are none), then key figures per utility, the city map with
district status, the districts that need attention, a ticker of the newest events (whole
entries only), the last hours' alert trend; a red banner (keeping the last good figures) while
the database cannot be reached. An open source loss is the headline's first line, in grey: what
stopped and since when (a stopped stream is not a calm city); a server gone or data stopped is
said by assets/stale.js, as on every page. Sizes are set in style.css (``.wall``) and here for the figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import (
    data_table,
    db_down_banner,
    empty_graph,
    incident_kind_label,
    panel,
    plot_config,
    source_loss_banner,
)
from dashboards.context import AppContext, City, read_city
from dashboards.figures import build_city_map_figure, build_trend_figure
from dashboards.i18n import t
from dashboards.model import (
    UTILITIES,
    AlertRow,
    DistrictSummary,
    SourceLossView,
    UtilityFigures,
    WallIncident,
    display_text,
    district_condition,
    local_time,
    percent,
)
from dashboards.snapshot import city_markers, utility_figures

PATH = "/wall"
NAV_KEY = "nav.wall"
KIOSK = True  # the shell hides its header on this page

# sizes at 1920x1080 [CSS px], doubled on a 4K wall (decision 0077: 3 m viewing distance)
MARKER_PX = 16  # a sensor: a dot seen, not read
ALARM_MARKER_PX = 30  # an alarming sensor: found from 3 m
FIGURE_FONT_PX = 26  # every label in the map's legend and the trend chart
DISTRICT_ROWS = 8  # districts that need attention listed (the others summed up in one line)
TICKER_EVENTS = 8
TICKER_MESSAGE_CHARS = 40  # a longer message ends in "…": an entry is always shown whole


def layout(ctx: AppContext, lang: str) -> html.Div:
    refresh_ms = ctx.settings.dashboard_refresh_ms
    no_bar = plot_config(lang, displayModeBar=False)
    return html.Div(
        className="wall",
        children=[
            dcc.Interval(id="wall-tick", interval=refresh_ms),
            dcc.Store(id="wall-critical-ids"),
            dcc.Store(id="wall-sound"),
            html.Div(
                className="wall-head",
                children=[
                    html.H1(t(lang, "app.title")),
                    html.Div(id="wall-banner", style={"flex": "1"}),
                    html.Div(id="wall-clock", className="clock"),
                ],
            ),
            # the headline: what needs attention now (or that nothing does)
            html.Div(id="wall-alarm", className="wall-headline-slot"),
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
                t(lang, "wall.districts_attention"),
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

    # calm by default: a figure is coloured only when it needs a look
    def grade(x: float | None) -> str:
        return "" if x is None or x >= 0.98 else "warn" if x >= 0.9 else "bad"

    cells = [
        ("kpi.sensors", str(f.sensors), ""),
        ("kpi.reporting", percent(reporting), grade(reporting)),
        ("kpi.completeness", percent(f.completeness), grade(f.completeness)),
        ("kpi.open_alerts", str(f.open_alerts), "bad" if f.open_alerts else ""),
        ("kpi.critical", str(critical), "bad" if critical else ""),
        ("kpi.outages", f"{f.customers_cut:,}", "bad" if f.customers_cut else ""),
    ]
    # the customers belong to open incidents: the label says how many (decision 0016)
    labels = {
        "kpi.completeness": t(lang, "wall.kpi.completeness"),
        "kpi.outages": t(lang, "wall.kpi.outages", n=f.incidents_open),
    }
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
    """The newest events, newest first, as whole entries: the row shows as many as fit and
    hides the rest entirely (style.css), so no entry is ever cut to a fragment."""
    if not events:
        return [html.Span(t(lang, "wall.no_events"), className="ticker-item")]
    return [
        html.Span(
            [
                html.Span(local_time(a.raised_at, tz, "%H:%M"), className="ticker-time"),
                f" {t(lang, 'severity.' + a.severity)} · {display_text(a.district(lang))} · "
                f"{shortened(display_text(a.message(lang)), TICKER_MESSAGE_CHARS)}",
            ],
            className=f"ticker-item sev-text-{a.severity}",
        )
        for a in events
    ]


def shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def headline(
    lang: str,
    incidents: Sequence[WallIncident],
    ungrouped: int,
    critical: Sequence[AlertRow],
    *,
    stream_lost: bool = False,
) -> list:
    """One headline of at most two lines: calm when nothing needs anyone (nothing at all
    while the whole stream is lost: no news is not good news then); else how many incidents
    and the worst one (where, what, how many alerts), with the alerts not yet grouped after it
    in smaller type; flashing red while a critical alert is open."""
    if not incidents and not ungrouped and not critical:
        if stream_lost:
            return []
        return [html.Div(t(lang, "wall.calm"), className="wall-headline calm", id="wall-headline")]
    if incidents:
        top = incidents[0]
        main = " · ".join(
            [
                t(lang, "wall.attention", n=len(incidents)),
                t(
                    lang,
                    "wall.incident",
                    district=display_text(top.district(lang)),
                    kind=incident_kind_label(lang, top.kind, top.utility),
                    alerts=top.open_alerts,
                ),
            ]
        )
    elif critical:  # critical alerts the engine has not grouped yet: the newest is the news
        newest = max(critical, key=lambda a: a.raised_at)
        main = f"{display_text(newest.district(lang))} · {display_text(newest.message(lang))}"
    else:
        main = ""
    if critical:
        main = t(lang, "wall.critical", text=main) if main else t(lang, "wall.critical", text="")
    extra = t(lang, "wall.ungrouped", n=ungrouped) if ungrouped else ""
    if main and extra:
        extra = " · " + extra
    children: list = [html.Span(main, className="headline-main")] if main else []
    if extra:
        children.append(html.Span(extra, className="headline-extra"))
    kind = "critical-alarm" if critical else "attention"
    return [html.Div(children, className=f"wall-headline {kind}", role="alert", id="wall-headline")]


def in_trouble_first(summaries: Sequence[DistrictSummary]) -> list[DistrictSummary]:
    """Districts with open alerts first, then alarms, then silent sensors; then by code."""
    return sorted(
        summaries, key=lambda s: (-(s.open_alerts * 100 + s.alarm * 10 + s.silent), s.adcode)
    )


def districts_panel(lang: str, summaries: Sequence[DistrictSummary]) -> list:
    """The districts that need attention (at most DISTRICT_ROWS), and one line for the rest."""
    trouble = [s for s in in_trouble_first(summaries) if district_condition(s) != "normal"]
    shown = trouble[:DISTRICT_ROWS]
    rest = len(summaries) - len(shown)
    if not shown:
        return [html.P(t(lang, "wall.districts_all_normal", n=rest), className="wall-rest")]
    return [
        district_rows(lang, shown),
        html.P(t(lang, "wall.districts_rest", n=rest), className="wall-rest") if rest else "",
    ]


def district_rows(lang: str, summaries: Sequence[DistrictSummary]) -> html.Table:
    """A district's name, open alerts and silent sensors: what 480 px hold at 26 px (the
    overview's table has a sensor count as well)."""
    rows = []
    for s in summaries:
        condition = district_condition(s)
        name = display_text(s.name_en if lang == "en" else s.name_zh)
        rows.append(
            html.Tr(
                [
                    html.Td([html.Span(className=f"dot cond-{condition}"), name]),
                    html.Td(str(s.open_alerts), className="num alarm" if s.open_alerts else "num"),
                    html.Td(str(s.silent), className="num silent" if s.silent else "num"),
                ],
                className=f"row-{condition}",
                **{"data-adcode": str(s.adcode)},
            )
        )
    head = [
        html.Th(t(lang, "col.district")),
        *(html.Th(t(lang, k), className="num") for k in ("col.alerts", "col.silent")),
    ]
    return data_table(head, rows, "district-table wall-districts")


@dataclass(frozen=True)
class WallData:
    city: City
    figures: list[UtilityFigures]
    critical: list[AlertRow]  # open, unshelved critical alerts
    recent: list[AlertRow]  # the newest alerts raised, for the ticker
    trend: list[tuple]
    incidents: list[WallIncident]
    ungrouped: int  # open alerts in no incident
    losses: list[SourceLossView]  # open source losses


def read_wall(ctx: AppContext) -> WallData:
    """Everything the wall shows, in one connection (raises DatabaseUnavailable)."""
    with ctx.reader.connection() as conn:
        city = read_city(ctx, conn)
        # the trust page's own rows (same query, window and cache entry): one completeness
        trust = queries.cached_trust_by_utility(ctx.cache, ctx.reader, conn, ctx.clock())
        completeness = queries.completeness_by_utility(trust)
        interruptions = queries.fetch_interruptions(conn)
        critical = queries.fetch_open_alerts(conn, limit=100, severities=["critical"])
        recent = queries.fetch_recent_alerts(conn, limit=TICKER_EVENTS)
        trend = queries.fetch_alert_trend(conn, hours=6, bucket_s=1800)
        incidents, ungrouped = queries.fetch_attention(conn)
        losses = queries.fetch_source_losses(conn)
    figures = utility_figures(city.states, city.alerts_by_utility, completeness, interruptions)
    return WallData(city, figures, critical, recent, trend, incidents, ungrouped, losses)


def attention(lang: str, data: WallData, tz: str) -> list:
    """The headline slot: the open source losses first, in grey (what stopped, since when),
    then what needs attention; never "calm" while the whole stream is lost."""
    stream_lost = any(x.scope == "stream" and x.back_at is None for x in data.losses)
    return [
        *source_loss_banner(lang, data.losses, tz),
        *headline(lang, data.incidents, data.ungrouped, data.critical, stream_lost=stream_lost),
    ]


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
            marker_size=MARKER_PX,
            alarm_marker_size=ALARM_MARKER_PX,
            legend_size=FIGURE_FONT_PX,
            uirevision="wall",
        ),
        districts_panel(lang, city.summaries),
        build_trend_figure(data.trend, lang=lang, tz=ctx.tz, font_size=FIGURE_FONT_PX, max_ticks=4),
        ticker(lang, data.recent, ctx.tz),
        attention(lang, data, ctx.tz),
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

    # optional sound for a new critical alert (assets/wall.js; ?sound=1 in the URL)
    app.clientside_callback(
        ClientsideFunction(namespace="cityops", function_name="alarmSound"),
        Output("wall-sound", "data"),
        Input("wall-critical-ids", "data"),
        State("url", "search"),
    )
