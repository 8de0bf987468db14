"""Sensor detail: readings of each quantity over a chosen window (raw when short, rollups when
long), alarm limits, the sensor's alerts marked on the chart, and its data-trust figures."""

from __future__ import annotations

from urllib.parse import parse_qs

from dash import Dash, Input, Output, State, dcc, html, no_update

from dashboards import queries
from dashboards.components import alerts_table, banner
from dashboards.context import AppContext
from dashboards.figures import build_readings_figure
from dashboards.i18n import MESSAGES, t
from dashboards.model import choose_readings_source, display_text, window_bounds
from sensors.quantities import QUANTITIES

PATH = "/sensor"
NAV_KEY = "nav.sensor"
WINDOWS = ("1h", "6h", "24h", "7d", "30d")
MAX_POINTS = 1500  # per chart; longer raw windows are averaged into buckets on the server


def layout(ctx: AppContext, lang: str) -> html.Div:
    return html.Div(
        className="page sensor-page",
        children=[
            html.Div(id="sensor-banner"),
            html.Div(
                className="form-row",
                children=[
                    html.Span(t(lang, "sensor.pick"), className="kpi-label"),
                    dcc.Dropdown(
                        id="sensor-pick",
                        placeholder=t(lang, "sensor.none"),
                        searchable=True,
                        style={"width": "34rem"},
                    ),
                    html.Span(t(lang, "sensor.window"), className="kpi-label"),
                    dcc.RadioItems(
                        id="sensor-window",
                        options=[
                            {"label": t(lang, f"sensor.window.{w}"), "value": w} for w in WINDOWS
                        ],
                        value="24h",
                        inline=True,
                        inputStyle={"marginRight": "0.3rem", "marginLeft": "0.8rem"},
                    ),
                ],
            ),
            html.Div(id="sensor-info", className="sensor-info"),
            html.Div(id="sensor-charts"),
            html.Div(
                className="two-col",
                children=[
                    html.Section(
                        className="panel",
                        children=[html.H2(t(lang, "trust.title")), html.Div(id="sensor-trust")],
                    ),
                    html.Section(
                        className="panel",
                        children=[html.H2(t(lang, "sensor.alerts")), html.Div(id="sensor-alerts")],
                    ),
                ],
            ),
        ],
    )


def register(app: Dash, ctx: AppContext) -> None:
    @app.callback(
        Output("sensor-pick", "options"),
        Output("sensor-pick", "value"),
        Input("sensor-pick", "search_value"),
        State("url", "search"),
        State("sensor-pick", "value"),
    )
    def options(search, url_search, current):
        wanted = parse_qs((url_search or "").lstrip("?")).get("id", [None])[0]
        value = current or wanted
        try:
            with ctx.reader.connection() as conn:
                found = queries.fetch_sensor_options(conn, search=(search or "")[:64], limit=100)
                if value and value not in {sid for sid, _ in found}:
                    found = queries.fetch_sensor_options(conn, search=value, limit=1) + found
        except queries.DatabaseUnavailable:
            return no_update, no_update
        opts = [{"label": f"{display_text(name)} ({sid})", "value": sid} for sid, name in found]
        return opts, value if value != current else no_update

    @app.callback(
        Output("sensor-info", "children"),
        Output("sensor-charts", "children"),
        Output("sensor-trust", "children"),
        Output("sensor-alerts", "children"),
        Output("sensor-banner", "children"),
        Input("sensor-pick", "value"),
        Input("sensor-window", "value"),
        State("lang", "data"),
    )
    def show(sensor_id, window, lang):
        lang = lang or ctx.settings.language
        if not sensor_id:
            return html.Div(t(lang, "sensor.none"), className="empty"), [], [], [], []
        now = ctx.clock()
        start, end = window_bounds(now, window or "24h")
        span_s = (end - start).total_seconds()
        try:
            with ctx.reader.connection() as conn:
                info = queries.fetch_sensor_info(conn, sensor_id)
                if info is None:
                    return html.Div(t(lang, "page.not_found"), className="empty"), [], [], [], []
                has_1m, has_1h = ctx.cache.get(
                    "rollups", 60, lambda: queries.fetch_rollup_availability(conn)
                )
                source = choose_readings_source(span_s, has_1m, has_1h)
                bucket_s = 0
                if source == "raw" and span_s / info["expected_interval_s"] > MAX_POINTS:
                    bucket_s = max(60, int(span_s / MAX_POINTS // 60 * 60))
                series = {
                    q: queries.fetch_readings(
                        conn, sensor_id, q, start, end, source=source, bucket_s=bucket_s
                    )
                    for q in sorted(info["limits"])
                }
                alerts = queries.fetch_open_alerts(
                    conn, sensor_id=sensor_id, include_closed=True, shelved=None, limit=50
                )
                trust = queries.fetch_sensor_trust(conn, sensor_id, start)
        except queries.DatabaseUnavailable as exc:
            return no_update, no_update, no_update, no_update, banner(lang, str(exc), None, ctx.tz)
        district = info["district_en"] if lang == "en" else info["district_zh"]
        head = html.Div(
            [
                html.H2(
                    t(
                        lang,
                        "sensor.info",
                        name=display_text(info["name"]),
                        id=info["sensor_id"],
                        type=info["type_en"] if lang == "en" else info["type_zh"],
                        district=display_text(district or "—"),
                    ),
                    id="sensor-title",
                ),
                html.Div(
                    t(lang, "sensor.source", source=t(lang, f"sensor.source.{source}")),
                    className="note",
                    id="sensor-source",
                ),
            ]
        )
        charts = []
        for q, readings in series.items():
            unit = QUANTITIES[q].unit if q in QUANTITIES else ""
            body = (
                dcc.Graph(
                    figure=build_readings_figure(
                        readings,
                        lang=lang,
                        tz=ctx.tz,
                        title=_quantity(lang, q),
                        unit=unit,
                        limits=info["limits"].get(q, (None, None)),
                        alert_times=[
                            a.raised_at
                            for a in alerts
                            if a.quantity == q and start <= a.raised_at < end
                        ],
                    ),
                    config={"displayModeBar": False},
                    style={"height": "22rem"},
                )
                if readings
                else html.Div(t(lang, "sensor.no_readings"), className="empty")
            )
            charts.append(html.Section(body, className="panel chart-panel", **{"data-quantity": q}))
        return (
            head,
            charts,
            trust_table(lang, trust),
            alerts_table(lang, alerts, tz=ctx.tz, now=now),
            banner(lang, None, now, ctx.tz),
        )


def _quantity(lang: str, q: str) -> str:
    key = f"quantity.{q}"
    return t(lang, key) if key in MESSAGES["zh"] else display_text(q)


def trust_table(lang: str, rows: list[dict]) -> html.Table | html.Div:
    if not rows:
        return html.Div("—", className="empty")

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:.1f}%"

    head = [
        "col.quantity",
        "kpi.completeness",
        "trust.expected",
        "trust.received",
        "trust.seq_gaps",
        "trust.late",
        "trust.duplicates",
    ]
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(t(lang, k)) for k in head])),
            html.Tbody(
                [
                    html.Tr(
                        [
                            html.Td(_quantity(lang, r["quantity"])),
                            html.Td(pct(r["completeness"]), className="num"),
                            html.Td(str(r["expected"]), className="num"),
                            html.Td(str(r["received"]), className="num"),
                            html.Td(str(r["seq_gaps"]), className="num"),
                            html.Td(str(r["late"]), className="num"),
                            html.Td(str(r["duplicates"]), className="num"),
                        ]
                    )
                    for r in rows
                ]
            ),
        ],
        className="data-table trust-table",
    )
