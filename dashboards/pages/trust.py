"""Data trust: completeness, gaps, late and duplicate readings per utility and district,
quarantined messages by reason, the newest quarantined messages and the silent sensors."""

from __future__ import annotations

from datetime import timedelta

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import banner
from dashboards.context import AppContext
from dashboards.figures import build_bar_figure, build_empty_figure
from dashboards.i18n import t
from dashboards.model import display_text, local_time

PATH = "/trust"
NAV_KEY = "nav.trust"
TRUST_TTL_S = 60  # data_trust over every sensor is a heavy query: once a minute is enough


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="page trust-page",
        children=[
            dcc.Interval(id="trust-tick", interval=max(ctx.settings.dashboard_refresh_ms, 15_000)),
            html.Div(id="trust-banner"),
            html.Div(
                className="two-col",
                children=[
                    html.Section(
                        className="panel",
                        children=[
                            html.H2(t(lang, "trust.by_utility")),
                            html.Div(id="trust-utility"),
                        ],
                    ),
                    html.Section(
                        className="panel",
                        children=[
                            html.H2(t(lang, "trust.quarantine")),
                            dcc.Graph(
                                id="trust-reasons",
                                figure=build_empty_figure(),
                                config={"displayModeBar": False},
                                style={"height": "16rem"},
                            ),
                        ],
                    ),
                    html.Section(
                        className="panel",
                        children=[
                            html.H2(t(lang, "trust.by_district")),
                            html.Div(id="trust-district", className="table-scroll"),
                        ],
                        style={"maxHeight": "34rem"},
                    ),
                    html.Section(
                        className="panel",
                        children=[
                            html.H2(t(lang, "trust.recent")),
                            html.Div(id="trust-recent", className="table-scroll"),
                            html.H2(t(lang, "trust.silent")),
                            html.Div(id="trust-silent", className="table-scroll"),
                        ],
                        style={"maxHeight": "34rem"},
                    ),
                ],
            ),
        ],
    )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def group_table(lang: str, rows: list[tuple], label) -> html.Table | html.Div:
    if not rows:
        return html.Div("—", className="empty")
    head = [
        "trust.group",
        "kpi.completeness",
        "trust.expected",
        "trust.received",
        "trust.seq_gaps",
        "trust.late",
        "trust.duplicates",
        "trust.silent_sensors",
    ]
    body = []
    for g, expected, received, gaps, dups, late, silent in rows:
        completeness = (
            (min(1.0, received / expected) if expected else None) if received is not None else None
        )
        cls = "num" if completeness is None or completeness >= 0.98 else "num silent"
        body.append(
            html.Tr(
                [
                    html.Td(label(g)),
                    html.Td(_pct(completeness), className=cls),
                    html.Td(f"{expected or 0:,}", className="num"),
                    html.Td(f"{received or 0:,}", className="num"),
                    html.Td(f"{gaps or 0:,}", className="num"),
                    html.Td(f"{late or 0:,}", className="num"),
                    html.Td(f"{dups or 0:,}", className="num"),
                    html.Td(f"{silent or 0:,}", className="num silent" if silent else "num"),
                ],
                **{"data-group": str(g)},
            )
        )
    return html.Table(
        [html.Thead(html.Tr([html.Th(t(lang, k)) for k in head])), html.Tbody(body)],
        className="data-table trust-table",
    )


def register(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output("trust-utility", "children"),
        Output("trust-district", "children"),
        Output("trust-reasons", "figure"),
        Output("trust-recent", "children"),
        Output("trust-silent", "children"),
        Output("trust-banner", "children"),
        Input("trust-tick", "n_intervals"),
        State("lang", "data"),
    )
    def refresh(_n, lang):
        lang = lang or ctx.settings.language
        now = ctx.clock()
        since = now - timedelta(hours=1)
        try:
            with ctx.reader.connection() as conn:
                by_utility = ctx.cache.get(
                    "trust-utility",
                    TRUST_TTL_S,
                    lambda: queries.fetch_trust_by_group(conn, since=since, by="utility"),
                )
                by_district = ctx.cache.get(
                    "trust-district",
                    TRUST_TTL_S,
                    lambda: queries.fetch_trust_by_group(conn, since=since, by="district"),
                )
                reasons = queries.fetch_quarantine_by_reason(conn, hours=24)
                recent = queries.fetch_recent_quarantine(conn, limit=15)
                silent = queries.fetch_silent_sensors(conn, limit=30)
        except queries.DatabaseUnavailable as exc:
            return (*([no_update] * 5), banner(lang, str(exc), None, ctx.tz))

        def utility_label(u: str) -> str:
            return t(lang, f"utility.{u}") if u in ("water", "power", "gas") else display_text(u)

        figure = (
            build_bar_figure([r[0] for r in reasons], [r[1] for r in reasons], colour="#f5a623")
            if reasons
            else build_empty_figure()
        )
        recent_table = (
            html.Table(
                [
                    html.Thead(
                        html.Tr(
                            [
                                html.Th(t(lang, "col.time")),
                                html.Th(t(lang, "col.reason")),
                                html.Th(t(lang, "col.sensor")),
                                html.Th("topic"),
                            ]
                        )
                    ),
                    html.Tbody(
                        [
                            html.Tr(
                                [
                                    html.Td(
                                        local_time(at, ctx.tz, "%m-%d %H:%M:%S"), className="time"
                                    ),
                                    html.Td(display_text(reason)),
                                    html.Td(display_text(sensor or "—")),
                                    html.Td(display_text(topic), className="sensor-id"),
                                ],
                                title=display_text(detail),
                            )
                            for at, reason, topic, sensor, detail in recent
                        ]
                    ),
                ],
                className="data-table quarantine-table",
            )
            if recent
            else html.Div(t(lang, "trust.quarantine_none"), className="empty")
        )
        silent_list = html.Ul(
            [
                html.Li(
                    f"{display_text(p.name)} ({p.sensor_id}) · {t(lang, 'state.' + p.state)} · "
                    f"{local_time(p.last_ts, ctx.tz, '%m-%d %H:%M')}"
                )
                for p in silent
            ],
            className="timeline",
        )
        return (
            group_table(lang, by_utility, utility_label),
            group_table(lang, by_district, display_text),
            figure,
            recent_table,
            silent_list,
            banner(lang, None, now, ctx.tz),
        )
